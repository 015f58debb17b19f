"""Slow, independent, plain-Python references for the genome tests (no numpy/pandas, no package code)."""
from __future__ import annotations

import gzip
import math
import re
import statistics
from collections import Counter, defaultdict

COMP = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def read_fasta_plain(path) -> dict[str, str]:
    """Every sequence of a (b)gzip or plain FASTA, upper-cased, by first word of the header."""
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    seqs: dict[str, list[str]] = {}
    name = None
    with opener(path, "rt") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                name = line[1:].split()[0]
                seqs[name] = []
            elif name is not None:
                seqs[name].append(line)
    return {k: "".join(v).upper() for k, v in seqs.items()}


def revcomp(s: str) -> str:
    return "".join(COMP.get(c, c) for c in reversed(s))


def encode_chrom(name: str) -> int:
    n = name[3:] if name.lower().startswith("chr") else name
    n = n.upper()
    if n.isdigit() and 1 <= int(n) <= 22:
        return int(n)
    return {"X": 23, "Y": 24, "M": 25, "MT": 25}.get(n, 100)


def _attr(attrs: str, key: str):
    for part in attrs.split(";"):
        part = part.strip()
        if part.startswith(key + " "):
            return part[len(key) + 1:].strip().strip('"')
    return None


def reference_genes(path) -> tuple[dict[str, dict], set[tuple[str, int, str]]]:
    """Per gene the 14 genomic features + seqname/strand, and the set of (gene, position, type)."""
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    gene_line: dict[str, tuple] = {}
    exons: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    exon_lines: Counter = Counter()
    info: dict[str, tuple] = {}
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            gid = _attr(f[8], "gene_id")
            if f[2] == "gene":
                gene_line[gid] = (f[0], f[6], int(f[3]), int(f[4]))
            elif f[2] == "exon":
                exons[gid][_attr(f[8], "transcript_id")].add((int(f[3]), int(f[4])))
                exon_lines[gid] += 1
                info[gid] = (f[0], f[6])
    # overlap partners (MetaSpliceAI's overlap table): a gene line and >= 2 exon lines, same strand
    eligible = {g: v for g, v in gene_line.items() if exon_lines[g] >= 2}
    partners = _overlap_counts(eligible)
    spans = {}
    for gid, (seq, strand, s, e) in gene_line.items():
        spans[gid] = (seq, s, e)
    for gid, txs in exons.items():
        if gid not in spans:
            allx = [x for t in txs.values() for x in t]
            spans[gid] = (info[gid][0], min(x[0] for x in allx), max(x[1] for x in allx))
    genes = {}
    sites = set()
    for gid, txs in exons.items():
        seq, strand = info[gid]
        best = None
        for tid, ex in txs.items():
            ex = sorted(ex)
            spliced = sum(e - s + 1 for s, e in ex)
            key = (-spliced, tid)
            if best is None or key < best[0]:
                best = (key, tid, ex)
            for i in range(len(ex) - 1):  # intron between ex[i] and ex[i+1]
                left_end, right_start = ex[i][1], ex[i + 1][0]
                if strand == "+":
                    sites.add((gid, left_end + 1, "donor"))
                    sites.add((gid, right_start - 1, "acceptor"))
                else:
                    sites.add((gid, right_start - 1, "donor"))
                    sites.add((gid, left_end + 1, "acceptor"))
        ex = best[2]
        lengths = [e - s + 1 for s, e in ex]
        _, gs, ge = spans[gid]
        tx_start, tx_end = ex[0][0], max(e for _, e in ex)
        overlaps = 2 * partners[gid] if gid in eligible else 0
        genes[gid] = {
            "seqname": seq, "strand": strand,
            "gene_start": gs, "gene_end": ge, "gene_length": ge - gs + 1,
            "tx_start": tx_start, "tx_end": tx_end, "transcript_length": tx_end - tx_start + 1,
            "num_exons": len(ex), "avg_exon_length": sum(lengths) / len(lengths),
            "median_exon_length": float(statistics.median(lengths)),
            "total_exon_length": sum(lengths),
            "total_intron_length": (tx_end - tx_start + 1) - sum(lengths),
            "num_overlaps": overlaps, "chrom": encode_chrom(seq),
        }
    per = Counter(g for g, _ in {(g, pos) for g, pos, _ in sites})  # positions, donors + acceptors pooled
    for gid in genes:
        genes[gid]["n_splice_sites"] = per.get(gid, -1)
    return genes, sites


def _overlap_counts(gene_lines: dict) -> Counter:
    """Per gene, the other genes on its seqname and strand whose span overlaps its span (a sweep)."""
    counts: Counter = Counter()
    by_key: dict[tuple, list] = defaultdict(list)
    for g, (seq, strand, s, e) in gene_lines.items():
        by_key[(seq, strand)].append((s, e, g))
    for spans in by_key.values():
        spans.sort()
        for i, (s, e, g) in enumerate(spans):
            for s2, e2, g2 in spans[i + 1:]:  # later starts; stop once they begin past this end
                if s2 > e:
                    break
                counts[g] += 1
                counts[g2] += 1
    return counts


def window_string(chrom_seq: str, gene_start: int, gene_end: int, strand: str, position: int,
                  flank: int = 250) -> str:
    """The spec's window, literally: the gene string in transcript orientation, sliced [i-250:i+250]."""
    gene = chrom_seq[gene_start - 1:gene_end]
    if strand == "-":
        gene = revcomp(gene)
        i = gene_end - position
    else:
        i = position - gene_start
    return gene[max(0, i - flank):i + flank]


def features_of_window(window: str, names: list[str]) -> dict[str, float]:
    """Sequence features of one window string (already in transcript orientation), row by row."""
    out = {}
    length = len(window)
    by_k: dict[int, Counter] = {}
    for name in names:
        if name == "gc_content":
            out[name] = (window.count("G") + window.count("C")) / length
        elif name == "sequence_length":
            out[name] = length
        elif name == "sequence_complexity":
            counts = Counter(window)
            out[name] = -sum(c / length * math.log2(c / length) for c in counts.values())
        else:
            m = re.fullmatch(r"(\d+)mer_([ACGTN]+)", name)
            k, kmer = int(m.group(1)), m.group(2)
            if k not in by_k:  # every overlapping substring of length k, counted once per window
                by_k[k] = Counter(window[i:i + k] for i in range(length - k + 1))
            out[name] = by_k[k].get(kmer, 0)
    return out


def bgzf_compress(data: bytes, block: int = 0xFF00) -> bytes:
    """``data`` as BGZF (bgzip's format: gzip members of <= 64 KiB with the BC extra field, then
    the empty EOF block), written by hand so the tests need no htslib."""
    import struct
    import zlib

    def member(chunk: bytes) -> bytes:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = comp.compress(chunk) + comp.flush()
        size = 18 + len(body) + 8
        head = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + struct.pack("<H", size - 1)
        return head + body + struct.pack("<II", zlib.crc32(chunk) & 0xFFFFFFFF, len(chunk))

    out = [member(data[i:i + block]) for i in range(0, len(data), block)]
    return b"".join(out) + member(b"")

"""The on-disk genomic cache: gene table, splice sites, exons and gene sequences, keyed by a
fingerprint of its inputs.

Layout of a cache directory::

    cache.json          format version, inputs fingerprint, input paths and hashes, report (written last)
    genes.parquet       one row per gene: gene_id, seqname, strand, the 14 genomic features, seq_offset
    splice_sites.parquet  gene_id, position, site_type
    exons.parquet       gene_id, transcript_id, seqname, strand, start, end
    gene_keys.parquet   gene_id and other attributes of the gene that could be its key (gene_name,
                        Name, gene, locus_tag: those the annotation has; for the --gene-key hint)
    bases.npy           uint8: every gene's forward-strand span gene_start..gene_end, upper-cased,
                        concatenated in gene-table order (absent for an annotation-only cache)

The fingerprint is a SHA-256 over the cache format version and the SHA-256 of the GTF's and the
FASTA's bytes. :func:`build_cache` reuses a directory whose ``cache.json`` has the same fingerprint
and otherwise rebuilds it: ``cache.json`` is removed first and written last, so an interrupted build
is never mistaken for a complete one, and files of two builds are never mixed.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from ..errors import InputError
from ..features.registry import lookup
from ..features.sequence import check_names, sequence_features, window_bounds
from ..logs import rate_and_eta
from .fasta import IndexedFasta, is_plain_gzip, stream_fasta
from .annotation import read_annotation
from .gtf import GENOMIC_FEATURES
from ..options import SEQUENCE_FLANK
from ..storage import url_to_fs
from ..validate import place
from .remote import is_url, local_cache_dir, local_file, local_root, upload_dir
from .seqnames import SeqNames, describe_mismatch, read_seq_aliases

CACHE_FORMAT_VERSION = 2  # 2: n_splice_sites, num_overlaps as training computes them; gene keys, matched names
CACHE_FILES = ("genes.parquet", "splice_sites.parquet", "exons.parquet")
BASES_FILE = "bases.npy"
KEYS_FILE = "gene_keys.parquet"
META_FILE = "cache.json"

Progress = Callable[[str], None]


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (memoised per process on path, size and mtime)."""
    st = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def inputs_fingerprint(genome: str | Path | None, annotation: str | Path,
                       chrom_aliases: dict[str, str] | None = None, gene_key: str | None = None,
                       seq_aliases: dict[str, str] | None = None) -> tuple[str, dict]:
    """(fingerprint, details) of a cache's inputs: content hashes plus the cache format version
    (and, when given, the chromosome aliases, since they change the encoded ``chrom``, the gene
    key, since it changes the gene ids, and the sequence aliases)."""
    details = {
        "format_version": CACHE_FORMAT_VERSION,
        "annotation_sha256": file_sha256(annotation),
        "genome_sha256": None if genome is None else file_sha256(genome),
    }
    if chrom_aliases:
        details["chrom_aliases"] = dict(sorted(chrom_aliases.items()))
    if gene_key:
        details["gene_key"] = gene_key
    if seq_aliases:
        details["seq_aliases"] = dict(sorted(seq_aliases.items()))
    text = json.dumps(details, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), details


# --- coordinates ---------------------------------------------------------------------------------
def _as_arrays(*arrays) -> list[np.ndarray]:
    return [np.asarray(a) for a in arrays]


def genomic_to_gene_relative(position, gene_start, gene_end, minus) -> np.ndarray:
    """0-based offset from the gene's 5' end in transcript orientation (position - gene_start on
    plus, gene_end - position on minus) of 1-based genomic positions; outside the span -> InputError."""
    position, gene_start, gene_end = (a.astype(np.int64) for a in _as_arrays(position, gene_start, gene_end))
    minus = np.asarray(minus, dtype=bool)
    bad = (position < gene_start) | (position > gene_end)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise InputError(f"{len(rows)} genomic position(s) outside their gene's span (rows {rows[:5].tolist()})")
    return np.where(minus, gene_end - position, position - gene_start)


def gene_relative_to_genomic(relative, gene_start, gene_end, minus) -> np.ndarray:
    """1-based genomic positions of gene-relative offsets (inverse of :func:`genomic_to_gene_relative`);
    an offset outside 0 .. gene_end - gene_start -> InputError."""
    relative, gene_start, gene_end = (a.astype(np.int64) for a in _as_arrays(relative, gene_start, gene_end))
    minus = np.asarray(minus, dtype=bool)
    bad = (relative < 0) | (relative > gene_end - gene_start)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise InputError(f"{len(rows)} gene-relative position(s) outside their gene (rows {rows[:5].tolist()})")
    return np.where(minus, gene_end - relative, gene_start + relative)


# --- the cache -----------------------------------------------------------------------------------
@dataclass
class GenomicCache:
    """An opened genomic cache (see the module docstring for the layout).

    gene_table: index gene_id; seqname, strand, the 14 genomic features (registry dtypes) and
        seq_offset (int64 index of the gene's forward span in ``bases``, -1 without sequence).
    bases: uint8 memory map of the concatenated gene spans (empty without a genome).
    report: what the build left out (genes without exons or sequence, ...).
    """

    path: Path
    gene_table: pd.DataFrame
    splice_sites: pd.DataFrame
    bases: np.ndarray
    fingerprint: str
    report: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    gene_aliases: tuple[tuple[str, str], ...] = ()

    def __reduce__(self):
        """Pickle as (path, fingerprint[, aliases]): a Dask worker reopens the cache from disk, once
        per process (:func:`load_cached`), instead of receiving the gene table and bases."""
        return (_reopen, (str(self.path), self.fingerprint, self.gene_aliases))

    def with_gene_aliases(self, aliases: tuple[tuple[str, str], ...]) -> "GenomicCache":
        """This cache with extra gene-table rows: ``(alias, gene_id)`` pairs, each alias (an id of the
        positions, e.g. versionless) a copy of its gene's row; every lookup by id then finds it."""
        if not aliases:
            return self
        return _aliased(str(self.path), self.fingerprint, tuple(aliases))

    @property
    def alternative_keys(self) -> pd.DataFrame:
        """Per gene (index gene_id), its other attributes that could be a key (may have no column)."""
        if (self.path / KEYS_FILE).is_file():
            return pd.read_parquet(self.path / KEYS_FILE).set_index("gene_id")
        return pd.DataFrame(index=self.gene_table.index)

    @property
    def has_sequence(self) -> bool:
        """Whether the cache was built with a genome FASTA."""
        return bool(self.meta.get("has_sequence"))

    @property
    def exons(self) -> pd.DataFrame:
        """The exon table (read on demand)."""
        return pd.read_parquet(self.path / "exons.parquet")

    @classmethod
    def open(cls, path: str | Path) -> "GenomicCache":
        """Open a cache directory written by :func:`build_cache` (a URL: its local copy)."""
        path = local_cache_dir(str(path)) if is_url(path) else Path(str(path).removeprefix("file://"))
        with _locked(path, exclusive=False) if path.is_dir() else contextlib.nullcontext():
            return cls._open(path)

    @classmethod
    def _open(cls, path: Path) -> "GenomicCache":
        meta = _read_meta(path)
        if meta is None:
            raise InputError(f"{path}: not a genomic cache (no valid {META_FILE}); build it with "
                             "`dask-enrich build-cache`")
        missing = [f for f in meta.get("files", []) if not (path / f).is_file()]
        if missing:
            raise InputError(f"{path}: incomplete genomic cache, missing {missing}; rebuild it")
        genes = pd.read_parquet(path / "genes.parquet").set_index("gene_id")
        sites = pd.read_parquet(path / "splice_sites.parquet")
        if meta.get("has_sequence"):
            bases = np.load(path / BASES_FILE, mmap_mode="r")
            if len(bases) != meta["bases_length"]:
                raise InputError(f"{path / BASES_FILE}: length {len(bases)} differs from {META_FILE}; rebuild")
        else:
            bases = np.zeros(0, dtype=np.uint8)
        return cls(path, genes, sites, bases, meta["fingerprint"], meta.get("report", {}), meta)

    # -- lookups used by the engine --
    def gene_rows(self, gene_id) -> np.ndarray:
        """Row number in ``gene_table`` of each gene id (-1 when the gene is not in the annotation)."""
        if not isinstance(gene_id, (pd.Series, pd.Index)):
            gene_id = pd.Series(np.asarray(gene_id, dtype=object))
        codes, uniques = pd.factorize(gene_id)
        lookup_rows = self.gene_table.index.get_indexer(pd.Index(uniques))
        return np.where(codes >= 0, lookup_rows[np.maximum(codes, 0)] if len(lookup_rows) else -1, -1)

    def problem_codes(self, rows: np.ndarray, position, *, need_sequence: bool) -> np.ndarray:
        """Per row (gene-table row numbers from :meth:`gene_rows`), an int8 code: 0 ok, 1 gene not in
        annotation, 2 position outside gene, 3 no sequence for gene (see ``PROBLEMS``)."""
        # the one placement check (validate.place); its codes are these
        return place(self.gene_table, np.asarray(rows), position,
                     has_sequence_for=True if need_sequence else None).code

    @property
    def problems(self) -> tuple[str, ...]:
        """Reason of each :meth:`problem_codes` code."""
        noseq = "no sequence for gene" + ("" if self.has_sequence else " (cache built without --genome)")
        return ("", "gene not in annotation", "position outside gene", noseq)

    def position_problems(self, gene_id, position, *, need_sequence: bool) -> np.ndarray:
        """Per row, '' when (gene_id, position) can be enriched, else the reason (object array):
        'gene not in annotation', 'position outside gene', 'no sequence for gene'."""
        code = self.problem_codes(self.gene_rows(gene_id), position, need_sequence=need_sequence)
        return np.array(self.problems, dtype=object)[code]

    def _rows(self, gene_id, position, need_sequence: bool) -> np.ndarray:
        idx = self.gene_rows(gene_id)
        code = self.problem_codes(idx, position, need_sequence=need_sequence)
        bad = code != 0
        if bad.any():
            kinds = pd.Series(np.array(self.problems, dtype=object)[code[bad]]).value_counts()
            detail = "; ".join(f"{k}: {v} row(s)" for k, v in kinds.items())
            raise InputError(f"cannot enrich {int(bad.sum())} position(s) with cache {self.path}: {detail} "
                             f"(first rows {np.flatnonzero(bad)[:5].tolist()})")
        return idx

    def genomic_features(self, gene_id, names: list[str]) -> dict[str, np.ndarray]:
        """The requested genomic features (registry dtypes) of each row's gene."""
        unknown = [n for n in names if n not in GENOMIC_FEATURES]
        if unknown:
            raise ValueError(f"not genomic features: {unknown}")
        idx = self.gene_rows(gene_id)
        if np.any(idx < 0):
            raise InputError(f"{int(np.sum(idx < 0))} row(s) whose gene is not in annotation cache {self.path}")
        return {n: self.gene_table[n].to_numpy()[idx].astype(lookup(n).dtype) for n in names}

    def sequence_features(self, gene_id, position, names: list[str], flank: int = SEQUENCE_FLANK
                          ) -> dict[str, np.ndarray]:
        """Sequence features / k-mer counts (registry dtypes) of 1-based genomic positions."""
        bad = check_names(list(names))
        if bad:
            raise ValueError(f"not sequence features: {bad}")
        position = np.asarray(position, dtype=np.int64)
        idx = self._rows(gene_id, position, need_sequence=True)
        table = self.gene_table
        start = table["gene_start"].to_numpy()[idx]
        end = table["gene_end"].to_numpy()[idx]
        minus = table["strand"].to_numpy()[idx] == "-"
        lo, hi = window_bounds(position, start, end, minus, flank)
        offset = table["seq_offset"].to_numpy()[idx]
        return sequence_features(self.bases, lo + offset, hi + offset, minus, list(names))

    def gene_sequence(self, gene_id: str, transcript_orientation: bool = True) -> np.ndarray:
        """One gene's bases (reverse complement on the minus strand when ``transcript_orientation``)."""
        from .fasta import reverse_complement

        row = self.gene_table.loc[gene_id]
        if row["seq_offset"] < 0:
            raise InputError(f"no sequence for gene {gene_id!r} in cache {self.path}")
        seq = np.asarray(self.bases[row["seq_offset"]:row["seq_offset"] + row["gene_length"]])
        return reverse_complement(seq) if transcript_orientation and row["strand"] == "-" else seq


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format_version") != CACHE_FORMAT_VERSION or "fingerprint" not in meta:
        return None
    return meta


def _exons_outside(genes: pd.DataFrame, exons: pd.DataFrame) -> list[str]:
    """Genes with an exon outside their span (the gene line's): a warning of ``build-cache`` and of
    each run's ``_SUCCESS.json`` (the gene's features use the gene line, its sites the exons)."""
    if not len(exons) or not len(genes):
        return []
    span = genes.set_index("gene_id")[["gene_start", "gene_end"]]
    at = span.index.get_indexer(exons["gene_id"])
    known = at >= 0
    start = span["gene_start"].to_numpy()[np.maximum(at, 0)]
    end = span["gene_end"].to_numpy()[np.maximum(at, 0)]
    outside = known & ((exons["start"].to_numpy() < start) | (exons["end"].to_numpy() > end))
    return sorted(pd.unique(exons["gene_id"].to_numpy()[outside]).tolist())


Records = Callable[[Callable[[str], bool]], Iterator[tuple[str, int, Callable[[], np.ndarray]]]]


def _indexed_records(fasta: IndexedFasta) -> Records:
    """The sequences of an indexed FASTA: (name, length, fetch) in file order, fetched on demand."""
    def records(want: Callable[[str], bool]):
        for name in fasta.names:
            length = fasta.length(name)
            yield name, length, functools.partial(fasta.fetch, name, 1, length)
    return records


def _streamed_records(path: Path) -> Records:
    """The sequences of a FASTA read once from start to end (plain gzip): only wanted ones are kept."""
    def records(want: Callable[[str], bool]):
        for name, length, seq in stream_fasta(path, want):
            yield name, length, (lambda seq=seq: seq)
    return records


def _copy_spans(src: np.ndarray, src_offset: np.ndarray, dst: np.ndarray, dst_offset: np.ndarray,
                span: np.ndarray, rows: np.ndarray) -> None:
    """dst[dst_offset[g]:+span[g]] = src[src_offset[g]:+span[g]] for genes ``rows``, ~8 MB at a time."""
    for part in np.array_split(rows, max(1, int(span[rows].sum() // (8 << 20)) + 1)):
        if len(part) == 0:
            continue
        lens = span[part]
        within = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        idx = np.repeat(src_offset[part], lens) + within
        first = int(dst_offset[part[0]])
        dst[first:first + len(idx)] = src[idx]


def _gene_bases(records: Records, genes: pd.DataFrame, names: SeqNames, out_path: Path,
                progress: Progress) -> tuple[np.ndarray, dict]:
    """Write every gene's forward span to ``out_path`` (.npy) in one pass over the genome's
    sequences; returns (seq_offset, report). Each gene's bases are written where they go if every
    gene gets its sequence; genes that get none (sequence absent, ambiguous name, gene beyond the
    sequence's end) are squeezed out afterwards, so the layout never depends on the FASTA's order."""
    start = genes["gene_start"].to_numpy()
    end = genes["gene_end"].to_numpy()
    seqname = genes["seqname"].to_numpy().astype(str)
    span_all = (end - start + 1).astype(np.int64)
    tentative = np.concatenate([[0], np.cumsum(span_all)[:-1]]).astype(np.int64)
    rows_of = {name: np.flatnonzero(seqname == name) for name in pd.unique(seqname)}  # per chromosome
    bases = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(int(span_all.sum()),))
    lengths: dict[str, int] = {}
    written: dict[str, tuple[int, str]] = {}  # annotation name -> (priority, genome name) written

    def better(genome_name: str) -> list[tuple[str, int]]:
        return [(a, prio) for a, prio in names.serves(genome_name) if prio < written.get(a, (9, ""))[0]]

    started, genes_read = time.monotonic(), 0
    for gname, length, fetch in records(lambda name: bool(better(name))):
        lengths[gname] = length
        targets = better(gname)
        if not targets:
            continue
        chrom = None
        for a, prio in targets:
            rows = rows_of[a][end[rows_of[a]] <= length]
            written[a] = (prio, gname)
            if len(rows) == 0:
                continue
            if chrom is None:
                chrom = fetch()
            _copy_spans(chrom, start - 1, bases, tentative, span_all, rows)
            genes_read += len(rows)
            eta = rate_and_eta(genes_read, len(genes), time.monotonic() - started).replace("/s", " genes/s")
            progress(f"reading {gname} ({length:,} nt, {len(rows)} genes"
                     f"{'' if a == gname else f' annotated on {a}'}): {genes_read:,}/{len(genes):,} "
                     f"genes{eta}")
        del chrom
    mapping, report = names.resolve(lengths)
    target = np.array([mapping.get(s, "") for s in seqname], dtype=object)
    has_seq = target != ""
    chrom_len = np.array([lengths.get(t, 0) for t in target], dtype=np.int64)
    beyond = has_seq & (end > chrom_len)
    ok = has_seq & ~beyond
    assert all(written[a][1] == g for a, g in mapping.items() if a in rows_of), "cache: stale bases"
    report.update({
        "genes_on_missing_sequences": genes["gene_id"].to_numpy()[~has_seq].tolist(),
        "missing_sequences": sorted(set(seqname[~has_seq].tolist())),
        "genes_beyond_sequence_end": genes["gene_id"].to_numpy()[beyond].tolist(),
    })
    if len(genes) and not ok.any():
        bases.flush()
        del bases
        raise InputError("no annotated gene's sequence is in the genome: "
                         + describe_mismatch(seqname, lengths))
    if ok.all():
        bases.flush()
        del bases
        return tentative, report
    span = np.where(ok, span_all, 0)
    offset = np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64)
    squeezed = out_path.with_name(out_path.name + ".squeezed.npy")
    dst = np.lib.format.open_memmap(squeezed, mode="w+", dtype=np.uint8, shape=(int(span.sum()),))
    _copy_spans(bases, tentative, dst, offset, span_all, np.flatnonzero(ok))
    dst.flush()
    del dst, bases
    os.replace(squeezed, out_path)
    return np.where(ok, offset, -1), report


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool):
    """An advisory lock on ``directory/.lock`` (exclusive to build, shared to open; no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fh = open(directory / ".lock", "a+")
    except OSError:  # read-only cache directory: nobody can be building it
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_cache(genome: str | Path | None, annotation: str | Path, out: str | Path, *,
                progress: Progress | None = None, chrom_aliases: dict[str, str] | None = None,
                gene_key: str | None = None, seq_aliases: str | Path | dict[str, str] | None = None
                ) -> GenomicCache:
    """Build (or reuse, when the inputs' fingerprint matches) the genomic cache in ``out``.

    The annotation is a GTF, GFF3 or SpliceAI gene table (:func:`read_annotation`); ``gene_key``
    names the attribute whose values are the gene ids (default: gene_id / the GFF3 gene ID).
    The genome is a plain, bgzip or plain-gzip FASTA (a plain-gzip one is read once from start to
    end). Its sequence names are matched to the annotation's (:mod:`.seqnames`; ``seq_aliases``: a
    ``--seq-aliases`` file or a dict, annotation name -> genome name).
    Concurrent builders of the same directory serialise on a lock file; the second one reuses the
    first one's cache. ``chrom_aliases`` maps seqnames to chromosome names for the ``chrom`` encoding.
    """
    say = progress or (lambda message: None)
    urls = {k: str(v) for k, v in (("genome", genome), ("annotation", annotation), ("seq_aliases", seq_aliases))
            if isinstance(v, (str, Path)) and is_url(v)}
    genome, annotation, seq_aliases = (
        local_file(x) if isinstance(x, (str, Path)) else x for x in (genome, annotation, seq_aliases))
    if is_url(out):  # built locally, then copied to the URL (reused when its record matches)
        url, out = str(out), local_root() / "builds" / hashlib.sha256(str(out).encode()).hexdigest()[:16]
        try:
            fs, meta = url_to_fs(f"{url.rstrip('/')}/{META_FILE}")
            remote = json.loads(fs.cat_file(meta))
        except (OSError, ValueError):
            remote = None
        cache = build_cache(genome, annotation, out, progress=progress, chrom_aliases=chrom_aliases,
                            gene_key=gene_key, seq_aliases=seq_aliases)
        if not remote or remote.get("fingerprint") != cache.fingerprint:
            say(f"copying the genomic cache to {url}")
            upload_dir(cache.path, url)
        return cache
    out = Path(out)
    annotation = Path(annotation)
    if not annotation.is_file():
        raise InputError(f"annotation file not found: {annotation}")
    if genome is not None and not Path(genome).is_file():
        raise InputError(f"genome FASTA not found: {genome}")
    if seq_aliases is not None and not isinstance(seq_aliases, dict):
        seq_aliases = read_seq_aliases(seq_aliases)
    fingerprint, details = inputs_fingerprint(genome, annotation, chrom_aliases, gene_key, seq_aliases)
    meta = _read_meta(out) if out.is_dir() else None
    if meta is not None and meta["fingerprint"] == fingerprint:
        say(f"reusing the genomic cache in {out} (same inputs)")
        return GenomicCache.open(out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out, exclusive=True):
        meta = _read_meta(out)
        if meta is not None and meta["fingerprint"] == fingerprint:  # built meanwhile by another process
            say(f"reusing the genomic cache in {out} (same inputs)")
        else:
            _build(genome, annotation, out, fingerprint, details, say, chrom_aliases, gene_key, seq_aliases,
                   urls)
    load_cached.cache_clear()
    return GenomicCache.open(out)


def _build(genome, annotation: Path, out: Path, fingerprint: str, details: dict, say: Progress,
           chrom_aliases: dict[str, str] | None, gene_key: str | None = None,
           seq_aliases: dict[str, str] | None = None, urls: dict[str, str] | None = None) -> None:
    if (out / META_FILE).exists():
        say(f"inputs changed: rebuilding the genomic cache in {out}")
        (out / META_FILE).unlink()
    t0 = time.perf_counter()
    work = out / f".build-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        say(f"parsing {annotation}")
        ann = read_annotation(annotation, chrom_aliases=chrom_aliases, gene_key=gene_key)
        genes = ann.genes
        report = dict(ann.report)
        report["genes_with_exons_outside_gene_line"] = _exons_outside(genes, ann.exons)
        files = list(CACHE_FILES)
        if genome is not None:
            if is_plain_gzip(genome):
                say(f"reading {genome} once from start to end (plain gzip, not bgzip: no index needed)")
                records = _streamed_records(Path(genome))
            else:
                say(f"indexing {genome}")
                records = _indexed_records(IndexedFasta(genome, index_dir=out))
            names = SeqNames(sorted(set(genes["seqname"].astype(str))), seq_aliases or {})
            seq_offset, seq_report = _gene_bases(records, genes, names, work / BASES_FILE, say)
            report.update(seq_report)
            for a, g in seq_report["seq_names_mapped"].items():
                say(f"sequence {a} of the annotation is {g} in the genome")
            files.append(BASES_FILE)
            bases_length = int(np.load(work / BASES_FILE, mmap_mode="r").shape[0])
        else:
            seq_offset = np.full(len(genes), -1, dtype=np.int64)
            bases_length = 0
        genes = genes.assign(seq_offset=seq_offset.astype(np.int64))
        genes.to_parquet(work / "genes.parquet", index=False)
        ann.splice_sites.to_parquet(work / "splice_sites.parquet", index=False)
        ann.exons.to_parquet(work / "exons.parquet", index=False)
        if ann.alternative_keys is not None and len(ann.alternative_keys.columns):
            ann.alternative_keys.rename_axis("gene_id").reset_index().to_parquet(work / KEYS_FILE, index=False)
            files.append(KEYS_FILE)
        for name in files:
            os.replace(work / name, out / name)
        for name in (BASES_FILE, KEYS_FILE):  # none of an earlier build's files may stay
            if name not in files and (out / name).exists():
                (out / name).unlink()
        meta = {
            **details,
            "fingerprint": fingerprint,
            "annotation": str(annotation.resolve()),
            "genome": None if genome is None else str(Path(genome).resolve()),
            **({"urls": urls} if urls else {}),  # inputs given as URLs (the paths above: local copies)
            "has_sequence": genome is not None,
            "bases_length": bases_length,
            "n_genes": int(len(genes)),
            "files": files,
            "build_seconds": round(time.perf_counter() - t0, 3),
            "report": report,
        }
        tmp = work / META_FILE
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, out / META_FILE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"genomic cache written to {out} ({len(genes)} genes, {bases_length:,} nt, "
        f"{meta['build_seconds']:.1f} s)")


@functools.lru_cache(maxsize=8)
def _open_cached(resolved: str, fingerprint: str) -> GenomicCache:
    return GenomicCache.open(resolved)


def _reopen(path: str, fingerprint: str, gene_aliases: tuple = ()) -> GenomicCache:
    cache = load_cached(path)
    if cache.fingerprint != fingerprint:
        raise InputError(f"the genomic cache {path} was rebuilt from other inputs while this run used it")
    return cache.with_gene_aliases(gene_aliases)


@functools.lru_cache(maxsize=4)
def _aliased(path: str, fingerprint: str, aliases: tuple[tuple[str, str], ...]) -> GenomicCache:
    cache = _reopen(path, fingerprint)
    alias, target = (np.array(x, dtype=object) for x in zip(*aliases))
    extra = cache.gene_table.loc[target].copy()
    extra.index = pd.Index(alias, name=cache.gene_table.index.name).astype(cache.gene_table.index.dtype)
    table = pd.concat([cache.gene_table, extra])
    if not table.index.is_unique:
        raise ValueError("gene aliases must be ids absent from the gene table")
    return replace(cache, gene_table=table, gene_aliases=aliases)


def load_cached(path: str | Path) -> GenomicCache:
    """Open a cache once per process (memoised on the resolved path and the cache's fingerprint;
    a URL is copied locally first, see :mod:`.remote`)."""
    resolved = (local_cache_dir(str(path)) if is_url(path) else Path(str(path).removeprefix("file://"))).resolve()
    meta = _read_meta(resolved)
    if meta is None:
        raise InputError(f"{path}: not a genomic cache (no valid {META_FILE})")
    return _open_cached(str(resolved), meta["fingerprint"])


load_cached.cache_clear = _open_cached.cache_clear  # type: ignore[attr-defined]

"""GTF parsing into the per-gene table of the spec's 14 genomic features, exons and splice sites.

Reads plain or gzip GTF (GENCODE, Ensembl, RefSeq flavours) with pyarrow's CSV reader and extracts
``gene_id``/``transcript_id`` with vectorised regular expressions; everything after that is numpy
and pandas group arithmetic, with no Python loop over lines, transcripts or genes.

Documented rules (see also ``FEATURES.md``):

* Only ``gene``, ``transcript`` and ``exon`` lines are used. ``gene_start``/``gene_end`` come from
  the gene line when there is one, else from the smallest exon start and largest exon end.
* Transcript structure comes from the exon lines (``tx_start``/``tx_end`` = smallest exon start /
  largest exon end of the transcript); identical duplicate exon lines of a transcript count once.
* Representative transcript = the longest by spliced length (sum of exon lengths); ties go to the
  lexicographically smallest ``transcript_id``.
* ``n_splice_sites`` = the number of distinct positions among the gene's donor and acceptor sites over
  all its transcripts, donors and acceptors pooled (a position that is a donor of one transcript
  and an acceptor of another counts once), and **-1** for a gene with no site at all, as
  MetaSpliceAI's training code writes it. Plus strand: donor = exon_end + 1 of every exon but the
  last, acceptor = exon_start - 1 of every exon but the first; minus strand: donor = exon_start - 1
  of every exon but the lowest, acceptor = exon_end + 1 of every exon but the highest.
  Single-exon transcripts contribute none.
* ``num_overlaps`` follows MetaSpliceAI's overlap table: 2 x the number of other genes on the same
  seqname and the **same strand** whose gene-line span overlaps this gene's (inclusive
  coordinates), where both genes are *eligible*: a ``gene`` line (one, not conflicting) and at
  least 2 ``exon`` lines in the file over all their transcripts. Each pair is listed in both
  directions there and counted from both columns, hence the factor 2. 0 for a gene with no such
  partner or that is itself not eligible (no gene line, a single exon line). Eligible partners
  include genes left out of the gene table for other reasons (mixed seqname/strand, shared
  transcript ids): they are genes of the file all the same.
* ``chrom`` follows the spec's encoding (1-22, X=23, Y=24, M/MT=25, anything else 100, a ``chr``
  prefix ignored). RefSeq accessions such as ``NC_003070.9`` are *not* mapped to chromosome numbers
  (nothing in a GTF line says reliably which chromosome an accession is) and encode as 100; pass
  ``chrom_aliases`` (for example ``{"NC_003070.9": "1"}``) to map them explicitly.
* Left out of the gene table and listed in :attr:`Annotation.report` (never guessed): genes with no
  exon line, genes whose lines disagree on seqname or strand (trans-spliced genes), gene ids with
  two different gene lines (e.g. a PAR gene on X and Y under one id; identical repeated lines are
  merged), and genes sharing a transcript_id with another gene.
* Malformed lines (wrong column count, non-integer or inverted coordinates, a strand other than
  ``+``/``-``, a missing ``gene_id``, an exon without ``transcript_id``) raise :class:`InputError`
  naming the file and the line numbers.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import InputError
from ..features.genomic import GENOMIC_FEATURES  # the 14, in the spec's order (the registry's)
from ..features.registry import lookup
from ..text import is_in

GTF_COLUMNS = ["seqname", "source", "feature", "start", "end", "score", "strand", "frame", "attributes"]
_GENE_ID_RE = r'(?:^|;)\s*gene_id\s+"?(?P<v>[^";]*)"?'
_TX_ID_RE = r'(?:^|;)\s*transcript_id\s+"?(?P<v>[^";]*)"?'
_MAX_LINES_IN_MESSAGE = 5


@dataclass
class Annotation:
    """A parsed GTF.

    genes: one row per gene (default RangeIndex): gene_id, seqname, strand and the 14 genomic
        features with the registry dtypes, sorted by seqname then gene_start.
    exons: gene_id, transcript_id, seqname, strand, start, end (unique rows, 1-based inclusive).
    splice_sites: gene_id, position, site_type ('donor'/'acceptor'), unique rows.
    report: what was left out and why (lists of gene ids, counts).
    """

    path: str
    genes: pd.DataFrame
    exons: pd.DataFrame
    splice_sites: pd.DataFrame
    report: dict = field(default_factory=dict)
    #: per gene (index gene_id, in gene-table order), other attributes that could be its key
    alternative_keys: pd.DataFrame | None = None


def encode_chrom(names: pd.Series | np.ndarray | list, aliases: dict[str, str] | None = None) -> np.ndarray:
    """Spec encoding of chromosome names: 1-22, X=23, Y=24, M/MT=25, anything else 100 ('chr' ignored)."""
    s = pd.Series(np.asarray(names, dtype=object), dtype="str")
    if aliases:
        s = s.map(lambda v: aliases.get(v, v)).astype("str")
    stripped = s.str.replace(r"^(?i:chr)", "", regex=True).str.upper()
    out = np.full(len(s), 100, dtype=np.int64)
    digits = stripped.str.fullmatch(r"\d{1,2}").to_numpy(dtype=bool, na_value=False)
    if digits.any():
        vals = stripped[digits].astype(np.int64).to_numpy()
        ok = (vals >= 1) & (vals <= 22)
        idx = np.flatnonzero(digits)
        out[idx[ok]] = vals[ok]
    arr = stripped.to_numpy(dtype=object)
    out[arr == "X"] = 23
    out[arr == "Y"] = 24
    out[(arr == "M") | (arr == "MT")] = 25
    return out


def _open_stream(path: Path) -> pa.NativeFile:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    compression = "gzip" if magic == b"\x1f\x8b" else None
    return pa.input_stream(str(path), compression=compression)


def _read_table(path: Path, kind: str = "GTF") -> tuple[pa.Table, np.ndarray]:
    """The file's 9-column data lines as a string table, and the 1-based line numbers of the
    skipped lines (comments; for GFF3 also everything after a ``##FASTA`` line)."""
    skipped: list[tuple[int | None, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        skipped.append((row.number, row.text))
        return "skip"

    try:
        with _open_stream(path) as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=GTF_COLUMNS, use_threads=False,
                                               block_size=1 << 24),
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                                 newlines_in_values=False, ignore_empty_lines=True,
                                                 invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in GTF_COLUMNS},
                                                     strings_can_be_null=False,
                                                     include_columns=["seqname", "feature", "start", "end",
                                                                      "strand", "attributes"]),
            )
    except (pa.ArrowInvalid, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read as {kind}: {exc}") from exc
    # an embedded FASTA section (GFF3 ``##FASTA``) ends the records: its lines are not records
    fasta_at = next((n for n, t in skipped if t.startswith("##FASTA")), None) if kind == "GFF3" else None
    bad = [(n, t) for n, t in skipped
           if not t.startswith("#") and (fasta_at is None or n is None or n < fasta_at)]
    if bad:
        where = ", ".join(f"line {n}: {t[:60]!r}" for n, t in bad[:_MAX_LINES_IN_MESSAGE])
        raise InputError(f"{path}: {len(bad)} malformed {kind} line(s) (need 9 tab-separated columns): {where}")
    skipped_numbers = np.array(sorted(n for n, _ in skipped if n is not None), dtype=np.int64)
    return table, skipped_numbers


def _line_numbers(rows: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """1-based file line numbers of data rows ``rows`` (0-based), given the skipped line numbers."""
    # line L holds data row r where r + 1 = L - #(skipped <= L); invert by stepping over skipped lines
    lines = rows.astype(np.int64) + 1
    for _ in range(len(skipped) + 1):  # converges in as many steps as skipped lines precede (few)
        new = rows + 1 + np.searchsorted(skipped, lines, side="right")
        if np.array_equal(new, lines):
            break
        lines = new
    return lines


def _fail(path: Path, what: str, rows: np.ndarray, skipped: np.ndarray, kind: str = "GTF") -> None:
    lines = _line_numbers(np.asarray(rows)[:_MAX_LINES_IN_MESSAGE], skipped)
    raise InputError(f"{path}: {len(rows)} {kind} line(s) with {what} (line(s) {', '.join(map(str, lines))})")


def _coordinates(path: Path, table: pa.Table, rows: np.ndarray, skipped: np.ndarray,
                 kind: str = "GTF") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, strand) of ``table``'s lines, checked: integers, 1 <= start <= end, strand +/-."""
    starts_s, ends_s = table["start"], table["end"]
    digits_ok = pc.and_(pc.utf8_is_digit(starts_s), pc.utf8_is_digit(ends_s)).to_numpy(zero_copy_only=False)
    if not digits_ok.all():
        _fail(path, "a non-integer start or end", rows[~digits_ok], skipped, kind)
    start = pc.cast(starts_s, pa.int64()).to_numpy()
    end = pc.cast(ends_s, pa.int64()).to_numpy()
    bad = (start < 1) | (end < start)
    if bad.any():
        _fail(path, "start < 1 or end < start", rows[bad], skipped, kind)
    strand = table["strand"].to_numpy(zero_copy_only=False).astype(str)
    bad = (strand != "+") & (strand != "-")
    if bad.any():
        _fail(path, "a strand other than '+' or '-'", rows[bad], skipped, kind)
    return start, end, strand


def read_gtf(path: str | Path, *, chrom_aliases: dict[str, str] | None = None) -> Annotation:
    """Parse a plain or gzip GTF into an :class:`Annotation` (gene table, exons, splice sites)."""
    path = Path(path)
    frame, skipped = gtf_frame(path)
    return _build(path, frame, skipped, chrom_aliases)


def gtf_attribute(attrs: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    """Value of GTF attribute ``name`` on each line ('' where absent)."""
    regex = r'(?:^|;)\s*' + re.escape(name) + r'\s+"?(?P<v>[^";]*)"?'
    value = pc.struct_field(pc.extract_regex(attrs, regex), [0])
    return pc.fill_null(value, "").to_numpy(zero_copy_only=False).astype(str)


def gtf_frame(path: Path, key_attribute: str | None = None, alternatives: tuple[str, ...] = ()
              ) -> tuple[pd.DataFrame, np.ndarray]:
    """The normalised line frame of a GTF (columns row, feature in gene/transcript/exon, gene_id,
    transcript_id, seqname, strand, start, end; plus ``key``, the value of ``key_attribute`` on
    each line, when given, and ``alt:NAME`` for each of ``alternatives``, read on the gene lines
    when the file has any) and the skipped line numbers."""
    if not path.is_file():
        raise InputError(f"annotation file not found: {path}")
    table, skipped = _read_table(path)
    row_ids = pa.array(np.arange(table.num_rows, dtype=np.int64))
    table = table.append_column("row", row_ids)
    feature = table["feature"]
    keep = pc.is_in(feature, value_set=pa.array(["gene", "transcript", "exon"]))
    table = table.filter(keep)
    if table.num_rows == 0:
        raise InputError(f"{path}: no gene, transcript or exon lines: is this a GTF file?")

    rows = table["row"].to_numpy()
    start, end, strand = _coordinates(path, table, rows, skipped)

    attrs = table["attributes"]
    gene_id = pc.struct_field(pc.extract_regex(attrs, _GENE_ID_RE), [0])
    tx_id = pc.struct_field(pc.extract_regex(attrs, _TX_ID_RE), [0])
    gene_id_np = gene_id.to_numpy(zero_copy_only=False)
    missing_gene = pc.or_kleene(pc.is_null(gene_id), pc.equal(gene_id, "")).to_numpy(zero_copy_only=False)
    missing_gene = np.asarray(missing_gene, dtype=bool)
    if missing_gene.any():
        _fail(path, "no gene_id attribute", rows[missing_gene], skipped)

    frame = pd.DataFrame({
        "row": rows,
        "feature": table["feature"].to_numpy(zero_copy_only=False).astype(str),
        "gene_id": gene_id_np.astype(str),
        "transcript_id": pc.fill_null(tx_id, "").to_numpy(zero_copy_only=False).astype(str),
        "seqname": table["seqname"].to_numpy(zero_copy_only=False).astype(str),
        "strand": strand,
        "start": start,
        "end": end,
    })
    if key_attribute is not None:
        frame["key"] = gtf_attribute(attrs, key_attribute)
    if alternatives:
        on = frame["feature"].to_numpy() == "gene"
        on = on if on.any() else np.ones(len(frame), dtype=bool)
        sub = attrs.filter(pa.array(on))
        for name in alternatives:
            values = np.full(len(frame), "", dtype=object)
            values[on] = gtf_attribute(sub, name)
            frame["alt:" + name] = values
    del table, attrs
    return frame, skipped


def _build(path: Path, frame: pd.DataFrame, skipped: np.ndarray,
           chrom_aliases: dict[str, str] | None) -> Annotation:
    report: dict = {}
    exons = frame[frame["feature"].to_numpy() == "exon"]
    no_tx = exons["transcript_id"].to_numpy() == ""
    if no_tx.any():
        _fail(path, "an exon without transcript_id", exons["row"].to_numpy()[no_tx], skipped)
    gene_lines = frame[frame["feature"].to_numpy() == "gene"]
    gene_lines = gene_lines.drop_duplicates(["gene_id", "seqname", "strand", "start", "end"])
    # a gene_id with two different gene lines (e.g. a PAR gene on X and Y) is ambiguous: left out
    conflicting = pd.unique(gene_lines.loc[gene_lines["gene_id"].duplicated().to_numpy(), "gene_id"])
    report["genes_with_conflicting_gene_lines"] = sorted(conflicting.tolist())

    exons = exons.drop_duplicates(["transcript_id", "gene_id", "seqname", "strand", "start", "end"])
    # a transcript_id shared by two genes would merge unrelated exons: those genes are left out
    tx_genes = exons.groupby("transcript_id", sort=False)["gene_id"].nunique()
    shared = tx_genes.index[tx_genes.to_numpy() > 1]
    sharing = pd.unique(exons.loc[is_in(exons["transcript_id"], shared), "gene_id"])
    report["genes_sharing_transcript_ids"] = sorted(sharing.tolist())

    # --- genes whose lines disagree on seqname/strand (e.g. trans-spliced) are left out ----------
    lines = pd.concat([gene_lines, exons], ignore_index=True)
    per_gene = lines.groupby("gene_id", sort=False).agg(n_seq=("seqname", "nunique"),
                                                         n_strand=("strand", "nunique"))
    mixed = per_gene.index[(per_gene["n_seq"].to_numpy() > 1) | (per_gene["n_strand"].to_numpy() > 1)]
    report["genes_mixed_seqname_or_strand"] = sorted(set(mixed.tolist()) - set(conflicting.tolist()))
    left_out = pd.Index(mixed).union(pd.Index(conflicting)).union(pd.Index(sharing))
    # --- num_overlaps among the eligible genes (one gene line, >= 2 exon lines; see module doc) ---
    exon_lines = frame.loc[frame["feature"].to_numpy() == "exon", "gene_id"].value_counts()
    eligible = gene_lines[~is_in(gene_lines["gene_id"], conflicting)]
    eligible = eligible[exon_lines.reindex(eligible["gene_id"].to_numpy(), fill_value=0).to_numpy() >= 2]
    partners = _count_overlaps(eligible["seqname"].to_numpy(), eligible["strand"].to_numpy(),
                               eligible["start"].to_numpy(), eligible["end"].to_numpy())
    overlaps_of = pd.Series(2 * partners, index=eligible["gene_id"].to_numpy())

    gene_lines = gene_lines[~is_in(gene_lines["gene_id"], left_out)]
    exons = exons[~is_in(exons["gene_id"], left_out)]

    # --- spans of every gene (gene line, else exon extent) -------------------------------------
    exon_span = exons.groupby("gene_id", sort=False).agg(
        seqname=("seqname", "first"), strand=("strand", "first"), start=("start", "min"), end=("end", "max"))
    line_span = gene_lines.set_index("gene_id")[["seqname", "strand", "start", "end"]]
    spans = pd.concat([line_span, exon_span[~is_in(exon_span.index, line_span.index)]])
    no_exons = spans.index[~is_in(spans.index, exon_span.index)]
    report["genes_without_exons"] = sorted(no_exons.tolist())

    spans["num_overlaps"] = overlaps_of.reindex(spans.index.to_numpy(), fill_value=0).to_numpy(np.int64)

    exons = exons[["gene_id", "transcript_id", "seqname", "strand", "start", "end"]]
    exons = exons.sort_values(["gene_id", "transcript_id", "start", "end"], kind="stable").reset_index(drop=True)
    genes = _gene_features(exons, spans, chrom_aliases)
    sites = splice_sites(exons)
    # distinct positions, donors and acceptors pooled; -1 where the gene has none (training's fill)
    n_sites = sites.drop_duplicates(["gene_id", "position"]).groupby("gene_id", sort=False).size()
    genes["n_splice_sites"] = n_sites.reindex(genes["gene_id"].to_numpy(), fill_value=-1).to_numpy(np.int64)
    genes = genes[["gene_id", "seqname", "strand", *GENOMIC_FEATURES]]
    genes = genes.sort_values(["seqname", "gene_start", "gene_id"], kind="stable").reset_index(drop=True)
    for name in GENOMIC_FEATURES:
        genes[name] = genes[name].astype(lookup(name).dtype)
    for col in ("gene_id", "seqname", "strand"):
        genes[col] = genes[col].astype("str")
    exons = exons.astype({"gene_id": "str", "transcript_id": "str", "seqname": "str", "strand": "str"})
    report["n_genes"] = int(len(genes))
    report["n_transcripts"] = int(exons["transcript_id"].nunique())
    report["n_exons"] = int(len(exons))
    return Annotation(str(path), genes, exons, sites, report)


def _count_overlaps(seqname: np.ndarray, strand: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per span, the number of other spans on the same seqname and strand that overlap it (inclusive)."""
    out = np.zeros(len(start), dtype=np.int64)
    codes, uniques = pd.factorize(pd.Series(seqname, dtype=object) + "\x00" + pd.Series(strand, dtype=object))
    for c in range(len(uniques)):  # loop over (chromosome, strand) pairs only
        idx = np.flatnonzero(codes == c)
        s, e = start[idx], end[idx]
        ss, es = np.sort(s), np.sort(e)
        # j overlaps i  <=>  s_j <= e_i and e_j >= s_i ; spans with e_j < s_i all have s_j <= e_i
        out[idx] = np.searchsorted(ss, e, side="right") - np.searchsorted(es, s, side="left") - 1
    return out


def _group_bounds(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal consecutive keys, plus len(keys) at the end."""
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.concatenate([[0], change, [len(keys)]]).astype(np.int64)


def _gene_features(exons: pd.DataFrame, spans: pd.DataFrame, chrom_aliases: dict[str, str] | None) -> pd.DataFrame:
    """Representative-transcript features per gene (exons sorted by gene, transcript, start)."""
    length = (exons["end"].to_numpy() - exons["start"].to_numpy() + 1).astype(np.int64)
    tx_codes = pd.factorize(exons["gene_id"].to_numpy() + "\x00" + exons["transcript_id"].to_numpy())[0]
    bounds = _group_bounds(tx_codes)
    first = bounds[:-1]
    n_ex = np.diff(bounds)
    tx = pd.DataFrame({
        "gene_id": exons["gene_id"].to_numpy()[first],
        "transcript_id": exons["transcript_id"].to_numpy()[first],
        "spliced": np.add.reduceat(length, first),
        "tx_start": np.minimum.reduceat(exons["start"].to_numpy(), first),
        "tx_end": np.maximum.reduceat(exons["end"].to_numpy(), first),
        "num_exons": n_ex,
        "first": first,
    })
    # median exon length: sort lengths within each transcript, average the middle one(s)
    order = np.lexsort((length, np.repeat(np.arange(len(first)), n_ex)))
    sorted_len = length[order]
    lo_mid = first + (n_ex - 1) // 2
    hi_mid = first + n_ex // 2
    tx["median_exon_length"] = (sorted_len[lo_mid] + sorted_len[hi_mid]) / 2.0
    # representative: longest spliced length, ties -> smallest transcript_id
    tx = tx.sort_values(["gene_id", "spliced", "transcript_id"], ascending=[True, False, True], kind="stable")
    rep = tx.drop_duplicates("gene_id", keep="first").set_index("gene_id")

    genes = spans.loc[rep.index].copy()
    genes.index.name = "gene_id"
    genes = genes.reset_index()
    rep = rep.loc[genes["gene_id"].to_numpy()]
    out = pd.DataFrame({
        "gene_id": genes["gene_id"].to_numpy(),
        "seqname": genes["seqname"].to_numpy(),
        "strand": genes["strand"].to_numpy(),
        "gene_start": genes["start"].to_numpy(),
        "gene_end": genes["end"].to_numpy(),
    })
    out["gene_length"] = out["gene_end"] - out["gene_start"] + 1
    out["tx_start"] = rep["tx_start"].to_numpy()
    out["tx_end"] = rep["tx_end"].to_numpy()
    out["transcript_length"] = out["tx_end"] - out["tx_start"] + 1
    out["num_exons"] = rep["num_exons"].to_numpy()
    out["total_exon_length"] = rep["spliced"].to_numpy()
    out["avg_exon_length"] = out["total_exon_length"] / out["num_exons"]
    out["median_exon_length"] = rep["median_exon_length"].to_numpy()
    out["total_intron_length"] = out["transcript_length"] - out["total_exon_length"]
    out["num_overlaps"] = genes["num_overlaps"].to_numpy()
    out["chrom"] = encode_chrom(out["seqname"].to_numpy(), chrom_aliases)
    return out


def splice_sites(exons: pd.DataFrame) -> pd.DataFrame:
    """Unique annotated (gene_id, position, site_type) from exons sorted by gene, transcript, start."""
    if len(exons) == 0:
        return pd.DataFrame({"gene_id": pd.Series([], dtype="str"), "position": pd.Series([], dtype=np.int64),
                             "site_type": pd.Series([], dtype="str")})
    tx_codes = pd.factorize(exons["gene_id"].to_numpy() + "\x00" + exons["transcript_id"].to_numpy())[0]
    bounds = _group_bounds(tx_codes)
    n = len(exons)
    is_first = np.zeros(n, dtype=bool)
    is_first[bounds[:-1]] = True
    is_last = np.zeros(n, dtype=bool)
    is_last[bounds[1:] - 1] = True
    start = exons["start"].to_numpy()
    end = exons["end"].to_numpy()
    plus = exons["strand"].to_numpy() == "+"
    gid = exons["gene_id"].to_numpy()
    # exon with a following exon (higher coordinate): its end + 1 begins an intron
    right = ~is_last
    # exon with a preceding exon (lower coordinate): its start - 1 ends an intron
    left = ~is_first
    donor_pos = np.concatenate([end[right & plus] + 1, start[left & ~plus] - 1])
    donor_gene = np.concatenate([gid[right & plus], gid[left & ~plus]])
    acc_pos = np.concatenate([start[left & plus] - 1, end[right & ~plus] + 1])
    acc_gene = np.concatenate([gid[left & plus], gid[right & ~plus]])
    sites = pd.DataFrame({
        "gene_id": np.concatenate([donor_gene, acc_gene]),
        "position": np.concatenate([donor_pos, acc_pos]).astype(np.int64),
        "site_type": np.repeat(np.array(["donor", "acceptor"], dtype=object), [len(donor_pos), len(acc_pos)]),
    })
    sites = sites.drop_duplicates().sort_values(["gene_id", "position", "site_type"], kind="stable")
    return sites.reset_index(drop=True).astype({"gene_id": "str", "site_type": "str"})

"""``--annotation`` in any of its formats: GTF, GFF3 or a SpliceAI gene table, plain or gzip,
detected from the content (never the file name), and the choice of gene key.

Every reader turns its lines into the same normalised frame (row, feature in gene/transcript/exon,
gene_id, transcript_id, seqname, strand, start, end) and :func:`dask_enrich.genome.gtf._build`
computes the gene table, exons and splice sites from it: one feature computation for all formats.

Gene keys (``gene_key``): the gene table's ``gene_id`` is, by default, GTF ``gene_id``; GFF3
``gene_id``, else the gene's ``ID`` without ``gene-``/``gene:``; the gene table's ``#NAME``. With
``gene_key=ATTRIBUTE`` (GTF and GFF3: ``gene_name``, ``locus_tag``, ``Name``, ``gene``, ...) the key
is that attribute of the gene (GFF3: of its gene line; GTF: of any of its lines). Genes without the
attribute, with two values of it, or sharing a value with another gene are left out of the gene
table and listed in the report (``genes_without_key``, ``genes_with_two_keys``,
``genes_sharing_key``), never merged; they still count as neighbours (``num_overlaps``), so every
gene's features are the same whichever key names it.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InputError
from ..text import is_in
from .geneids import KEY_ATTRIBUTES
from .gtf import Annotation, _build, gtf_frame

Format = Literal["gtf", "gff3", "genetable"]
_SNIFF_BYTES = 1 << 20
#: Prefix of the gene ids :func:`rekey` gives genes it leaves out (never a real key).
UNKEYED = "\x00unkeyed:"
_GTF_ATTR = re.compile(r'^\s*[A-Za-z_][\w.]*\s+("[^"]*"|[^\s;=]+)\s*(;|$)')
_GFF3_ATTR = re.compile(r"^\s*[^\s;=]+=[^;]*(;|$)")


def _head(path: Path) -> str:
    """The first ~1 MB of the file's (decompressed) text."""
    with open(path, "rb") as fh:
        raw = fh.read(_SNIFF_BYTES)
    if raw[:2] == b"\x1f\x8b":
        out = []
        try:
            while raw[:2] == b"\x1f\x8b" and sum(map(len, out)) < _SNIFF_BYTES:  # multi-member gzip
                d = zlib.decompressobj(31)
                out.append(d.decompress(raw, _SNIFF_BYTES))
                raw = d.unused_data
        except zlib.error as exc:
            raise InputError(f"{path}: corrupt gzip: {exc}") from exc
        raw = b"".join(out)
    return raw.decode("utf-8", errors="replace")


def detect_format(path: str | Path) -> Format:
    """``gtf``, ``gff3`` or ``genetable`` (SpliceAI), from the file's content; else InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"annotation file not found: {path}")
    lines = _head(path).splitlines()
    if lines and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut
    first = next((ln for ln in lines if ln.strip()), "")
    if first.split("\t")[:3] == ["#NAME", "CHROM", "STRAND"]:
        return "genetable"
    if any(ln.startswith("##gff-version") and ln.split()[1:2] and ln.split()[1].startswith("3")
           for ln in lines if ln.startswith("##")):
        return "gff3"
    data = (ln.split("\t") for ln in lines if ln.strip() and not ln.startswith("#"))
    for fields in (f for f in data if len(f) == 9 and f[8].strip() not in ("", ".")):
        if _GFF3_ATTR.match(fields[8]):
            return "gff3"
        if _GTF_ATTR.match(fields[8]):
            return "gtf"
        break  # the first line with attributes decides
    sample = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), first)
    raise InputError(f"{path}: not a GTF, GFF3 or SpliceAI gene table: expected 9 tab-separated "
                     "columns with GTF ('gene_id \"X\";') or GFF3 ('ID=X;') attributes, or the header "
                     f"'#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END'; first line: {sample[:100]!r}")


def rekey(path: Path, frame: pd.DataFrame, attribute: str) -> tuple[pd.DataFrame, dict]:
    """``frame`` with gene_id replaced by each gene's ``key`` column value (see the module doc)."""
    key = frame["key"].to_numpy(dtype=object)
    gid = frame["gene_id"].to_numpy(dtype=object)
    has = key != ""
    if not has.any():
        raise InputError(f"{path}: no gene has a {attribute!r} attribute (--gene-key {attribute}); "
                         f"the default key is gene_id (GFF3: gene_id, else ID)")
    pairs = pd.DataFrame({"gene": gid[has], "key": key[has]}).drop_duplicates()
    per_gene = pairs.groupby("gene", sort=False)["key"].nunique()
    two = per_gene.index[per_gene.to_numpy() > 1]
    pairs = pairs[~is_in(pairs["gene"], two)]
    per_key = pairs.groupby("key", sort=False)["gene"].nunique()
    shared_keys = per_key.index[per_key.to_numpy() > 1]
    shared_rows = is_in(pairs["key"], shared_keys)
    shared = pairs.loc[shared_rows, "gene"]
    mapping = pairs[~shared_rows].set_index("gene")["key"]
    all_genes = pd.unique(gid)
    without = np.setdiff1d(all_genes, pd.unique(pairs["gene"]).astype(object).tolist() + list(two))
    report = {"gene_key": attribute,
              "genes_without_key": sorted(map(str, without)),
              "genes_with_two_keys": sorted(map(str, two)),
              "genes_sharing_key": sorted(map(str, shared))}
    new = pd.Series(gid).map(mapping).to_numpy(dtype=object)
    # genes without a usable key stay in the computation (they still overlap other genes: the
    # features of the keyed genes must not depend on the key) under a reserved id, dropped after
    lost = pd.isna(new)
    new[lost] = UNKEYED + gid[lost].astype(str)
    frame = frame.drop(columns="key").copy()
    frame["gene_id"] = new.astype(str)
    return frame, report


def _drop_unkeyed(ann: Annotation) -> Annotation:
    """``ann`` without the genes :func:`rekey` kept under a reserved id (report lists cleaned)."""
    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[~frame["gene_id"].str.startswith(UNKEYED)].reset_index(drop=True)

    ann.genes, ann.exons, ann.splice_sites = keep(ann.genes), keep(ann.exons), keep(ann.splice_sites)
    for name, value in ann.report.items():
        if isinstance(value, list) and value and isinstance(value[0], str):
            ann.report[name] = [v for v in value if not v.startswith(UNKEYED)]
    ann.report.update(n_genes=int(len(ann.genes)), n_transcripts=int(ann.exons["transcript_id"].nunique()),
                      n_exons=int(len(ann.exons)))
    return ann


def read_annotation(path: str | Path, *, chrom_aliases: dict[str, str] | None = None,
                    gene_key: str | None = None) -> Annotation:
    """Parse a GTF, GFF3 or SpliceAI gene table (plain or gzip, detected from the content) into an
    :class:`Annotation`; ``gene_key`` chooses the attribute whose values are the gene ids. The
    annotation's ``alternative_keys`` holds, per gene, the other attributes of
    :data:`~dask_enrich.genome.geneids.KEY_ATTRIBUTES` it has (for the hint when ids do not match)."""
    path = Path(path)
    kind = detect_format(path)
    report: dict = {"format": kind}
    alternatives = tuple(a for a in KEY_ATTRIBUTES if a != gene_key)
    if kind == "genetable":
        from .genetable import genetable_frame

        if gene_key not in (None, "#NAME", "NAME"):
            raise InputError(f"{path}: a SpliceAI gene table has one gene key, #NAME; "
                             f"--gene-key {gene_key} cannot apply to it")
        frame, skipped = genetable_frame(path)
        gene_key = None
    elif kind == "gff3":
        from .gff3 import gff3_frame

        frame, skipped, gff_report = gff3_frame(path, gene_key, alternatives)
        report.update(gff_report)
    else:
        frame, skipped = gtf_frame(path, gene_key, alternatives)
    if gene_key is not None:
        frame, key_report = rekey(path, frame, gene_key)
        report.update(key_report)
    alt_columns = [c for c in frame.columns if c.startswith("alt:")]
    on = frame["feature"].to_numpy() == "gene"  # the alternatives are read on gene lines, if any
    alt = frame.loc[on if on.any() else slice(None), ["gene_id", *alt_columns]]
    alt = alt.replace("", np.nan).groupby("gene_id", sort=False).first()
    frame = frame.drop(columns=alt_columns)
    ann = _build(path, frame, skipped, chrom_aliases)
    ann.report = {**report, **ann.report}
    if gene_key is not None:
        ann = _drop_unkeyed(ann)
    alt = alt.reindex(ann.genes["gene_id"].to_numpy())
    alt.columns = [c.removeprefix("alt:") for c in alt.columns]
    ann.alternative_keys = alt.dropna(axis=1, how="all")
    return ann

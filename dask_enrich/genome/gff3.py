"""GFF3 parsing into the normalised line frame of :mod:`dask_enrich.genome.gtf`, so that GFF3 and
GTF share one feature computation (:func:`dask_enrich.genome.gtf._build`).

Vectorised like the GTF reader (pyarrow CSV, regular expressions over the attribute column, pandas
joins per level of the ``Parent`` hierarchy); no Python loop over lines.

Documented rules:

* **Exons** are the ``exon`` lines. An exon belongs to the feature(s) its ``Parent`` names (several
  comma-separated parents allowed: the exon is used once for each). The **gene** of an exon is the
  top of its ``Parent`` chain (the first ancestor without a ``Parent``); its **transcript** is its
  direct parent (any type: mRNA, transcript, lnc_RNA, ncRNA, primary_transcript, miRNA, ...; a
  miRNA whose parent is a primary_transcript is a transcript of the primary transcript's gene, as
  NCBI's GTF writes it).
* **Gene lines** are the tops reached from exons, plus every parent-less feature typed ``gene``,
  ``pseudogene`` or ``*_gene`` (``ncRNA_gene``, ``transposable_element_gene``): **pseudogenes are
  genes** (NCBI types them ``pseudogene`` where its GTF writes ordinary ``gene`` lines).
* **Gene-level exons** (an exon whose parent is the gene itself, as EMBL/NCBI GFF3 attach the union
  of a gene's isoforms beside its mRNAs' own exons) are ignored when the gene has exons through a
  transcript: they are not a transcript (counting them as one would change num_exons, the exon
  lengths and n_splice_sites, and the GTF of the same annotation has no such transcript). A gene
  whose only exons are gene-level gets them as one transcript named after the gene. Both cases
  are counted in the report.
* **Gene key** (``gene_id`` of the gene table): the gene line's ``gene_id`` attribute when present
  (Ensembl, GENCODE), else its ``ID`` with an NCBI ``gene-`` or Ensembl ``gene:`` prefix removed.
  **Transcript key**: ``transcript_id`` when present, else ``ID`` without ``rna-``/``transcript:``.
  Attribute values are percent-decoded (``%2C`` -> ``,``) after ``Parent`` is split on commas.
* An exon (or an ancestor of one) whose ``Parent`` is not the ``ID`` of any feature, an exon
  without ``Parent``, and a ``Parent`` chain deeper than :data:`MAX_DEPTH` (a cycle) raise
  :class:`InputError` naming the file and lines. Records after a ``##FASTA`` line are ignored.
"""
from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from .gtf import _MAX_LINES_IN_MESSAGE, _coordinates, _fail, _line_numbers, _read_table

#: Longest Parent chain followed from an exon (exon -> transcript -> gene is 2).
MAX_DEPTH = 8
_GENE_PREFIX = r"^(?:gene-|gene:)"
_TX_PREFIX = r"^(?:rna-|transcript:)"


def attribute(attrs: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    """Raw value of GFF3 attribute ``name`` on each line (object array, None where absent)."""
    regex = r"(?:^|;)\s*" + re.escape(name) + r"=(?P<v>[^;]*)"
    values = pc.struct_field(pc.extract_regex(attrs, regex), [0])
    return values.to_numpy(zero_copy_only=False)


def percent_decode(values: np.ndarray) -> np.ndarray:
    """GFF3 percent-decoding (``%2C`` -> ``,``), applied only to the distinct values holding ``%``."""
    s = pd.Series(values, dtype=object)
    has = s.str.contains("%", regex=False).fillna(False).to_numpy(dtype=bool)
    if has.any():
        s[has] = s[has].map(urllib.parse.unquote)
    return s.to_numpy(dtype=object)


def _present(values: np.ndarray) -> np.ndarray:
    return pd.notna(values) & (pd.Series(values, dtype=object).fillna("").to_numpy() != "")


def _is_gene_type(types: pa.ChunkedArray) -> np.ndarray:
    """Types that are genes: ``gene``, ``pseudogene``, ``*_gene``."""
    gene = pc.or_(pc.is_in(types, value_set=pa.array(["gene", "pseudogene"])),
                  pc.ends_with(types, "_gene"))
    return gene.to_numpy(zero_copy_only=False)


def _take(attrs: pa.ChunkedArray, rows: np.ndarray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """The attribute strings of ``rows`` (a filter in file order, much cheaper than a take over many
    chunks) and the position of each of ``rows`` in it."""
    mask = np.zeros(len(attrs), dtype=bool)
    mask[rows] = True
    return attrs.filter(pa.array(mask)), np.searchsorted(np.flatnonzero(mask), rows)


def _chains(path: Path, child_row: np.ndarray, parent_row: np.ndarray, node_parents: pd.DataFrame,
            skipped: np.ndarray) -> np.ndarray:
    """Top ancestor row of each (exon edge -> parent row), following ``node_parents`` (child, parent
    rows; parent -1 where the named Parent does not exist). Returns (edge index, top row) pairs."""
    chains = pd.DataFrame({"edge": np.arange(len(parent_row)), "cur": parent_row})
    done = []
    for _ in range(MAX_DEPTH + 1):
        step = chains.merge(node_parents, how="left", left_on="cur", right_on="child")
        top = step["parent"].isna().to_numpy()
        done.append(step.loc[top, ["edge", "cur"]])
        step = step[~top]
        if step.empty:
            break
        lost = step["parent"].to_numpy() < 0
        if lost.any():
            rows = pd.unique(step["cur"].to_numpy()[lost])
            _fail(path, "a Parent that is not the ID of any feature (expected the ID of a gene or "
                  "transcript line)", rows, skipped, "GFF3")
        chains = pd.DataFrame({"edge": step["edge"].to_numpy(), "cur": step["parent"].to_numpy(np.int64)})
    else:
        rows = pd.unique(child_row[chains["edge"].to_numpy()])
        _fail(path, f"a Parent chain deeper than {MAX_DEPTH} levels (a cycle?)", rows, skipped, "GFF3")
    out = pd.concat(done, ignore_index=True)
    return out["edge"].to_numpy(np.int64), out["cur"].to_numpy(np.int64)


def gff3_frame(path: Path, key_attribute: str | None = None, alternatives: tuple[str, ...] = ()
               ) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The normalised line frame of a GFF3 (see :func:`dask_enrich.genome.gtf.gtf_frame`; ``key``
    and ``alt:NAME`` hold the gene line's ``key_attribute`` and ``alternatives``, on the gene lines
    only), the skipped line numbers and a report."""
    table, skipped = _read_table(path, "GFF3")
    if table.num_rows == 0:
        raise InputError(f"{path}: no GFF3 records")
    attrs = table["attributes"]
    ids = attribute(attrs, "ID")
    parents = attribute(attrs, "Parent")
    is_exon = pc.equal(table["feature"], "exon").to_numpy(zero_copy_only=False)
    has_parent = _present(parents)

    # index of feature IDs (exons are never parents); a multi-line feature's first line stands for it
    node_rows = np.flatnonzero(~is_exon & _present(ids))
    first = pd.Series(ids[node_rows], dtype=object).drop_duplicates()
    node_index = pd.Index(first.to_numpy(dtype=object))
    first_row = node_rows[first.index.to_numpy()]

    def lookup(parent_ids: np.ndarray) -> np.ndarray:
        at = node_index.get_indexer(parent_ids)
        return np.where(at >= 0, first_row[np.maximum(at, 0)], -1) if len(first_row) else np.full(len(at), -1)

    def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lists = pc.split_pattern(pa.array(parents[rows], type=pa.string()), ",")
        flat = pc.utf8_trim_whitespace(pc.list_flatten(lists)).to_numpy(zero_copy_only=False)
        owner = rows[pc.list_parent_indices(lists).to_numpy()]
        return owner, flat

    exon_rows = np.flatnonzero(is_exon)
    if len(exon_rows) == 0:
        raise InputError(f"{path}: no exon lines: is this a GFF3 gene annotation?")
    orphans = exon_rows[~has_parent[exon_rows]]
    if len(orphans):
        _fail(path, "an exon without Parent (expected Parent=<transcript or gene ID>)", orphans, skipped, "GFF3")
    exon_of_edge, parent_ids = split(exon_rows)
    direct = lookup(parent_ids)
    if np.any(direct < 0):
        bad = exon_of_edge[direct < 0]
        missing = pd.unique(parent_ids[direct < 0])[:3]
        lines = _line_numbers(bad[:_MAX_LINES_IN_MESSAGE], skipped)
        raise InputError(f"{path}: {len(bad)} GFF3 exon line(s) whose Parent is not the ID of any "
                         f"feature (expected the ID of a transcript or gene line): Parent "
                         f"{', '.join(map(repr, missing))} (line(s) {', '.join(map(str, lines))})")
    child_rows = node_rows[has_parent[node_rows]]
    node_child, node_parent_ids = split(child_rows)
    node_parents = pd.DataFrame({"child": node_child, "parent": lookup(node_parent_ids)})
    node_parents = node_parents.drop_duplicates()
    edge, top = _chains(path, exon_of_edge, direct, node_parents, skipped)
    exon_row = exon_of_edge[edge]
    tx_row = direct[edge]
    gene_level = tx_row == top

    # gene lines: the tops reached from exons, plus parent-less gene-typed features
    typed = np.flatnonzero(_is_gene_type(table["feature"]) & ~has_parent)
    gene_rows = np.union1d(pd.unique(top), typed).astype(np.int64)

    def keys(rows: np.ndarray, attr: str, prefix: str) -> np.ndarray:
        sub, at = _take(attrs, rows)
        value = attribute(sub, attr)[at]
        fallback = pd.Series(ids[rows], dtype=object).fillna("").str.replace(prefix, "", regex=True)
        return percent_decode(np.where(_present(value), value, fallback.to_numpy(dtype=object)))

    gene_key = pd.Series(keys(gene_rows, "gene_id", _GENE_PREFIX), index=gene_rows)
    tx_rows = pd.unique(tx_row[~gene_level])
    tx_key = pd.Series(keys(tx_rows, "transcript_id", _TX_PREFIX), index=tx_rows)

    # gene-level exons: ignored beside transcript exons, else the gene's one transcript
    with_tx = np.isin(top, top[~gene_level])
    ignored = gene_level & with_tx
    report = {"gene_level_exons_ignored": int(ignored.sum()),
              "genes_with_only_gene_level_exons": sorted(gene_key.loc[pd.unique(top[gene_level & ~with_tx])].tolist())}
    keep = ~ignored
    exon_row, tx_row, top, gene_level = exon_row[keep], tx_row[keep], top[keep], gene_level[keep]
    gene_of_exon = gene_key.loc[top].to_numpy(dtype=object)
    tx_of_exon = np.where(gene_level, gene_of_exon,
                          tx_key.reindex(tx_row).to_numpy(dtype=object))

    line = np.concatenate([gene_rows, exon_row])
    sub = table.select(["seqname", "start", "end", "strand"]).take(pa.array(line))
    start, end, strand = _coordinates(path, sub, line, skipped, "GFF3")
    frame = pd.DataFrame({
        "row": line,
        "feature": np.repeat(np.array(["gene", "exon"], dtype=object), [len(gene_rows), len(exon_row)]),
        "gene_id": np.concatenate([gene_key.to_numpy(dtype=object), gene_of_exon]).astype(str),
        "transcript_id": np.concatenate([np.full(len(gene_rows), "", dtype=object), tx_of_exon]).astype(str),
        "seqname": sub["seqname"].to_numpy(zero_copy_only=False).astype(str),
        "strand": strand,
        "start": start,
        "end": end,
    })
    sub_attrs, at = _take(attrs, gene_rows)
    for column, name in ([("key", key_attribute)] if key_attribute is not None else []) + \
            [("alt:" + a, a) for a in alternatives]:
        value = percent_decode(attribute(sub_attrs, name)[at])
        value = np.where(_present(value), value, "")  # on the gene lines, which every gene has
        frame[column] = np.concatenate([value, np.full(len(exon_row), "", dtype=object)]).astype(str)
    return frame, skipped, report

"""The feature registry: every feature is declared here once.

Each :class:`Feature` carries its name, group, dtype, the inputs it needs and a one-line doc. The
manifest checks, the output schema (pandas dtypes, the Dask ``meta`` and the pyarrow schema), the
missing-value policy and the docs (``dask-enrich features``) are all derived from this module.

k-mer features are not listed one by one: any name matching ``^(\\d+)mer_([ACGTN]+)$`` whose
k-mer has length k is a k-mer count feature, for any k and mixed k in one manifest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

# The inputs a feature can need. ``scores`` always come with the positions.
SCORES = "scores"  # donor_score, acceptor_score, neither_score of the row
CONTEXT = "context"  # context_score_* columns, or a full base-prediction track
SEQUENCE = "sequence"  # the reference genome (FASTA) and the gene's span and strand
ANNOTATION = "annotation"  # the gene annotation (GTF)

#: What to give the run so that an input kind becomes available (used in error messages).
INPUT_HINTS = {
    CONTEXT: "context_score_* columns in the positions, or --track",
    SEQUENCE: "--genome and --annotation (or --cache)",
    ANNOTATION: "--annotation (or --cache)",
}

FLOAT = np.dtype("float64")
INT = np.dtype("int64")
COUNT = np.dtype("int32")

KMER_PATTERN = re.compile(r"^(\d+)mer_([ACGTN]+)$")


@dataclass(frozen=True)
class Feature:
    """One feature: its name, group, dtype, the inputs it needs and a one-line doc."""

    name: str
    group: str
    dtype: np.dtype
    requires: frozenset[str]
    doc: str
    #: Documented fill value of the ``impute`` policy when no training median is known.
    impute_constant: float = 0.0
    #: For plugin features: the vectorised kernel ``kernel(inputs, names) -> {name: column}`` (see
    #: :mod:`dask_enrich.features.plugins`) and the plugin's name, used in error messages.
    kernel: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    plugin: str | None = None

    @property
    def is_integer(self) -> bool:
        return self.dtype.kind in "iu"


_REGISTRY: dict[str, Feature] = {}


def _declare(name: str, group: str, dtype: np.dtype, requires: Iterable[str], doc: str) -> None:
    if name in _REGISTRY:
        raise ValueError(f"feature {name!r} declared twice")
    _REGISTRY[name] = Feature(name, group, np.dtype(dtype), frozenset(requires), doc)


# --- Base scores (3) -----------------------------------------------------------------------------
for _t in ("donor", "acceptor", "neither"):
    _declare(f"{_t}_score", "base", FLOAT, {SCORES}, f"base-model {_t} score of the position")

# --- Probability features (7) --------------------------------------------------------------------
for _name, _doc in [
    ("relative_donor_probability", "d / (d + a + eps)"),
    ("splice_probability", "(d + a) / (d + a + n + eps)"),
    ("donor_acceptor_diff", "(d - a) / (max(d, a) + eps)"),
    ("splice_neither_diff", "(max(d, a) - n) / (max(d, a, n) + eps)"),
    ("donor_acceptor_logodds", "ln(d + eps) - ln(a + eps)"),
    ("splice_neither_logodds", "ln(d + a + eps) - ln(n + eps)"),
    ("probability_entropy", "-sum of p * ln(p + eps) over p in (d, a, n), not renormalised"),
]:
    _declare(_name, "probability", FLOAT, {SCORES}, _doc)

# --- Context scores (4) and their summaries (3) -------------------------------------------------
CONTEXT_OFFSETS = {"m2": -2, "m1": -1, "p1": 1, "p2": 2}
for _suffix, _offset in CONTEXT_OFFSETS.items():
    _declare(
        f"context_score_{_suffix}",
        "context",
        FLOAT,
        {CONTEXT},
        f"base score of the nucleotide at offset {_offset:+d} in transcript orientation (0 outside the gene)",
    )
for _name, _doc in [
    ("context_neighbor_mean", "mean of the four context scores"),
    ("context_asymmetry", "(m1 + m2) - (p1 + p2)"),
    ("context_max", "max of the four context scores"),
]:
    _declare(_name, "context", FLOAT, {CONTEXT}, _doc)

# --- Per-type features (11 for donor, 11 for acceptor) -------------------------------------------
PER_TYPE_DOCS = {
    "diff_m1": "s - m1",
    "diff_m2": "s - m2",
    "diff_p1": "s - p1",
    "diff_p2": "s - p2",
    "surge_ratio": "s / (m1 + p1 + eps)",
    "is_local_peak": "1 if s > m1 and s > p1 and s > 1e-3 else 0",
    "weighted_context": "0.1*m2 + 0.2*m1 + 0.4*s + 0.2*p1 + 0.1*p2",
    "peak_height_ratio": "s / (mean4 + eps)",
    "second_derivative": "(s - m1) - (p1 - s)",
    "signal_strength": "s - mean4 (signed)",
    "context_diff_ratio": "s / (max4 + eps)",
}
for _t in ("donor", "acceptor"):
    for _suffix, _doc in PER_TYPE_DOCS.items():
        _declare(
            f"{_t}_{_suffix}",
            f"{_t}_context",
            INT if _suffix == "is_local_peak" else FLOAT,
            {SCORES, CONTEXT},
            f"{_doc}, with s = {_t}_score",
        )

# --- Cross-type features (4) ---------------------------------------------------------------------
for _name, _requires, _doc in [
    ("donor_acceptor_peak_ratio", {SCORES, CONTEXT},
     "donor_peak_height_ratio / (acceptor_peak_height_ratio + eps)"),
    ("type_signal_difference", {SCORES, CONTEXT},
     "donor_signal_strength - acceptor_signal_strength"),
    ("score_difference_ratio", {SCORES}, "(d - a) / (d + a + eps)"),
    ("signal_strength_ratio", {SCORES, CONTEXT},
     "donor_signal_strength / (acceptor_signal_strength + eps)"),
]:
    _declare(_name, "cross_type", FLOAT, _requires, _doc)

# --- Sequence features (3); k-mers are pattern features, see kmer_feature() ----------------------
_declare("gc_content", "sequence", FLOAT, {SEQUENCE}, "(G + C) / window length, window of +-250 nt in transcript orientation")
_declare("sequence_length", "sequence", INT, {SEQUENCE}, "window length (500 unless clipped at a gene end)")
_declare("sequence_complexity", "sequence", FLOAT, {SEQUENCE}, "Shannon entropy (bits) of the window's character composition")

# --- Genomic features (14) -----------------------------------------------------------------------
for _name, _dtype, _doc in [
    ("gene_start", INT, "gene start (1-based; GTF gene line, else smallest exon start)"),
    ("gene_end", INT, "gene end (GTF gene line, else largest exon end)"),
    ("gene_length", INT, "gene_end - gene_start + 1"),
    ("tx_start", INT, "start of the representative transcript (longest spliced length)"),
    ("tx_end", INT, "end of the representative transcript"),
    ("transcript_length", INT, "tx_end - tx_start + 1 of the representative transcript"),
    ("num_exons", INT, "exons of the representative transcript"),
    ("avg_exon_length", FLOAT, "mean exon length of the representative transcript"),
    ("median_exon_length", FLOAT, "median exon length of the representative transcript"),
    ("total_exon_length", INT, "spliced length of the representative transcript"),
    ("total_intron_length", INT, "transcript_length - total_exon_length of the representative transcript"),
    ("n_splice_sites", INT, "distinct annotated splice-site positions over all transcripts, donors and acceptors pooled; -1 for a gene with none"),
    ("num_overlaps", INT, "2 x other same-strand genes overlapping this gene's span (both with a gene line and >= 2 exon lines), else 0"),
    ("chrom", INT, "encoded chromosome: 1-22, X=23, Y=24, MT/M=25, other=100 ('chr' prefix ignored)"),
]:
    _declare(_name, "genomic", _dtype, {ANNOTATION}, _doc)


def parse_kmer(name: str) -> tuple[int, str] | None:
    """``(k, kmer)`` for a k-mer feature name such as ``3mer_ACG``, else None."""
    match = KMER_PATTERN.match(name)
    if match is None or int(match.group(1)) != len(match.group(2)):
        return None
    return len(match.group(2)), match.group(2)


def kmer_feature(name: str) -> Feature | None:
    """The k-mer count feature called ``name`` (``{k}mer_{KMER}``), or None if it is not one."""
    parsed = parse_kmer(name)
    if parsed is None:
        return None
    k, kmer = parsed
    return Feature(
        name,
        "kmer",
        COUNT,
        frozenset({SEQUENCE}),
        f"count of overlapping {kmer} in the window (k={k}, raw count, strand-specific)",
    )


def lookup(name: str) -> Feature | None:
    """The feature called ``name`` (built-in, k-mer or plugin), or None when nobody declares it."""
    found = _REGISTRY.get(name) or kmer_feature(name)
    if found is not None:
        return found
    from . import plugins  # plugins import this module; imported late to keep the order one-way

    return plugins.lookup_plugin(name)


def builtin_features() -> Iterator[Feature]:
    """Every named (non-pattern) built-in feature, in declaration order."""
    return iter(_REGISTRY.values())


def is_builtin(name: str) -> bool:
    """True for the spec's features and k-mers, False for plugin features."""
    return name in _REGISTRY or kmer_feature(name) is not None


# --- Schema derivation ---------------------------------------------------------------------------
#: Identifying columns the engine writes before the features, with their dtypes.
STRING = pd.Series([], dtype="str").dtype
ID_COLUMNS: dict[str, tuple[object, pa.DataType]] = {
    "gene_id": (STRING, pa.string()),
    "position": (INT, pa.int64()),
    "chrom": (STRING, pa.string()),
    "strand": (STRING, pa.string()),
}
#: Name of the identifying chromosome column when the manifest wants the encoded ``chrom`` feature.
CHROM_ID_WHEN_FEATURE = "chrom_name"


def id_column_name(column: str, feature_names: Iterable[str]) -> str:
    """Output name of identifying column ``column`` (``chrom`` becomes ``chrom_name`` beside the
    encoded ``chrom`` feature)."""
    if column == "chrom" and "chrom" in set(feature_names):
        return CHROM_ID_WHEN_FEATURE
    return column


def meta_frame(features: Iterable[Feature], id_columns: dict[str, object]) -> pd.DataFrame:
    """An empty frame with the output columns and dtypes: the Dask ``meta`` of an enriched partition.

    ``id_columns`` maps each identifying output column to its pandas dtype, in output order.
    """
    columns: dict[str, pd.Series] = {
        name: pd.Series([], dtype=dtype) for name, dtype in id_columns.items()
    }
    for feature in features:
        columns[feature.name] = pd.Series([], dtype=feature.dtype)
    return pd.DataFrame(columns)


def arrow_schema(features: Iterable[Feature], id_columns: dict[str, pa.DataType]) -> pa.Schema:
    """The pyarrow schema of every output file for these features and identifying columns."""
    fields = [pa.field(name, dtype) for name, dtype in id_columns.items()]
    fields += [pa.field(f.name, pa.from_numpy_dtype(f.dtype)) for f in features]
    return pa.schema(fields)

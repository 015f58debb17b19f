"""Input validation at the boundary: schema checks on the client, bad rows split off with a reason.

Two levels, both pure pandas/numpy (no Dask):

* :func:`check_columns` looks only at column names and dtypes (the Dask ``meta``), so it runs on the
  client before any heavy work: a missing required column (with a close-name suggestion such as
  ``donor_prob`` -> ``donor_score``) or a column of the wrong type (text in a score column, text
  positions, a numeric strand) raises one :class:`~dask_enrich.errors.InputError` that names the
  file, each column and what is wrong.
* :func:`split_bad_rows` checks the rows of one partition, vectorised, and returns
  ``(good, rejected, warnings)``. Every rejected row carries a ``reason`` of the form
  ``"<code>: <detail>"`` (the code is one of :data:`REASONS`, so rejected rows group by code) and the
  ``source`` file. ``len(good) + len(rejected) == len(frame)`` always holds, and the good rows keep
  their order, index and dtypes. :func:`raise_for_bad_rows` is the ``--on-bad-rows error`` path.

Each row gets the first reason that applies, in the order of :data:`REASONS`. Duplicate
``(gene_id, position)`` rows are looked for among the rows that pass every other check (the first of
them is kept, the later ones rejected with ``duplicate_position``), so a bad copy of a row never
pushes the good one out.
"""
from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping

import numpy as np
import pandas as pd

from . import columns as _columns
from .columns import ALIASES, CONTEXT_COLUMNS, REQUIRED  # noqa: F401 (declared there, kept importable)
from .config import EnrichConfig
from .errors import InputError
from .gene_codes import GeneCodes

#: The base scores (checked in [0, 1] and never missing).
SCORE_COLUMNS = _columns.BASE_SCORES
#: Default tolerance of the score-sum warning: |d + a + n - 1| above this is reported (not rejected).
SUM_TOLERANCE = 0.05
#: Columns added to the rejected rows.
REASON, SOURCE = "reason", "source"

#: Reason codes of rejected rows, in the order they are checked (a row gets the first that applies).
REASONS: dict[str, str] = {
    "gene_id_missing": "gene_id is empty or missing",
    "position_not_integer": "position is missing, not a number or has a fractional part",
    "position_too_large": "position is a whole number too large for a coordinate (>= 2**62)",
    "position_out_of_range": "position below 1 (genomic) or below 0 (gene-relative)",
    "score_not_numeric": "a score column holds text",
    "score_missing": "a base score is missing (NaN)",
    "score_infinite": "a score is infinite",
    "score_negative": "a score is negative",
    "score_above_one": "a score is above 1",
    "strand_invalid": "strand is not '+' or '-'",
    "gene_not_in_annotation": "the gene is absent from the annotation",
    "strand_mismatch": "the row's strand differs from the annotation's",
    "chromosome_mismatch": "the row's chrom differs from the annotation's chromosome for the gene",
    "position_outside_gene": "the position is outside the gene's span",
    "chromosome_not_in_genome": "the gene's chromosome is absent from the genome FASTA",
    "gene_beyond_sequence_end": "the gene's span runs past the end of its chromosome in the genome",
    "duplicate_position": "a repeat of an earlier (gene_id, position) row (the first is kept)",
}

# --- schema level --------------------------------------------------------------------------------
def _normalise_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def suggest_column(wanted: str, present: Iterable[str]) -> str | None:
    """A present column that is probably ``wanted`` under another name (alias table, case or
    separators, then difflib), or None."""
    present = [str(c) for c in present]
    for column in present:
        norm = _normalise_name(column)
        if norm == wanted or ALIASES.get(norm) == wanted:
            return column
    close = difflib.get_close_matches(wanted, present, n=1, cutoff=0.6)
    if close:
        return close[0]
    by_norm = {_normalise_name(c): c for c in present}
    close = difflib.get_close_matches(wanted, list(by_norm), n=1, cutoff=0.6)
    return by_norm[close[0]] if close else None


def _dtype_problem(column: str, dtype: Any) -> str | None:
    """What is wrong with ``dtype`` for ``column``, or None."""
    dtype = pd.api.types.pandas_dtype(dtype) if not isinstance(dtype, pd.api.extensions.ExtensionDtype) \
        else dtype
    is_bool = pd.api.types.is_bool_dtype(dtype)
    numeric = pd.api.types.is_numeric_dtype(dtype) and not is_bool
    if column in SCORE_COLUMNS or column in CONTEXT_COLUMNS:
        if not numeric:
            what = "text" if _is_text(dtype) else f"values of type {dtype}"
            return f"holds {what}; a score must be a number between 0 and 1"
    elif column == "position":
        if not numeric:
            what = "text" if _is_text(dtype) else f"values of type {dtype}"
            return f"holds {what}; positions must be integers (1-based genomic coordinates)"
    elif column == "strand":
        if numeric or is_bool:
            return (f"holds numbers ({dtype}); strand must be the text '+' or '-' "
                    "(map 1 -> '+' and -1 -> '-')")
    elif column == "gene_id":
        if pd.api.types.is_float_dtype(dtype):
            return f"holds floating-point numbers ({dtype}); gene ids must be text or integers"
    return None


def _is_text(dtype: Any) -> bool:
    return pd.api.types.is_string_dtype(dtype) or dtype == np.dtype(object)


def check_columns(columns_and_dtypes: Mapping[str, Any], *, source: str,
                  required: Iterable[str] | None = None, kind: str = "positions") -> None:
    """Raise one InputError naming ``source`` and every missing required column (with a suggestion
    when a present column looks like it) and every column of the wrong type.

    ``columns_and_dtypes``: the input's columns and dtypes (``ddf._meta.dtypes``, a Parquet schema
    turned into pandas dtypes, ...). ``required`` defaults to the columns of ``kind``
    (``positions`` or ``track``). Cheap: no data is read. Fractional positions and out-of-range
    scores are row-level problems, left to :func:`split_bad_rows`.
    """
    required = list(_columns.required(kind) if required is None else required)
    columns = {str(k): v for k, v in columns_and_dtypes.items()}
    problems = []
    spare = [c for c in columns if c not in required]
    for column in required:
        if column in columns:
            continue
        hint = suggest_column(column, spare)
        names = column == "gene_id" and hint is not None and _normalise_name(hint) in (
            "gene_name", "genename", "gene_symbol", "gene")
        problems.append(f"missing required column {column!r}"
                        + (f" (found {hint!r}: rename it to {column!r}"
                           + (", and if it holds gene names give --gene-key gene_name (GTF) or Name "
                              "(GFF3) so that the annotation is keyed by them" if names else "") + ")"
                           if hint else ""))
    for column, dtype in columns.items():
        problem = _dtype_problem(column, dtype)
        if problem:
            problems.append(f"column {column!r} {problem}")
    if problems:
        present = ", ".join(columns) or "(none)"
        raise InputError(f"{kind} file {source}:\n  - " + "\n  - ".join(problems)
                         + f"\n  columns present: {present}")


def check_not_empty(rows: int, *, source: str, kind: str = "positions") -> None:
    """InputError when an input holds no rows (nothing to enrich is a mistake, not a success)."""
    if rows == 0:
        raise InputError(f"{kind} file {source}: no rows (empty input)")


# --- row level -----------------------------------------------------------------------------------
def _as_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN for missing/unparseable, mask of values that were text that does
    not parse as a number)."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(values), bool)
    parsed = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    unparseable = np.isnan(parsed) & values.notna().to_numpy()
    return parsed, unparseable


class _Lazy:
    """An object array computed on first indexing (gene ids as text are needed only for reasons)."""

    def __init__(self, build: Callable[[], np.ndarray]):
        self._build, self._value = build, None

    def __getitem__(self, item: Any) -> np.ndarray:
        if self._value is None:
            self._value = self._build()
        return self._value[item]


def _show(values: Any) -> np.ndarray:
    """Values as short strings for a reason (``repr`` of text, so '' and ' + ' stay visible)."""
    values = pd.Series(np.asarray(values, dtype=object))
    return values.map(lambda v: repr(v) if isinstance(v, str) else str(v)).to_numpy(dtype=object)


def _in_unit_interval(values: np.ndarray, text: np.ndarray, *, may_be_missing: bool) -> bool:
    """Every value in [0, 1] (or NaN from an empty field, where ``may_be_missing``)."""
    inside = (values >= 0) & (values <= 1)
    if inside.all():
        return True
    return bool((inside | (np.isnan(values) & ~text & may_be_missing)).all())


class _Reasons:
    """The first reason of each row, filled in check order (vectorised over the frame; the reason
    strings are built only for the rows that get them)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self._reason: np.ndarray | None = None  # made at the first bad row
        self._ok = np.ones(len(frame), dtype=bool)

    @property
    def reason(self) -> np.ndarray:
        """The reason of each row (None where the row is good)."""
        if self._reason is None:
            self._reason = np.full(len(self._ok), None, dtype=object)
        return self._reason

    @property
    def ok(self) -> np.ndarray:
        """Rows without a reason so far (a copy)."""
        return self._ok.copy()

    def add(self, mask: np.ndarray, code: str,
            detail: "str | Callable[[np.ndarray], Any] | None" = None) -> None:
        """Give ``code`` to the rows of ``mask`` that have no reason yet; ``detail`` is a fixed
        string or a function of the row numbers returning one string per row."""
        take = np.flatnonzero(np.asarray(mask, dtype=bool) & self._ok)
        if not len(take):
            return
        self._ok[take] = False
        if detail is None:
            self.reason[take] = code
        elif isinstance(detail, str):
            self.reason[take] = f"{code}: {detail}"
        else:
            self.reason[take] = [f"{code}: {text}" for text in detail(take)]  # bad rows only

    def values(self, column: str, take: np.ndarray | None = None) -> pd.Series:
        series = self.frame[column]
        return series.iloc[take] if take is not None else series

    def shown(self, column: str) -> "Callable[[np.ndarray], np.ndarray]":
        """Detail function ``column=<value>``."""
        return lambda take: column + "=" + _show(self.values(column, take))


def sequence_name_key(names: pd.Index) -> pd.Index:
    """Names compared as one chromosome: a ``chr`` prefix ignored, case folded, ``M`` = ``MT``.
    The keys of a few names (a bin's chromosomes) are kept: each bin's check asks for the same."""
    if len(names) > _NAME_KEYS_KEPT or names.dtype != object:
        return _sequence_name_key(names)
    return _kept_name_key(tuple(zip(map(type, names), names)))  # 1 and "1" are other names


#: Name lists whose keys :func:`sequence_name_key` keeps (the most recent; of at most as many names).
_NAME_KEYS_KEPT = 256


@functools.lru_cache(maxsize=_NAME_KEYS_KEPT)
def _kept_name_key(names: tuple[tuple[type, Any], ...]) -> pd.Index:
    return _sequence_name_key(pd.Index([name for _, name in names], dtype=object))


def _sequence_name_key(names: pd.Index) -> pd.Index:
    key = names.astype(str).str.replace(r"^(?i:chr)", "", regex=True).str.upper()
    return key.where(key != "M", "MT")


def _chromosome_disagrees(chrom: pd.Series, seqname: pd.Series, found: np.ndarray, at: np.ndarray,
                          genome_names: Mapping[str, str] | None) -> np.ndarray:
    """Rows whose ``chrom`` names another chromosome than the annotation has for the gene (a
    missing ``chrom`` is not a disagreement: the annotation's is used). ``genome_names`` maps
    annotation names to the genome's name of the same sequence (the cache's matched names): a row
    may use either."""
    codes, uniques = pd.factorize(chrom, use_na_sentinel=True)
    if len(uniques) == 0:
        return np.zeros(len(chrom), dtype=bool)
    row_keys = sequence_name_key(pd.Index(np.asarray(uniques, dtype=object)))
    # the names are worked out on the few distinct sequence names, then spread to genes and rows
    seq_codes, names = pd.factorize(seqname.to_numpy(dtype=object))
    names = pd.Index(np.asarray(names, dtype=object))
    gene_keys = sequence_name_key(names)
    alt_keys = sequence_name_key(pd.Index([(genome_names or {}).get(n, n) for n in names], dtype=object))
    # every side as codes in one space: the rows' uniques, then the gene names of the other sides
    space = row_keys.append(gene_keys.append(alt_keys).difference(row_keys)).unique()
    row_code = np.where(codes >= 0, space.get_indexer(row_keys)[np.maximum(codes, 0)], -1)
    gene_seq = seq_codes[at]
    gene_code = space.get_indexer(gene_keys)[gene_seq]
    alt_code = space.get_indexer(alt_keys)[gene_seq]
    return found & (row_code >= 0) & (row_code != gene_code) & (row_code != alt_code)


# --- the placement check: can a row be placed in its gene? ---------------------------------------
#: Codes of :attr:`Placement.code`, in the order they are given (a row gets the first that applies).
PLACED, GENE_ABSENT, OUTSIDE_GENE, NO_SEQUENCE, CHROMOSOME_DIFFERS = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Placement:
    """Where each row lands in the gene table (:func:`place`), row by row."""

    #: gene-table row of the row's gene (-1: absent from the annotation)
    row: np.ndarray
    #: int8: PLACED, or why not (GENE_ABSENT, CHROMOSOME_DIFFERS, OUTSIDE_GENE, NO_SEQUENCE)
    code: np.ndarray
    #: the gene's span (1-based genomic, 0 where the gene is absent)
    start: np.ndarray
    end: np.ndarray
    #: the positions allowed, in the rows' coordinates: [start, end], or [0, end - start]
    lo: np.ndarray
    hi: np.ndarray

    @property
    def found(self) -> np.ndarray:
        return self.row >= 0

    @property
    def placed(self) -> np.ndarray:
        return self.code == PLACED


def place(gene_table: pd.DataFrame, gene_row: np.ndarray, position: np.ndarray, *,
          coordinates: str = "genomic", chrom: pd.Series | None = None,
          genome_names: Mapping[str, str] | None = None,
          has_sequence_for: bool | Collection[str] | None = None) -> Placement:
    """The one placement check (pure numpy): can each row be placed in its gene?

    gene_row: the row of each row's gene in ``gene_table`` (``gene_table.index.get_indexer``,
        -1: absent). position: int64, genomic (1-based) or ``coordinates="gene_relative"`` (0-based
        offset from the gene's 5' end). chrom: the rows' chromosome (None: not checked; a missing
        one agrees); ``genome_names`` as in :func:`split_bad_rows`. has_sequence_for: True checks
        that the gene has sequence (``seq_offset >= 0``), a collection of sequence names that its
        ``seqname`` is one of them; None/False: not checked.

    Codes, first that applies: GENE_ABSENT, CHROMOSOME_DIFFERS, OUTSIDE_GENE, NO_SEQUENCE.
    """
    idx = np.asarray(gene_row, dtype=np.int64)
    position = np.asarray(position, dtype=np.int64)
    n = len(idx)
    found = idx >= 0
    at = np.maximum(idx, 0)
    empty = len(gene_table) == 0
    if empty:
        start = end = np.zeros(n, dtype=np.int64)
    else:
        start = gene_table["gene_start"].to_numpy(dtype=np.int64)[at]
        end = gene_table["gene_end"].to_numpy(dtype=np.int64)[at]
    lo, hi = (np.zeros_like(start), end - start) if coordinates == "gene_relative" else (start, end)
    code = np.where(found, PLACED, GENE_ABSENT).astype(np.int8)
    if chrom is not None and "seqname" in gene_table.columns and not empty:
        differs = _chromosome_disagrees(chrom, gene_table["seqname"], found, at, genome_names)
        code[differs & (code == PLACED)] = CHROMOSOME_DIFFERS
    code[(code == PLACED) & ((position < lo) | (position > hi))] = OUTSIDE_GENE
    if has_sequence_for is True:
        if "seq_offset" not in gene_table.columns:
            raise ValueError("has_sequence_for=True needs the gene table's seq_offset column")
        no_seq = gene_table["seq_offset"].to_numpy()[at] < 0 if not empty else np.zeros(n, dtype=bool)
    elif has_sequence_for:
        names = (gene_table["seqname"].astype(str).to_numpy(dtype=object)[at] if not empty
                 else np.full(n, "", dtype=object))
        no_seq = ~np.isin(names, np.asarray(list(has_sequence_for), dtype=object))
    else:
        no_seq = None
    if no_seq is not None:
        code[no_seq & (code == PLACED)] = NO_SEQUENCE
    return Placement(idx, code, start, end, lo, hi)


def annotation_rejects(gene_table: pd.DataFrame, gene_row: np.ndarray, position: np.ndarray, *,
                       coordinates: str = "genomic", chrom: pd.Series | None = None,
                       minus: np.ndarray | None = None,
                       genome_names: Mapping[str, str] | None = None,
                       has_sequence_for: bool | Collection[str] | None = None) -> np.ndarray:
    """The rows :func:`split_bad_rows` rejects against the annotation and genome (gene absent,
    strand other than the gene's, another chromosome, position outside the span, no sequence), as
    one mask, for rows that pass its row-local checks: ``minus`` is each row's strand == '-'
    (None: no strand column); the other arguments as :func:`place`."""
    placement = place(gene_table, gene_row, position, coordinates=coordinates, chrom=chrom,
                      genome_names=genome_names, has_sequence_for=has_sequence_for)
    bad = ~placement.placed
    if minus is not None and "strand" in gene_table.columns and len(gene_table):
        gene_minus = np.asarray(gene_table["strand"].astype(str) == "-", dtype=bool)
        bad |= placement.found & (np.asarray(minus, dtype=bool)
                                  != gene_minus[np.maximum(placement.row, 0)])
    return bad


#: The reason text of a row repeating an earlier row's (gene_id, position) (the first is kept).
REPEAT_REASON = "repeats an earlier row with the same gene_id and position"


def repeat_warning(count: int) -> dict[str, Any]:
    """The ``duplicate_position`` warning of ``count`` repeated rows."""
    return {"count": count,
            "message": f"{count} duplicate (gene_id, position) row(s): the first of each was "
                       "kept, the repeats rejected"}


def score_sum_warning(count: int, max_deviation: float, tolerance: float) -> dict[str, Any]:
    """The ``score_sum`` warning of ``count`` kept rows whose three scores do not sum to 1."""
    return {"count": count, "threshold": float(tolerance), "max_deviation": float(max_deviation),
            "message": f"{count} row(s) whose donor + acceptor + neither score is further than "
                       f"{tolerance:g} from 1 (kept; check the base model's output)"}


def split_bad_rows(frame: pd.DataFrame, *, source: str, gene_table: pd.DataFrame | None = None,
                   has_sequence_for: bool | Collection[str] | None = None,
                   config: EnrichConfig = EnrichConfig(), sum_tolerance: float = SUM_TOLERANCE,
                   genome_names: Mapping[str, str] | None = None,
                   missing_sequences: Collection[str] | None = None,
                   genes: GeneCodes | None = None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """Split the rows of one partition into (good, rejected, warnings).

    frame: positions as read (raw dtypes are fine: text scores or float positions are checked row by
        row). Required columns must be present (see :func:`check_columns`).
    gene_table: the annotation's gene table (index gene_id; gene_start, gene_end, strand, and
        seqname / seq_offset for the genome check). When given, rows of genes absent from it, with a
        strand other than the gene's, or with a position outside the gene span are rejected.
        Pass it when the run has an annotation.
    missing_sequences: the chromosomes the genome lacks (the cache's build report): a gene without
        sequence on another chromosome runs past its end (``gene_beyond_sequence_end``).
    has_sequence_for: the genome check, for runs whose manifest needs sequence features: True
        rejects genes whose ``seq_offset`` is -1 (chromosome absent from the FASTA); a collection of
        sequence names rejects genes whose ``seqname`` is not in it; None/False skips the check.
    config: ``config.coordinates`` decides the position range (genomic: 1-based, within
        [gene_start, gene_end]; gene_relative: 0-based offset below the gene length).
    sum_tolerance: rows with |donor + acceptor + neither - 1| above it are counted in a warning
        (they are kept).
    genome_names: annotation sequence name -> the genome's name for it (the genomic cache's
        ``seq_names_mapped``): a row's ``chrom`` may use either name.
    genes: ``frame``'s gene ids already factorised (:class:`~dask_enrich.gene_codes.GeneCodes`
        of its rows, in its order); None: factorised here.

    Returns good rows (the input's rows, order, index and dtypes), rejected rows (the input columns
    plus ``reason`` = ``"<code>: <detail>"`` with a code from :data:`REASONS`, and ``source``) and a
    JSON-able warnings dict ``{code: {"count": int, "message": str, ...}}`` (``duplicate_position``,
    ``score_sum``), mergeable with :func:`merge_warnings`. ``len(good) + len(rejected) ==
    len(frame)`` always.

    Duplicates are found within ``frame`` only: the engine partitions by gene (a gene's rows are
    never split across partitions), so a duplicate (gene_id, position) pair is always inside one
    partition and checking per partition finds them all.
    """
    missing = [c for c in _columns.KEYS if c not in frame.columns]
    if missing:
        raise InputError(f"positions file {source}: missing required column(s) {', '.join(missing)}")
    n = len(frame)
    rows = _Reasons(frame)
    warnings: dict[str, dict[str, Any]] = {}

    # gene_id
    gene = frame["gene_id"]
    # one factorisation (the caller's, when given): per-gene work is done on the uniques, then
    # spread with the codes; a missing id gets a code of its own (its rows are rejected)
    if genes is None:
        genes = GeneCodes.of(gene)
    gene_codes, gene_uniques = genes.checked(n).codes, genes.uniques
    if len(gene_codes) and gene_codes.min() < 0:  # missing ids: the code after the last gene's
        gene_codes = np.where(gene_codes < 0, len(gene_uniques), gene_codes)
        gene_uniques = gene_uniques.append(pd.Index([np.nan], dtype=gene_uniques.dtype))
    gene_uniques = pd.Index(np.asarray(gene_uniques, dtype=object))
    gene_text = _Lazy(lambda: gene_uniques.to_numpy()[gene_codes])
    blank = np.asarray(gene_uniques.astype(str).str.strip() == "", dtype=bool)  # per gene
    gene_missing = gene.isna().to_numpy() | blank[gene_codes]
    rows.add(gene_missing, "gene_id_missing", rows.shown("gene_id"))

    # position
    position = frame["position"]
    if pd.api.types.is_integer_dtype(position.dtype) and not position.hasnans:
        raw = position.to_numpy()  # nothing can be fractional or missing
        # too large (uint64 beyond int64 would wrap to negative): shown as written
        too_large = raw >= 2**62 if raw.dtype.kind == "u" else np.abs(raw) >= 2**62
        rows.add(too_large, "position_too_large", rows.shown("position"))
        pos_int = np.where(too_large, 0, raw).astype(np.int64) if too_large.any() else raw.astype(np.int64)
    else:
        pos, _ = _as_float(position)
        with np.errstate(invalid="ignore"):
            not_integer = ~np.isfinite(pos) | (pos != np.round(pos))
            too_large = ~not_integer & (np.abs(pos) >= 2.0**62)
        rows.add(not_integer, "position_not_integer", rows.shown("position"))
        rows.add(too_large, "position_too_large",
                 lambda take: [f"position={int(p):d}" for p in pos[take]])  # not 1e+20
        bad = not_integer | too_large
        pos_int = np.where(bad, 0, np.nan_to_num(pos)).astype(np.int64)
    low = 0 if config.coordinates == "gene_relative" else 1
    rows.add(pos_int < low, "position_out_of_range",
             lambda take: [f"position={p} < {low}" for p in pos_int[take]])

    # scores: the three base scores must be numbers in [0, 1]; context scores too unless missing
    # (a missing context score is the missing-value policy's business, not a bad row)
    score_columns = [c for c in SCORE_COLUMNS + CONTEXT_COLUMNS if c in frame.columns]
    parsed = {c: _as_float(frame[c]) for c in score_columns}
    with np.errstate(invalid="ignore"):
        # one cheap test per column first; the reasons are worked out only when something is bad
        suspect = [c for c in score_columns
                   if not _in_unit_interval(*parsed[c], may_be_missing=c not in SCORE_COLUMNS)]
        for code, test in (
            ("score_not_numeric", lambda v, text, base: text),
            ("score_missing", lambda v, text, base: base & np.isnan(v) & ~text),
            ("score_infinite", lambda v, text, base: np.isinf(v)),
            ("score_negative", lambda v, text, base: v < 0),
            ("score_above_one", lambda v, text, base: np.isfinite(v) & (v > 1)),
        ):
            for column in suspect:
                values, text = parsed[column]
                rows.add(test(values, text, column in SCORE_COLUMNS), code, rows.shown(column))

    # strand
    has_strand = "strand" in frame.columns
    if has_strand:
        rows.add(~frame["strand"].isin(["+", "-"]).to_numpy(), "strand_invalid",
                 rows.shown("strand"))

    # annotation and genome
    if gene_table is not None:
        placement = place(gene_table, gene_table.index.get_indexer(gene_uniques)[gene_codes], pos_int,
                          coordinates=config.coordinates,
                          chrom=frame["chrom"] if "chrom" in frame.columns else None,
                          genome_names=genome_names, has_sequence_for=has_sequence_for)
        found, at, code = placement.found, np.maximum(placement.row, 0), placement.code
        rows.add(~found, "gene_not_in_annotation", rows.shown("gene_id"))
        if has_strand and "strand" in gene_table.columns and len(gene_table):
            # booleans, not strings: rows with a strand other than + or - are already rejected
            gene_minus = np.asarray(gene_table["strand"].astype(str) == "-", dtype=bool)[at]
            row_minus = np.asarray(frame["strand"] == "-", dtype=bool)
            rows.add(found & (row_minus != gene_minus), "strand_mismatch",
                     lambda take: [f"strand={'-' if r else '+'!r} but the annotation has "
                                   f"{'-' if g else '+'!r} for gene {gene}"
                                   for r, g, gene in zip(row_minus[take], gene_minus[take],
                                                         gene_text[take])])
        if (code == CHROMOSOME_DIFFERS).any():
            row_chrom = frame["chrom"].to_numpy(dtype=object)
            gene_chrom = gene_table["seqname"].to_numpy(dtype=object)
            rows.add(code == CHROMOSOME_DIFFERS, "chromosome_mismatch",
                     lambda take: [f"chrom={r!r} but the annotation has {g!r} for gene {gene}"
                                   for r, g, gene in zip(row_chrom[take], gene_chrom[at[take]],
                                                         gene_text[take])])
        lo, hi, end = placement.lo, placement.hi, placement.end
        rows.add(code == OUTSIDE_GENE, "position_outside_gene",
                 lambda take: [f"position={p} not in [{a}, {b}] of gene {g}"
                               for p, a, b, g in zip(pos_int[take], lo[take], hi[take],
                                                     gene_text[take])])
        no_seq = code == NO_SEQUENCE
        if no_seq.any():
            seqname = (gene_table["seqname"].astype(str).to_numpy(dtype=object)[at]
                       if "seqname" in gene_table.columns else np.full(n, "?", dtype=object))
            # the genome's own list of absent chromosomes (the cache's build report) tells a
            # gene on an absent chromosome from one running past its chromosome's end
            beyond = (no_seq & ~np.isin(seqname, np.asarray(list(missing_sequences), dtype=object))
                      if missing_sequences is not None else np.zeros(n, dtype=bool))
            rows.add(beyond, "gene_beyond_sequence_end",
                     lambda take: [f"gene {g} (ends at {e}) runs past the end of chromosome {c!r} "
                                   "in the genome" for g, e, c in zip(gene_text[take], end[take],
                                                                      seqname[take])])
            rows.add(no_seq & ~beyond, "chromosome_not_in_genome",
                     lambda take: [f"chromosome {c!r} of gene {g} is not in the genome"
                                   for c, g in zip(seqname[take], gene_text[take])])
    elif has_sequence_for:
        raise ValueError("the genome check (has_sequence_for) needs the gene table")

    # duplicates among the rows that passed everything else (keep the first)
    candidates = np.flatnonzero(rows.ok)
    if len(candidates) > 1:
        # stable sort by (gene, position): within equal keys the input order is kept, so every
        # row equal to its predecessor in sorted order is a repeat of an earlier row
        codes, positions = gene_codes[candidates], pos_int[candidates]
        step_code, step_pos = np.diff(codes), np.diff(positions)
        if not ((step_code > 0) | ((step_code == 0) & (step_pos >= 0))).all():
            order = np.lexsort((positions, codes))  # the engine's bins come sorted: rarely needed
            codes, positions, candidates = codes[order], positions[order], candidates[order]
            step_code, step_pos = np.diff(codes), np.diff(positions)
        same = np.zeros(len(candidates), dtype=bool)
        same[1:] = (step_code == 0) & (step_pos == 0)
        repeat = np.zeros(n, dtype=bool)
        repeat[candidates[same]] = True
        if repeat.any():
            rows.add(repeat, "duplicate_position", REPEAT_REASON)
            warnings["duplicate_position"] = repeat_warning(int(repeat.sum()))

    # score-sum warning on the rows kept
    ok = rows.ok
    if all(c in parsed for c in SCORE_COLUMNS) and ok.any():
        with np.errstate(invalid="ignore"):
            total = parsed["donor_score"][0] + parsed["acceptor_score"][0] + parsed["neither_score"][0]
            deviation = np.abs(total - 1.0)
            off = ok & (deviation > sum_tolerance)
        if off.any():
            warnings["score_sum"] = score_sum_warning(int(off.sum()), float(deviation[off].max()),
                                                      sum_tolerance)

    bad = ~rows.ok
    good = frame[~bad] if bad.any() else frame
    rejected = frame[bad] if bad.any() else frame.iloc[:0].copy()
    rejected = rejected.rename(columns=clash_renames(rejected.columns))  # an input column `reason`
    rejected[REASON] = pd.Series(rows.reason[bad], index=rejected.index, dtype="str")
    rejected[SOURCE] = pd.Series(str(source), index=rejected.index, dtype="str")
    assert len(good) + len(rejected) == n
    return good, rejected, warnings


def clash_renames(columns: Any) -> dict[str, str]:
    """Input columns named like the rejected rows' own ``reason``/``source``: kept, renamed
    ``reason_input``/``source_input``."""
    return {c: f"{c}_input" for c in (REASON, SOURCE) if c in set(columns)}


def rejected_meta(input_meta: pd.DataFrame) -> pd.DataFrame:
    """The empty rejected frame for inputs with this meta (input columns + reason + source)."""
    meta = input_meta.iloc[:0].copy().rename(columns=clash_renames(input_meta.columns))
    meta[REASON] = pd.Series([], dtype="str")
    meta[SOURCE] = pd.Series([], dtype="str")
    return meta


def reason_code(reasons: pd.Series) -> pd.Series:
    """The fixed code of each reason string (the part before ``':'``), for grouping."""
    return reasons.astype(str).str.split(":", n=1).str[0]


def merge_warnings(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Warnings of two partitions together (counts added, the largest deviation kept)."""
    out = {k: dict(v) for k, v in a.items()}
    for code, item in b.items():
        if code not in out:
            out[code] = dict(item)
            continue
        merged = out[code]
        merged["count"] = int(merged.get("count", 0)) + int(item.get("count", 0))
        if "max_deviation" in item:
            merged["max_deviation"] = max(float(merged.get("max_deviation", 0.0)),
                                          float(item["max_deviation"]))
        merged["message"] = re.sub(r"^\d+", str(merged["count"]), str(item.get("message", "")))
    return out


def summarise_rejected(rejected: pd.DataFrame, examples: int = 3) -> dict[str, dict[str, Any]]:
    """{code: {"count": rows, "examples": [first reasons with gene_id and position]}}, JSON-able."""
    if len(rejected) == 0:
        return {}
    codes = reason_code(rejected[REASON])
    out: dict[str, dict[str, Any]] = {}
    for code in [c for c in REASONS if c in set(codes)] + sorted(set(codes) - set(REASONS)):
        part = rejected[(codes == code).to_numpy()]
        shown = part.head(examples)
        out[code] = {
            "count": int(len(part)),
            "examples": [
                {"gene_id": str(g), "position": _show_position(p), "reason": str(r)}
                for g, p, r in zip(shown["gene_id"], shown["position"], shown[REASON])
            ],
        }
    return out


def _show_position(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


QUARANTINE_HINT = ("Fix the input, or run with --on-bad-rows quarantine to write these rows to "
                   "OUT/_rejected/ with their reason and go on.")


def raise_for_bad_rows(rejected: pd.DataFrame, source: str, *, kind: str = "positions file",
                       hint: str = QUARANTINE_HINT) -> None:
    """The ``--on-bad-rows error`` path: when ``rejected`` has rows, raise one InputError naming the
    file and, per reason, the row count and up to 3 example rows (gene_id, position, value)."""
    if len(rejected) == 0:
        return
    lines = [f"{kind} {source}: {len(rejected):,} bad row(s)"]
    for code, item in summarise_rejected(rejected).items():
        shown = "; ".join(f"gene_id={e['gene_id']} position={e['position']} "
                          f"({e['reason'].split(': ', 1)[-1]})" for e in item["examples"])
        lines.append(f"  {code} ({REASONS.get(code, code)}): {item['count']:,} row(s), e.g. {shown}")
    lines.append(hint)
    raise InputError("\n".join(lines))

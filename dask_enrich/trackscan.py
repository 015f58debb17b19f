"""Reading a base-prediction track at the floor: checks, selection and context rows of one piece.

Pure pyarrow + numpy (no Dask). A *piece* is what :func:`dask_enrich.io.input_pieces` makes: a
Parquet file's row groups ``(file, groups)``, or a CSV block ``(file, offset, length)`` (read in
full with today's reader: CSV has no cheap column access).

:func:`scan_piece` reads the columns every row is checked on (``gene_id`` and the other text
columns as Parquet dictionaries, so no per-row Python strings; ``position``; the score columns),
applies the track's row checks to every row, vectorised (the checks of
:func:`dask_enrich.validate.split_bad_rows` without an annotation, as the engine checks a track
today: the reason strings of the bad rows come from ``split_bad_rows`` itself, run on those rows
only), selects the uncertain rows, and returns a :class:`TrackScan`: the selected rows (every
requested column), the *context rows* they need from this piece, the bad rows with their reason,
rows per gene, and the neighbour keys it could not find here. A *dense* piece (every row good,
one run of rows per gene, gene codes rising, positions rising strictly within each gene: the usual
track) is streamed one row group at a time (:func:`_scan_streamed`), keeping only the rows the
selected rows' context needs, found by their offset from a selected row (its neighbours lie
within two rows of it); any other piece is read whole and searched by (gene, position) keys.

The context rows of a set of positions are a subset of the track on which
:func:`dask_enrich.core.enrich` gives the same context values as on the whole (checked) track:
the rows at p-2..p+2 of the same gene (both directions: the strand decides which are -1/+1), and
each gene's rows of lowest and highest position (without an annotation a gene's span is the extent
of its track rows; with the lowest row first, the track's strand of the gene is read from the same
row as in a full read). :func:`lookup_piece` finds requested keys (and genes' end rows) in a piece,
reading only the row groups whose Parquet statistics may hold them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import validate
from .config import EnrichConfig
from .errors import InputError
from .features.context import POSITION_BITS, gene_codes_in, track_keys
from .features.registry import CONTEXT_OFFSETS
from .io import CONTEXT_COLUMNS, InputSource, _PieceReader, normalise_frame, text_decoded
from .selection import Selection, select_mask
from .storage import url_to_fs
from .text import is_in

#: Offsets looked up around a position: both strands' -2..+2 (the strand is known later).
NEIGHBOUR_OFFSETS = tuple(sorted({s * o for o in CONTEXT_OFFSETS.values() for s in (-1, 1)}))
#: Columns of the context rows (what ``core.enrich`` reads from a track), when present.
CONTEXT_ROW_COLUMNS = ("gene_id", "position", "donor_score", "acceptor_score", "strand")
#: Columns added to the rows a scan returns: the piece (index into the pieces) and the row number
#: within the piece, so that a row found twice is kept once, and rows keep input order.
PIECE, ROW = "_piece", "_row"
#: Text columns read as Parquet dictionaries.
DICTIONARY_COLUMNS = ("gene_id", "chrom", "strand")
_BASE_SCORES = validate.SCORE_COLUMNS
_INT64_MAX = np.iinfo(np.int64).max
_POSITION_MASK = (1 << POSITION_BITS) - 1


@dataclass(frozen=True)
class ScanSpec:
    """What a scan of the track needs (shipped once to the workers).

    ``columns``: the columns of the selected and the bad rows (the run's track columns).
    ``selection``: the rule of the uncertain rows (None: no selection, lookups only).
    ``lenient``: positions that are missing or fractional are bad rows (as the engine reads a track
    given with positions) instead of failing the read (as it reads a track-only input).
    ``source``: the name in the bad rows' ``source`` column (``quarantine.source_name``);
    ``name_files``: each bad row names its own file instead (several files read leniently).
    """

    columns: tuple[str, ...]
    selection: Selection | None = Selection()
    config: EnrichConfig = EnrichConfig()
    lenient: bool = False
    source: str = ""
    name_files: bool = False
    label: str = "track"

    @property
    def low(self) -> int:
        """The lowest valid position (0 for gene-relative positions)."""
        return 0 if self.config.coordinates == "gene_relative" else 1

    def check_columns(self, available: Sequence[str]) -> list[str]:
        """The columns every row is read and checked on (those of ``columns`` or needed)."""
        wanted = ["gene_id", "position", *_BASE_SCORES, "strand", *CONTEXT_COLUMNS]
        return [c for c in wanted if c in available and (c in self.columns or c in CONTEXT_ROW_COLUMNS)]


class _Warned:
    """The warnings of checked rows: ``repeats`` (rows repeating an earlier row of the piece) and
    ``off_sums`` ((rows, deviations) of the kept rows whose three scores do not sum to 1)."""

    repeats: int
    off_sums: tuple[np.ndarray, np.ndarray]

    @property
    def warnings(self) -> dict[str, Any]:
        """The warnings, as ``split_bad_rows`` gives them."""
        return check_warnings(self.repeats, self.off_sums[1])

    def warnings_without(self, rows: np.ndarray) -> dict[str, Any]:
        """The warnings once the rows numbered ``rows`` are rejected too (repeats of an earlier
        piece's rows: counted by the caller)."""
        return warnings_without(self.repeats, self.off_sums, rows)


def warnings_without(repeats: int, off_sums: tuple[np.ndarray, np.ndarray], rows: np.ndarray
                     ) -> dict[str, Any]:
    """:func:`check_warnings` of checked rows (``repeats``, ``off_sums``: (rows, deviations)) once
    the rows numbered ``rows`` are rejected too."""
    return check_warnings(repeats, off_sums[1][~np.isin(off_sums[0], rows)])


@dataclass
class TrackScan(_Warned):
    """What one piece's scan found (small: a few percent of its rows).

    ``selected``: the good selected rows (``spec.columns`` with canonical dtypes, plus ``_row``);
    ``context``: the rows of this piece the selected rows' context needs (:data:`CONTEXT_ROW_COLUMNS`
    present, plus ``_row``); ``missing``: neighbour keys (``gene_id``, ``position``) of selected rows
    that are not a good row of this piece (maybe in another piece); ``rejected``: the bad rows
    (``spec.columns`` + ``reason`` + ``source``, plus ``_row``); ``genes``: per gene of the piece in
    order of first appearance: ``rows`` (every row), ``good``, ``selected``, ``min_position`` and
    ``max_position`` (of the good rows; -1 when none); ``repeats``: rows repeating an earlier row
    of the piece; ``off_sums``: (rows, deviations) of the kept rows whose scores do not sum to 1;
    ``null_gene_rows``: rows without a gene id (the engine refuses such a track); ``rows``: the
    piece's row count; ``sorted``: whether its good rows were in (gene, position) order.
    """

    piece: int
    rows: int
    selected: pd.DataFrame
    context: pd.DataFrame
    missing: pd.DataFrame
    rejected: pd.DataFrame
    genes: pd.DataFrame
    repeats: int = 0
    off_sums: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))
    null_gene_rows: int = 0
    sorted: bool = True

    @property
    def rejected_counts(self) -> dict[str, int]:
        """Bad rows by reason code."""
        return reason_counts(self.rejected)


def reason_counts(rejected: pd.DataFrame) -> dict[str, int]:
    """Rejected rows (with ``reason``) by reason code."""
    if not len(rejected):
        return {}
    codes = validate.reason_code(rejected[validate.REASON]).value_counts()
    return {str(k): int(v) for k, v in codes.items()}


# --- reading ---------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    """The checked columns of (some row groups of) one piece, as numpy arrays."""

    file: str
    groups: list[int] | None  # the row groups read (None: a CSV piece)
    rows: np.ndarray  # each loaded row's number within the piece
    table: pa.Table  # the columns read (text columns dictionary-encoded)
    codes: np.ndarray  # int64 gene code per row (-1: no gene id)
    genes: np.ndarray  # the gene ids of the codes (object array of str)
    position: np.ndarray  # int64 (0 where not a valid whole number)
    bad: np.ndarray  # rows failing a row-local check
    scores: dict[str, np.ndarray]  # score columns (float32 as read, else float64)
    null_genes: int = 0  # rows without a gene id

    def __len__(self) -> int:
        return len(self.codes)


def _open(source: InputSource, file: str, text_columns: Sequence[str]) -> tuple[Any, pq.ParquetFile]:
    fs, stripped = url_to_fs(file, source.storage_options)
    handle = fs.open(stripped, "rb")
    metadata = pq.read_metadata(handle)  # the footer once: its schema says which are text
    schema = metadata.schema.to_arrow_schema()
    dictionary = [c for c in text_columns if c in schema.names
                  and (pa.types.is_string(schema.field(c).type)
                       or pa.types.is_large_string(schema.field(c).type))]
    return handle, pq.ParquetFile(handle, metadata=metadata, read_dictionary=dictionary)


def _fail(source: InputSource, file: str, exc: Exception) -> InputError:
    if isinstance(exc, InputError):
        return InputError(f"{source.label} file {file}: {str(exc).split(': ', 1)[-1]}")
    return InputError(f"{source.label} file {file}: cannot be read "
                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")


def dictionary_codes(column: pa.ChunkedArray, with_codes: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray]:
    """(int64 codes with -1 for null, the values as str) of a column, dictionary-encoded if needed
    (``with_codes=False``: the values only, codes None)."""
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    column = column.unify_dictionaries() if column.num_chunks > 1 else column
    if column.num_chunks == 0:
        return np.zeros(0, np.int64), np.zeros(0, dtype=object)
    text = column.chunk(0).dictionary.cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
    if not with_codes:
        return None, text
    parts = [(c.indices.fill_null(-1) if c.null_count else c.indices).to_numpy(zero_copy_only=False)
             for c in column.chunks]
    codes = np.concatenate(parts, dtype=np.int64) if len(parts) > 1 else parts[0].astype(np.int64)
    return codes, text


def _group_offsets(parquet: pq.ParquetFile, groups: Sequence[int]) -> np.ndarray:
    sizes = np.array([parquet.metadata.row_group(g).num_rows for g in groups], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)])


def _load(source: InputSource, piece: tuple, spec: ScanSpec, wanted: pd.DataFrame | None = None
          ) -> _Loaded:
    """Read and check one piece (``wanted``: only the row groups whose statistics may hold one of
    its (gene_id, lo, hi) intervals)."""
    file = piece[0]
    try:
        if source.format == "parquet":
            handle, parquet = _open(source, file, DICTIONARY_COLUMNS)
            with handle:
                all_groups = (list(piece[1]) if piece[1] is not None
                              else list(range(parquet.metadata.num_row_groups)))
                offsets = _group_offsets(parquet, all_groups)
                keep = (list(range(len(all_groups))) if wanted is None
                        else _groups_holding(parquet, all_groups, wanted))
                columns = spec.check_columns(parquet.schema_arrow.names)
                if wanted is None:  # the run's text columns: cheap as dictionaries, no second read
                    columns += [c for c in spec.columns if c in DICTIONARY_COLUMNS and c not in columns]
                groups = [all_groups[k] for k in keep]
                table = (parquet.read_row_groups(groups, columns=columns) if groups
                         else parquet.schema_arrow.empty_table().select(columns))
                rows = (np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in keep])
                        if keep else np.zeros(0, np.int64))
        else:
            frame = _PieceReader(source, list(spec.columns), np.float64 if spec.lenient
                                 else np.int64)._read(piece)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            groups, rows = None, np.arange(len(frame), dtype=np.int64)
        return _check(table, file, groups, rows, spec)
    except Exception as exc:  # a bad value (InputError), or truncated, corrupt, undecodable
        raise _fail(source, file, exc) from None


def read_piece_columns(source: InputSource, piece: tuple, columns: Sequence[str]) -> pa.Table:
    """Every row of one Parquet piece with ``columns`` (those the file has), text columns as
    dictionaries, in piece order (row ``i`` is the scan's ``_row`` ``i``); every field nullable,
    so that pieces of files with required fields (predict-base's) and of others concatenate."""
    file = piece[0]
    try:
        handle, parquet = _open(source, file, DICTIONARY_COLUMNS)
        with handle:
            groups = (list(piece[1]) if piece[1] is not None
                      else list(range(parquet.metadata.num_row_groups)))
            names = [c for c in columns if c in parquet.schema_arrow.names]
            if not groups:
                return nullable(parquet.schema_arrow.empty_table().select(names))
            return nullable(parquet.read_row_groups(groups, columns=names))
    except Exception as exc:  # truncated, corrupt, undecodable: as the scan reports it
        raise _fail(source, file, exc) from None


def nullable(table: pa.Table) -> pa.Table:
    """``table`` with every field nullable (its arrays unchanged, not copied)."""
    if all(f.nullable for f in table.schema):
        return table
    schema = pa.schema([f.with_nullable(True) for f in table.schema], metadata=table.schema.metadata)
    return pa.Table.from_arrays(table.columns, schema=schema)


def _groups_holding(parquet: pq.ParquetFile, groups: Sequence[int], wanted: pd.DataFrame) -> list[int]:
    """Indices (into ``groups``) of the row groups whose gene_id and position statistics may hold a
    row of one of the ``wanted`` intervals (gene_id, lo, hi); groups without statistics are kept."""
    names = parquet.schema_arrow.names
    gene_at, pos_at = names.index("gene_id"), names.index("position")
    gene_type = parquet.schema_arrow.field("gene_id").type
    text_ids = pa.types.is_string(gene_type) or pa.types.is_large_string(gene_type) or (
        pa.types.is_dictionary(gene_type) and pa.types.is_string(gene_type.value_type))
    wanted = wanted.sort_values("gene_id", kind="stable")
    genes = wanted["gene_id"].to_numpy(dtype=object).astype(str)
    lo, hi = wanted["lo"].to_numpy(np.int64), wanted["hi"].to_numpy(np.int64)
    keep = []
    for k, g in enumerate(groups):  # one step per row group (a few per file), not per row
        meta = parquet.metadata.row_group(g)
        gs, ps = meta.column(gene_at).statistics, meta.column(pos_at).statistics
        if gs is None or not gs.has_min_max or not text_ids:
            a, b = 0, len(genes)
        else:
            a = int(np.searchsorted(genes, str(gs.min), side="left"))
            b = int(np.searchsorted(genes, str(gs.max), side="right"))
        if a >= b:
            continue
        no_stats = ps is None or not ps.has_min_max
        if no_stats or bool(((lo[a:b] <= int(ps.max)) & (hi[a:b] >= int(ps.min))).any()):
            keep.append(k)
    return keep


def _positions(column: pa.ChunkedArray, spec: ScanSpec) -> tuple[np.ndarray, np.ndarray]:
    """(int64 positions, bad mask: not a whole number, too large or below the lowest)."""
    typ = column.type
    if pa.types.is_integer(typ) and column.null_count == 0:
        raw = column.to_numpy()
        # one test for both: below the lowest position, or too large (>= 2**62 either way)
        bad = ~((raw >= spec.low) & (raw < 2**62))
        if not bad.any():
            return raw.astype(np.int64, copy=False), bad
        too_large = raw >= 2**62 if raw.dtype.kind == "u" else (raw >= 2**62) | (raw <= -2**62)
        return np.where(too_large, 0, raw).astype(np.int64), bad
    if not spec.lenient:  # the strict read's own conversion and message (missing, fractional)
        frame = normalise_frame(pd.DataFrame({"position": column.to_pandas()}), spec.label)
        pos = frame["position"].to_numpy(np.int64)
        return pos, (np.abs(pos) >= 2**62) | (pos < spec.low)
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False) if column.num_chunks else \
        np.zeros(0)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values))
        bad |= ~bad & (np.abs(values) >= 2.0**62)
    pos = np.where(bad, 0, np.nan_to_num(values)).astype(np.int64)
    return pos, bad | (pos < spec.low)


def _check(table: pa.Table, file: str, groups: list[int] | None, rows: np.ndarray,
           spec: ScanSpec) -> _Loaded:
    """The row-local checks of ``split_bad_rows`` (no annotation), vectorised over the piece."""
    codes, genes = dictionary_codes(table.column("gene_id"))
    blank = np.asarray(pd.Index(genes, dtype=object).astype(str).str.strip() == "", dtype=bool)
    # the per-row test only when the dictionary holds a blank id or a row has none
    if blank.any() or table.column("gene_id").null_count:
        bad = (codes < 0) | np.append(blank, False)[codes]
    else:
        bad = np.zeros(len(codes), dtype=bool)
    position, bad_position = _positions(table.column("position"), spec)
    bad |= bad_position
    scores = {}
    for name in [c for c in (*_BASE_SCORES, *CONTEXT_COLUMNS) if c in table.column_names]:
        column = table.column(name)
        if not pa.types.is_floating(column.type):  # integer scores: as float64, as validate reads them
            column = column.cast(pa.float64())
        # float32 kept as read: the range checks are exact on it (0 and 1 are float32 numbers)
        values = column.to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0)
        scores[name] = values
        if len(values) and 0 <= values.min() and values.max() <= 1:  # no NaN (min/max would be)
            continue  # the usual case: two reductions instead of a test per row
        with np.errstate(invalid="ignore"):
            inside = (values >= 0) & (values <= 1)
        bad |= ~(inside | np.isnan(values)) if name in CONTEXT_COLUMNS else ~inside
    if "strand" in table.column_names:
        strand = table.column("strand")
        _, s_values = dictionary_codes(strand, with_codes=False)
        valid = np.isin(s_values.astype(str), ["+", "-"])
        if not valid.all() or strand.null_count:  # else no row can be invalid: no per-row test
            s_codes, _ = dictionary_codes(strand)
            bad |= ~np.append(valid, False)[s_codes]
    return _Loaded(file, groups, rows, table, codes, genes, position, bad, scores,
                   table.column("gene_id").null_count)


# --- per-piece logic ---------------------------------------------------------------------------------
@dataclass
class _Index:
    """The good rows of a loaded piece by sorted (gene, position) key, repeats left out."""

    keys: np.ndarray  # sorted unique int64 keys
    at: np.ndarray  # loaded-row index of each key (the first good row with it)
    repeats: np.ndarray  # loaded-row indices of the good rows that repeat an earlier key
    in_order: bool  # the good rows were already sorted


def _index(loaded: _Loaded) -> _Index:
    if loaded.bad.any():
        good = np.flatnonzero(~loaded.bad)
        keys = np.left_shift(loaded.codes[good], POSITION_BITS)
        keys |= loaded.position[good]
    else:  # the usual case: no copy of the columns, only the keys (as features.context.track_keys)
        good = np.arange(len(loaded), dtype=np.int64)
        keys = np.left_shift(loaded.codes, POSITION_BITS)
        keys |= loaded.position
    in_order = bool(len(keys) < 2 or (keys[1:] >= keys[:-1]).all())
    if not in_order:  # the cost of an unsorted piece: one stable sort of its keys
        order = np.argsort(keys, kind="stable")
        keys, good = keys[order], good[order]
    repeat = np.zeros(len(keys), dtype=bool)
    np.equal(keys[1:], keys[:-1], out=repeat[1:])
    if not repeat.any():
        return _Index(keys, good, np.zeros(0, np.int64), in_order)
    return _Index(keys[~repeat], good[~repeat], np.sort(good[repeat]), in_order)


@dataclass
class _Runs:
    """A piece whose every row is good, grouped by gene (one run of rows per gene, gene codes
    rising, so in key order) with positions strictly rising within each run: the usual track. Its
    rows are found by their offset from a row, without the keys of every row."""

    starts: np.ndarray  # first row of each run
    ends: np.ndarray  # one past the last row of each run
    codes: np.ndarray  # the gene code of each run
    sizes: np.ndarray  # the piece rows of each run (ends - starts, unless rows were left out)


def _rising_runs(codes: np.ndarray, position: np.ndarray) -> np.ndarray | None:
    """The first row of each run of one gene code, when the codes rise from run to run and the
    positions rise strictly within each run (None otherwise); ``codes`` not empty."""
    change = codes[1:] != codes[:-1]
    rising = position[1:] > position[:-1]
    rising |= change  # the first row of a run may have any position
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    run_codes = codes[starts]
    if not (bool(rising.all()) and bool((run_codes[1:] > run_codes[:-1]).all())):
        return None  # a repeat, an unsorted gene, a gene in two runs or codes out of key order
    return starts


def _dense_runs(loaded: _Loaded) -> _Runs | None:
    """The runs of a piece that qualifies as :class:`_Runs` (None: use :func:`_index`). Two passes
    over the piece (gene change, rising position) instead of the keys, their order and repeats."""
    if not len(loaded) or loaded.null_genes or loaded.bad.any():
        return None
    starts = _rising_runs(loaded.codes, loaded.position)
    if starts is None:
        return None
    ends = np.append(starts[1:], len(loaded))
    return _Runs(starts, ends, loaded.codes[starts], ends - starts)


def _near(loaded: _Loaded, runs: _Runs, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours p-2..p+2 (both strands, p+o >= 0) of ``rows`` of a :class:`_Runs` piece:
    (the rows holding them, the sorted distinct keys of those that no row holds). Positions rise
    strictly within a run, so the row of p+o (o = 1, 2) is one of the next o rows (p-o: of the
    previous o)."""
    position = loaded.position
    run = np.searchsorted(runs.starts, rows, side="right") - 1
    first, last = runs.starts[run], runs.ends[run] - 1
    p = position[rows]
    found, absent = [], []
    for o in NEIGHBOUR_OFFSETS:
        target = p + o
        at = np.full(len(rows), -1, dtype=np.int64)
        for step in range(1, abs(o) + 1):
            q = np.clip(rows + (step if o > 0 else -step), first, last)
            at = np.where((at < 0) & (position[q] == target), q, at)
        found.append(at[at >= 0])
        lost = (at < 0) & (target >= 0)
        absent.append(track_keys(loaded.codes[rows[lost]], target[lost]))
    return np.concatenate([np.zeros(0, np.int64), *found]), _unique(np.concatenate(absent))


def _run_ends(runs: _Runs, codes: np.ndarray) -> np.ndarray:
    """First and last rows of the runs of gene ``codes`` (as :func:`_ends`)."""
    run = np.searchsorted(runs.codes, codes)
    return np.concatenate([runs.starts[run], runs.ends[run] - 1])


def _find(index: _Index, keys: np.ndarray) -> np.ndarray:
    """Loaded-row index of each key (-1: no good row with it)."""
    if not len(index.keys):
        return np.full(len(keys), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(index.keys, keys), len(index.keys) - 1)
    return np.where(index.keys[at] == keys, index.at[at], -1)


def _ends(index: _Index, codes: np.ndarray) -> np.ndarray:
    """Loaded-row indices of the lowest and highest good row of each gene code (genes with none
    left out)."""
    first = np.searchsorted(index.keys, codes.astype(np.int64) << POSITION_BITS, side="left")
    last = np.searchsorted(index.keys, (codes.astype(np.int64) + 1) << POSITION_BITS, side="left") - 1
    has = last >= first
    return np.concatenate([index.at[first[has]], index.at[last[has]]])


def _unique(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values (a sort and one comparison: numpy's hash-based ``unique`` is
    several times slower on millions of int64 keys)."""
    values = np.sort(values)
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def neighbour_keys(codes: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, positions) of the neighbours p-2..p+2 (both strands) of each position (p >= 1)."""
    offsets = np.asarray(NEIGHBOUR_OFFSETS, dtype=np.int64)
    pos = (positions.astype(np.int64)[:, None] + offsets[None, :]).ravel()
    code = np.repeat(codes.astype(np.int64), len(offsets))
    keep = pos >= 0
    return code[keep], pos[keep]


def _frame(source: InputSource, loaded: _Loaded, take: np.ndarray, columns: Sequence[str],
           spec: ScanSpec) -> pd.DataFrame:
    """The rows ``take`` (loaded-row indices) with ``columns``, canonical dtypes, plus ``_row``."""
    columns = list(columns)
    take_arr = pa.array(take, type=pa.int64())
    parts: dict[str, pa.ChunkedArray | pa.Array] = {}
    extra = [c for c in columns if c not in loaded.table.column_names]
    if extra and len(take):
        handle, parquet = _open(source, loaded.file, DICTIONARY_COLUMNS)
        with handle:
            more = parquet.read_row_groups(loaded.groups, columns=extra)
        parts.update({c: more.column(c).take(take_arr) for c in extra})
    elif extra:  # no rows: the file's own types
        handle, parquet = _open(source, loaded.file, DICTIONARY_COLUMNS)
        with handle:
            schema = parquet.schema_arrow
        parts.update({c: pa.array([], type=schema.field(c).type) for c in extra})
    for c in columns:
        if c not in parts:
            parts[c] = loaded.table.column(c).take(take_arr)
    frame = text_decoded(pa.table([parts[c] for c in columns], names=columns)).to_pandas()
    position_dtype = np.int64
    if spec.lenient and frame["position"].dtype.kind != "i":
        position_dtype = np.uint64 if frame["position"].dtype.kind == "u" else np.float64
    frame = normalise_frame(frame, spec.label, position_dtype=position_dtype)
    frame[ROW] = loaded.rows[take]
    return frame


def _rejected(source: InputSource, loaded: _Loaded, bad: np.ndarray, repeats: np.ndarray,
              spec: ScanSpec) -> pd.DataFrame:
    """The bad rows with their reasons (``split_bad_rows`` on the row-locally bad rows; repeats of
    an earlier good row get ``duplicate_position``), in input order, plus ``_row``."""
    frame = _frame(source, loaded, bad, spec.columns, spec)
    rows = frame.pop(ROW)
    good, rejected, _ = validate.split_bad_rows(frame, source=_source(spec, loaded), config=spec.config)
    if len(good):  # the vectorised checks above and validate's disagree: a bug, never a silent loss
        raise AssertionError(f"trackscan: {len(good)} row(s) flagged bad pass split_bad_rows")
    rejected[ROW] = rows.to_numpy()
    if len(repeats):
        copies = _frame(source, loaded, repeats, spec.columns, spec)
        rejected = pd.concat([rejected, _as_repeats(copies, _source(spec, loaded))], ignore_index=True)
    return rejected.sort_values(ROW, kind="stable").reset_index(drop=True)


def _source(spec: ScanSpec, loaded: _Loaded) -> str:
    return loaded.file if spec.name_files else spec.source


def _off_sums(loaded: _Loaded, good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(piece rows, deviations) of the good rows whose donor + acceptor + neither is further than
    ``validate.SUM_TOLERANCE`` from 1 (none without the three scores)."""
    if not (all(c in loaded.scores for c in _BASE_SCORES) and good.any()):
        return np.zeros(0, np.int64), np.zeros(0)
    rows, deviation = score_sum_deviations(*(loaded.scores[c] for c in _BASE_SCORES), good=good)
    return loaded.rows[rows], deviation


def score_sum_deviations(d: np.ndarray, a: np.ndarray, n: np.ndarray,
                         good: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, deviations): the rows (of ``good``, else all) whose donor + acceptor + neither is
    further than ``validate.SUM_TOLERANCE`` from 1, and |sum - 1|. The sum is validate's, in
    float64; float32 scores are summed as they are first only to find the candidates."""
    with np.errstate(invalid="ignore"):
        rough = d + a
        rough += n
        rough -= 1
        np.abs(rough, out=rough)
        # float32 rounding is far below this margin: every row off in float64 is a candidate
        candidate = ~(rough <= validate.SUM_TOLERANCE - 1e-3)
        near = np.flatnonzero(candidate & good if good is not None else candidate)
        total = (d[near].astype(np.float64) + a[near].astype(np.float64)
                 + n[near].astype(np.float64))
        deviation = np.abs(total - 1.0)
        off = deviation > validate.SUM_TOLERANCE
    return near[off], deviation[off]


def check_warnings(repeats: int, off_deviation: np.ndarray) -> dict[str, Any]:
    """The warnings ``split_bad_rows`` gives for rows with ``repeats`` repeated keys and these
    score-sum deviations of kept rows."""
    warnings: dict[str, Any] = {}
    if repeats:
        warnings["duplicate_position"] = validate.repeat_warning(repeats)
    if len(off_deviation):
        warnings["score_sum"] = validate.score_sum_warning(
            len(off_deviation), float(off_deviation.max()), validate.SUM_TOLERANCE)
    return warnings


def _gene_table(loaded: _Loaded, index: _Index | None, selected: np.ndarray,
                runs: _Runs | None = None) -> pd.DataFrame:
    """Rows per gene of the piece in order of first appearance (see :class:`TrackScan`); ``index``
    None: the piece is ``runs``."""
    codes = loaded.codes
    n = len(loaded.genes)
    if runs is not None:
        lo, hi = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        rows = np.zeros(n, np.int64)
        rows[runs.codes] = runs.sizes
        lo[runs.codes] = loaded.position[runs.starts]
        hi[runs.codes] = loaded.position[runs.ends - 1]
        order = runs.codes
        return pd.DataFrame({"gene_id": pd.Series(loaded.genes[order], dtype="str"),
                             "rows": rows[order], "good": rows[order],
                             "selected": np.bincount(codes[selected], minlength=n)[order].astype(np.int64),
                             "min_position": lo[order], "max_position": hi[order]})
    nulls = (codes < 0) if loaded.null_genes else None
    c = codes[~nulls] if nulls is not None else codes
    if not len(c):
        return empty_gene_table()
    starts = np.concatenate([[0], np.flatnonzero(c[1:] != c[:-1]) + 1])
    run_codes = c[starts]
    order = pd.unique(run_codes)  # first appearance (of the runs: cheap for a track grouped by gene)
    grouped = len(order) == len(run_codes)  # each gene one run of rows
    if grouped:  # the counts are the run lengths
        rows = np.zeros(n, np.int64)
        rows[run_codes] = np.diff(np.append(starts, len(c)))
    else:
        rows = np.bincount(c, minlength=n)
    any_bad = bool(loaded.bad.any())
    good = rows - np.bincount(codes[index.repeats], minlength=n)
    if any_bad:
        good -= np.bincount(codes[loaded.bad & (codes >= 0)], minlength=n)
    chosen = np.bincount(codes[selected], minlength=n)
    lo = np.full(n, -1, np.int64)
    hi = np.full(n, -1, np.int64)
    if grouped and index.in_order and nulls is None and not any_bad and not len(index.repeats):
        # every row good and in order: each gene's lowest and highest row end its run
        lo[run_codes] = loaded.position[starts]
        hi[run_codes] = loaded.position[np.append(starts[1:], len(c)) - 1]
    elif len(index.keys):
        gene_of_key = index.keys >> POSITION_BITS
        change = np.flatnonzero(gene_of_key[1:] != gene_of_key[:-1])
        first = np.concatenate([[0], change + 1])
        last = np.concatenate([change, [len(gene_of_key) - 1]])
        lo[gene_of_key[first]] = index.keys[first] & _POSITION_MASK
        hi[gene_of_key[last]] = index.keys[last] & _POSITION_MASK
    return pd.DataFrame({"gene_id": pd.Series(loaded.genes[order], dtype="str"),
                         "rows": rows[order].astype(np.int64), "good": good[order].astype(np.int64),
                         "selected": chosen[order].astype(np.int64),
                         "min_position": lo[order], "max_position": hi[order]})


def empty_gene_table() -> pd.DataFrame:
    """The empty per-gene table of :class:`TrackScan`."""
    return pd.DataFrame({"gene_id": pd.Series([], dtype="str"),
                         **{c: pd.Series([], dtype="int64") for c in
                            ("rows", "good", "selected", "min_position", "max_position")}})


def _context_columns(loaded: _Loaded, spec: ScanSpec) -> list[str]:
    return [c for c in CONTEXT_ROW_COLUMNS if c in loaded.table.column_names]


def scan_piece(source: InputSource, piece: tuple, piece_index: int, spec: ScanSpec) -> TrackScan:
    """Check, select and find the context rows of one piece of the track (see the module docs).
    A dense Parquet piece (the usual track) is streamed one row group at a time."""
    if source.format == "parquet":
        streamed = _scan_streamed(source, piece, piece_index, spec)
        if streamed is not None:
            return streamed
    loaded = _load(source, piece, spec)
    runs = _dense_runs(loaded)
    if runs is not None:
        every = np.ones(len(loaded), dtype=bool)
        return _dense_scan(source, loaded, runs, _chosen(loaded, every, spec), piece_index, spec,
                           len(loaded), _off_sums(loaded, every))
    index = _index(loaded)
    good = ~loaded.bad
    good[index.repeats] = False
    chosen = _chosen(loaded, good, spec)
    want_codes, want_pos = neighbour_keys(loaded.codes[chosen], loaded.position[chosen])
    want = track_keys(want_codes, want_pos)
    found = _find(index, want)
    absent = _unique(want[found < 0])  # maybe in another piece (a gene split across pieces)
    context_rows = _unique(np.concatenate([found[found >= 0],
                                           _ends(index, _unique(loaded.codes[chosen]))]))
    bad_rows = np.flatnonzero(loaded.bad)
    rejected = (_rejected(source, loaded, bad_rows, index.repeats, spec)
                if len(bad_rows) or len(index.repeats) else
                _empty_rejected(source, loaded, spec))
    return TrackScan(
        piece=piece_index, rows=len(loaded),
        selected=_frame(source, loaded, chosen, spec.columns, spec),
        context=_frame(source, loaded, context_rows, _context_columns(loaded, spec), spec),
        missing=_missing(loaded, absent), rejected=rejected,
        genes=_gene_table(loaded, index, chosen), repeats=len(index.repeats),
        off_sums=_off_sums(loaded, good), null_gene_rows=loaded.null_genes, sorted=index.in_order)


def _chosen(loaded: _Loaded, good: np.ndarray, spec: ScanSpec) -> np.ndarray:
    """The loaded rows the selection picks among the ``good`` ones (none without a selection)."""
    if spec.selection is None or not len(loaded):
        return np.zeros(0, dtype=np.int64)
    return _select(loaded.scores, good, spec.selection)


def _missing(loaded: _Loaded, absent: np.ndarray) -> pd.DataFrame:
    """The (gene_id, position) frame of neighbour keys no row of the piece holds."""
    return pd.DataFrame({"gene_id": pd.Series(loaded.genes[absent >> POSITION_BITS], dtype="str"),
                         "position": absent & _POSITION_MASK})


def _dense_scan(source: InputSource, loaded: _Loaded, runs: _Runs, chosen: np.ndarray,
                piece_index: int, spec: ScanSpec, n_rows: int,
                off_sums: tuple[np.ndarray, np.ndarray]) -> TrackScan:
    """The :class:`TrackScan` of a dense piece (every row good: nothing rejected, no repeat), from
    its loaded rows (all of them, or those a streamed read kept) and their runs."""
    found, absent = _near(loaded, runs, chosen)
    context_rows = _unique(np.concatenate([found, _run_ends(runs, _unique(loaded.codes[chosen]))]))
    return TrackScan(
        piece=piece_index, rows=n_rows,
        selected=_frame(source, loaded, chosen, spec.columns, spec),
        context=_frame(source, loaded, context_rows, _context_columns(loaded, spec), spec),
        missing=_missing(loaded, absent), rejected=_empty_rejected(source, loaded, spec),
        genes=_gene_table(loaded, None, chosen, runs), repeats=0, off_sums=off_sums,
        null_gene_rows=0, sorted=True)


# --- the streamed scan of a dense piece ---------------------------------------------------------------
#: Rows kept at each end of a row group for the neighbours of rows across its boundary.
_EDGE = max(abs(o) for o in NEIGHBOUR_OFFSETS)


class _GeneCodes:
    """Piece-wide gene codes over row groups read one at a time, numbered as
    ``pyarrow.ChunkedArray.unify_dictionaries`` numbers them (the first group's dictionary, then
    each later group's new values in order), so a streamed piece has the codes of a whole read."""

    def __init__(self) -> None:
        self.names = pd.Index([], dtype=object)

    def of(self, local: np.ndarray, dictionary: np.ndarray) -> np.ndarray:
        """The piece codes of a group's ``local`` codes (no null: -1) into its ``dictionary``. A
        track's genes run in order, so a group's dictionary is usually numbered in a row from its
        first gene's code: then the codes are an offset of ``local``, not a gather (5x cheaper)."""
        at = self.names.get_indexer(pd.Index(dictionary, dtype=object))
        new = at < 0
        if new.any():
            at[new] = len(self.names) + np.arange(int(new.sum()))
            self.names = self.names.append(pd.Index(dictionary[new], dtype=object))
        at = at.astype(np.int64)
        if len(at) and bool((at == at[0] + np.arange(len(at))).all()):
            return local + at[0] if at[0] else local
        return at[local]


@dataclass
class _Group:
    """What the streamed scan keeps of one row group: its kept rows (the selected rows and two
    rows either side, the group's first and last two rows, the ends of each run of one gene) with
    every column read, their piece rows, codes and positions; the selected rows; the run starts."""

    table: pa.Table
    rows: np.ndarray
    codes: np.ndarray
    position: np.ndarray
    chosen: np.ndarray  # piece rows
    run_starts: np.ndarray  # piece rows where a run of one gene starts (the first row: if a new
    #: gene starts there)
    off_sums: tuple[np.ndarray, np.ndarray]


def _scan_streamed(source: InputSource, piece: tuple, piece_index: int, spec: ScanSpec
                   ) -> TrackScan | None:
    """:func:`scan_piece` of a Parquet piece read one row group at a time, keeping only the rows
    the selected rows' context needs: the same result with the memory of one row group instead
    of the whole piece. None when the piece is not dense (a bad row, a repeat, a gene in two runs
    or out of key order: the checks of :func:`_dense_runs`, across the groups' boundaries too);
    the caller then reads it whole."""
    file = piece[0]
    codes_of = _GeneCodes()
    kept: list[_Group] = []
    last = (-1, -1)  # (code, position) of the previous group's last row
    try:
        handle, parquet = _open(source, file, DICTIONARY_COLUMNS)
        with handle:
            groups = (list(piece[1]) if piece[1] is not None
                      else list(range(parquet.metadata.num_row_groups)))
            offsets = _group_offsets(parquet, groups)
            if not offsets[-1]:
                return None  # no rows: the whole read's empty frames
            names = parquet.schema_arrow.names
            columns = spec.check_columns(names)
            carried = [c for c in spec.columns if c in names and c not in columns]  # not checked
            columns += carried
            for k, g in enumerate(groups):
                constant = _constant_columns(parquet, g, carried)
                table = parquet.read_row_group(g, columns=[c for c in columns if c not in constant])
                loaded = _check(table, file, [g], np.arange(offsets[k], offsets[k + 1]), spec)
                group = _dense_group(loaded, codes_of, last, spec)
                if group is None:
                    return None
                if constant:
                    group.table = _with_constants(group.table, columns, constant, parquet.schema_arrow)
                if len(loaded):
                    last = (int(group.codes[-1]), int(group.position[-1]))
                kept.append(group)
    except Exception as exc:  # as _load reports it
        raise _fail(source, file, exc) from None
    return _streamed_scan(source, file, groups, piece_index, spec, kept, codes_of, int(offsets[-1]))


def _constant_columns(parquet: pq.ParquetFile, group: int, candidates: Sequence[str]) -> dict[str, str]:
    """Of the text columns ``candidates``, those that hold one value in every row of row group
    ``group`` by its statistics (no null, min == max; a truncated pair never is): {name: value}.
    The streamed scan makes them for the rows it keeps instead of decoding every row (``chrom``
    of a track: 16% of a piece's scan)."""
    meta = parquet.metadata.row_group(group)
    at = {meta.column(j).path_in_schema: j for j in range(meta.num_columns)}
    found = {}
    for name in candidates:
        stats = meta.column(at[name]).statistics if name in at else None
        if (stats is not None and stats.has_min_max and stats.has_null_count and not stats.null_count
                and isinstance(stats.min, str) and stats.min == stats.max):
            found[name] = stats.min
    return found


def _with_constants(table: pa.Table, columns: Sequence[str], constant: dict[str, str],
                    schema: pa.Schema) -> pa.Table:
    """``table`` (``columns`` but those of ``constant``) with those columns made, each its one value
    in every row, typed as a read gives them (``schema``), in the order of ``columns``."""
    n = table.num_rows
    for i, name in enumerate(columns):
        if name not in constant:
            continue
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            array = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int64), kind.index_type),
                                                   pa.array([constant[name]], kind.value_type))
        else:
            array = pa.array([constant[name]], kind).take(pa.array(np.zeros(n, np.int64)))
        table = table.add_column(i, schema.field(name).with_type(array.type), array)
    return table


def _dense_group(loaded: _Loaded, codes_of: _GeneCodes, last: tuple[int, int], spec: ScanSpec
                 ) -> _Group | None:
    """One row group's part of :func:`_scan_streamed` (None: the piece is not dense)."""
    n = len(loaded)
    if loaded.null_genes or loaded.bad.any():
        return None
    codes = codes_of.of(loaded.codes, loaded.genes) if n else np.zeros(0, np.int64)
    position = loaded.position
    if n:
        starts = _rising_runs(codes, position)
        if starts is None:
            return None
        ends = np.append(starts[1:] - 1, n - 1)
        if codes[0] < last[0] or (codes[0] == last[0] and position[0] <= last[1]):
            return None  # the boundary with the previous group: a repeat, fall, or code out of order
        if codes[0] == last[0]:
            starts = starts[1:]  # the previous group's run goes on
    else:
        starts = ends = np.zeros(0, np.int64)
    every = np.ones(n, dtype=bool)
    chosen = _chosen(loaded, every, spec)
    near = (chosen[:, None] + np.arange(-_EDGE, _EDGE + 1)[None, :]).ravel()
    edges = np.concatenate([np.arange(min(_EDGE, n)), np.arange(max(n - _EDGE, 0), n)])
    keep = _unique(np.concatenate([near[(near >= 0) & (near < n)], edges, starts, ends]))
    rows = loaded.rows
    return _Group(loaded.table.take(pa.array(keep, type=pa.int64())), rows[keep], codes[keep],
                  position[keep], rows[chosen], rows[starts], _off_sums(loaded, every))


def _streamed_scan(source: InputSource, file: str, groups: list[int], piece_index: int,
                   spec: ScanSpec, kept: list[_Group], codes_of: _GeneCodes, n_rows: int) -> TrackScan:
    """The :class:`TrackScan` of a streamed piece from its groups' kept rows."""
    rows = np.concatenate([np.zeros(0, np.int64), *(g.rows for g in kept)])
    genes = codes_of.names.to_numpy(dtype=object)
    table = pa.concat_tables([g.table for g in kept])
    codes = np.concatenate([np.zeros(0, np.int64), *(g.codes for g in kept)])
    position = np.concatenate([np.zeros(0, np.int64), *(g.position for g in kept)])
    loaded = _Loaded(file, groups, rows, table, codes, genes, position, np.zeros(len(rows), bool), {})
    # the runs over the piece, as indices into the kept rows (each run's first and last row kept)
    piece_starts = np.concatenate([np.zeros(0, np.int64), *(g.run_starts for g in kept)])
    starts = np.searchsorted(rows, piece_starts)
    runs = _Runs(starts, np.append(starts[1:], len(rows)), codes[starts],
                 np.diff(np.append(piece_starts, n_rows)))
    chosen = np.searchsorted(rows, np.concatenate([np.zeros(0, np.int64), *(g.chosen for g in kept)]))
    off_sums = (np.concatenate([np.zeros(0, np.int64), *(g.off_sums[0] for g in kept)]),
                np.concatenate([np.zeros(0), *(g.off_sums[1] for g in kept)]))
    return _dense_scan(source, loaded, runs, chosen, piece_index, spec, n_rows, off_sums)


def _select(scores: dict[str, np.ndarray], good: np.ndarray, selection: Selection) -> np.ndarray:
    """Indices of the good rows ``selection`` picks (``selection.select_mask``, the one statement of
    the rules). Float32 band scores are first narrowed to the rows whose max(donor, acceptor) lies
    in the band widened by one float32 step (exact: a superset), then tested in float64."""
    d, a = scores.get("donor_score"), scores.get("acceptor_score")
    if selection.rule == "band" and d is not None and a is not None \
            and d.dtype == np.float32 and a.dtype == np.float32:
        top = np.maximum(d, a)
        low = np.nextafter(np.float32(selection.low), np.float32(-np.inf))
        high = np.nextafter(np.float32(selection.high), np.float32(np.inf))
        rows = np.flatnonzero((top >= low) & (top <= high) & good)
    else:
        rows = np.flatnonzero(good)
    frame = pd.DataFrame({c: v[rows] for c, v in scores.items()}, copy=False)
    return rows[select_mask(frame, selection)]


def _empty_rejected(source: InputSource, loaded: _Loaded, spec: ScanSpec) -> pd.DataFrame:
    frame = _frame(source, loaded, np.zeros(0, np.int64), spec.columns, spec)
    rows = frame.pop(ROW)
    meta = validate.rejected_meta(frame)
    meta[ROW] = rows.to_numpy()
    return meta


def lookup_piece(source: InputSource, piece: tuple, spec: ScanSpec, keys: pd.DataFrame,
                 end_genes: Sequence[str] = ()) -> pd.DataFrame:
    """The context rows of one piece for ``keys`` (``gene_id``, ``position``: the good row with
    each key, when the piece has one) and the lowest and highest good rows of each gene of
    ``end_genes``; :data:`CONTEXT_ROW_COLUMNS` present plus ``_row``, in piece order, each row
    once. Only the row groups whose statistics may hold a key (or a row of an end gene) are read."""
    end_genes = pd.Index(pd.unique(np.asarray(end_genes, dtype=object)), dtype=object)
    wanted = pd.concat([_intervals(keys), pd.DataFrame({
        "gene_id": end_genes, "lo": np.zeros(len(end_genes), np.int64),
        "hi": np.full(len(end_genes), _INT64_MAX)})], ignore_index=True)
    loaded = _load(source, piece, spec, wanted=wanted)
    return _lookup(source, loaded, _index(loaded), spec, keys, end_genes)


def lookup_and_keys(source: InputSource, piece: tuple, spec: ScanSpec, keys: pd.DataFrame,
                    region: pd.DataFrame) -> tuple[pd.DataFrame, tuple[np.ndarray, ...]]:
    """:func:`lookup_piece` of ``keys`` and the good keys in ``region`` (gene: index into its rows,
    position, row), for the search of repeats across pieces (:func:`find_repeats`), from one read."""
    loaded = _load(source, piece, spec, wanted=pd.concat([_intervals(keys), region],
                                                         ignore_index=True))
    index = _index(loaded)
    return _lookup(source, loaded, index, spec, keys, ()), _keys_in(loaded, index, region)


@dataclass
class GeneLookup(_Warned):
    """What :func:`lookup_genes` found in one piece: the context rows (as :func:`lookup_piece`),
    the bad rows of the genes asked (``spec.columns`` + ``reason`` + ``source`` + ``_row``), their
    rows per gene (as :class:`TrackScan`'s ``genes``) and what their warnings need."""

    context: pd.DataFrame
    rejected: pd.DataFrame
    genes: pd.DataFrame
    repeats: int = 0
    off_sums: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))


def lookup_genes(source: InputSource, piece: tuple, spec: ScanSpec, genes: Sequence[str],
                 *keys: np.ndarray) -> GeneLookup:
    """For positions given with a track: the context rows in one piece of ``keys`` (int64 keys of
    :func:`position_keys`, gene codes indexing ``genes``) and of the end rows of ``genes``, and
    every row of those genes checked (the engine checks the track rows of the positions' genes).
    Reads only the row groups whose statistics may hold a row of ``genes``."""
    genes = pd.Index(np.asarray(genes, dtype=object), dtype=object)
    wanted = pd.DataFrame({"gene_id": genes, "lo": np.zeros(len(genes), np.int64),
                           "hi": np.full(len(genes), _INT64_MAX)})
    loaded = _load(source, piece, spec, wanted=wanted)
    index = _index(loaded)
    local = pd.Index(loaded.genes, dtype=object).get_indexer(genes)  # code in genes -> in piece
    held = np.flatnonzero(local >= 0)  # the codes of the genes this piece holds
    wanted_keys = np.concatenate([np.zeros(0, np.int64), *(_keys_of(k, held) for k in keys)])
    at = local[wanted_keys >> POSITION_BITS]
    found = _find(index, (at << POSITION_BITS) | (wanted_keys & _POSITION_MASK))
    rows = _unique(np.concatenate([found[found >= 0], _ends(index, local[local >= 0])]))
    asked = np.zeros(len(loaded.genes) + 1, dtype=bool)
    asked[local[local >= 0]] = True
    of_genes = asked[loaded.codes]  # code -1 (no gene id) reads the appended False
    bad = np.flatnonzero(loaded.bad & of_genes)
    repeats = index.repeats[of_genes[index.repeats]]
    good = ~loaded.bad & of_genes
    good[repeats] = False
    rejected = (_rejected(source, loaded, bad, repeats, spec) if len(bad) or len(repeats)
                else _empty_rejected(source, loaded, spec))
    table = _gene_table(loaded, index, np.zeros(0, np.int64))
    table = table[is_in(table["gene_id"], genes)].reset_index(drop=True)
    return GeneLookup(_frame(source, loaded, rows, _context_columns(loaded, spec), spec), rejected,
                      table, len(repeats), _off_sums(loaded, good))


def _keys_of(keys: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The keys of sorted ``keys`` whose gene code is one of ``codes``: each gene's run found by
    binary search, so a piece touches only its own genes' keys, not every position's."""
    codes = codes.astype(np.int64)
    lo = np.searchsorted(keys, codes << POSITION_BITS)
    n = np.searchsorted(keys, (codes + 1) << POSITION_BITS) - lo
    total = int(n.sum())
    if not total:
        return np.zeros(0, np.int64)
    first = np.repeat(lo - (np.cumsum(n) - n), n)
    return keys[first + np.arange(total)]


def _intervals(keys: pd.DataFrame) -> pd.DataFrame:
    """(gene_id, lo, hi): the position range of the keys of each gene."""
    return keys.groupby("gene_id", sort=False)["position"].agg(lo="min", hi="max").reset_index()


def _lookup(source: InputSource, loaded: _Loaded, index: _Index, spec: ScanSpec,
            keys: pd.DataFrame, end_genes: Sequence[str]) -> pd.DataFrame:
    lookup = pd.Index(loaded.genes, dtype=object)
    key_codes = gene_codes_in(keys["gene_id"], lookup)
    known = key_codes >= 0
    found = _find(index, track_keys(key_codes[known], keys["position"].to_numpy(np.int64)[known]))
    end_codes = lookup.get_indexer(pd.Index(end_genes, dtype=object))
    rows = _unique(np.concatenate([found[found >= 0], _ends(index, end_codes[end_codes >= 0])]))
    return _frame(source, loaded, rows, _context_columns(loaded, spec), spec)


def position_keys(positions: pd.DataFrame, genes: Sequence[str]) -> np.ndarray:
    """The int64 keys (code in ``genes`` << POSITION_BITS | position) of the neighbours
    p-2..p+2 (both strands) of positions (``gene_id``, ``position``), each once, sorted; positions
    of genes not in ``genes`` are left out."""
    codes = gene_codes_in(positions["gene_id"], pd.Index(np.asarray(genes, dtype=object), dtype=object))
    keep = codes >= 0
    c, p = neighbour_keys(codes[keep], positions["position"].to_numpy(np.int64)[keep])
    return _unique(track_keys(c, p))


# --- repeats across pieces ------------------------------------------------------------------------
def _keys_in(loaded: _Loaded, index: _Index, region: pd.DataFrame
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gene, position, row) of the good rows (first of each key within the piece) that lie in
    the ``region`` intervals (``gene_id``, ``lo``, ``hi``); ``gene`` indexes ``region``'s rows."""
    region_of = pd.Index(region["gene_id"].to_numpy(dtype=object)).get_indexer(loaded.genes)
    gene = region_of[loaded.codes[index.at]] if len(index.at) else np.zeros(0, np.int64)
    pos = loaded.position[index.at]
    safe = np.maximum(gene, 0)
    lo, hi = region["lo"].to_numpy(np.int64), region["hi"].to_numpy(np.int64)
    inside = (gene >= 0) & (pos >= lo[safe]) & (pos <= hi[safe]) if len(gene) else gene >= 0
    return gene[inside].astype(np.int64), pos[inside], loaded.rows[index.at[inside]]


def find_repeats(*parts: tuple[np.ndarray, np.ndarray, np.ndarray]
                 ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Keys held by several pieces, from :func:`lookup_and_keys` of each piece in piece order (``parts``
    as (piece, (gene, position, row)) pairs): ({piece: rows that repeat an earlier piece's row},
    {piece: rows that are the first copy of a repeated key})."""
    if not parts:
        return {}, {}
    piece = np.concatenate([np.full(len(k[0]), p, np.int64) for p, k in parts])
    keys = np.concatenate([track_keys(k[0], k[1]) for _, k in parts])
    rows = np.concatenate([k[2] for _, k in parts])
    order = np.argsort(keys, kind="stable")  # pieces in order: the first copy first
    keys, piece, rows = keys[order], piece[order], rows[order]
    later = np.zeros(len(keys), dtype=bool)
    later[1:] = keys[1:] == keys[:-1]
    first = np.zeros(len(keys), dtype=bool)
    first[:-1] = later[1:] & ~later[:-1]
    return ({int(p): np.sort(rows[later & (piece == p)]) for p in np.unique(piece[later])},
            {int(p): np.sort(rows[first & (piece == p)]) for p in np.unique(piece[first])})


def rows_of_piece(source: InputSource, piece: tuple, spec: ScanSpec, rows: np.ndarray,
                  columns: Sequence[str]) -> pd.DataFrame:
    """The rows numbered ``rows`` of one piece, with ``columns`` (canonical dtypes) and ``_row``."""
    loaded = _load(source, piece, spec)
    return _frame(source, loaded, np.searchsorted(loaded.rows, np.asarray(rows, np.int64)),
                  columns, spec)


def repeat_rows(source: InputSource, piece: tuple, spec: ScanSpec, rows: np.ndarray) -> pd.DataFrame:
    """The rejected-row frame of rows that repeat a row of an earlier piece."""
    return _as_repeats(rows_of_piece(source, piece, spec, rows, spec.columns),
                       piece[0] if spec.name_files else spec.source)


def _as_repeats(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows (with ``_row`` last) as rejected repeats: ``reason`` and ``source`` before ``_row``."""
    frame = frame.rename(columns=validate.clash_renames(frame.columns))
    at = len(frame.columns) - 1
    frame.insert(at, validate.REASON, pd.Series(
        f"duplicate_position: {validate.REPEAT_REASON}",
        index=frame.index, dtype="str"))
    frame.insert(at + 1, validate.SOURCE, pd.Series(source, index=frame.index, dtype="str"))
    return frame


def pieces_holding(source: InputSource, pieces: Sequence[tuple], genes: Sequence[str]) -> list[int]:
    """The pieces whose row groups' statistics may hold a row of ``genes`` (from the footers; every
    piece of a CSV input, or of a file without statistics)."""
    if source.format != "parquet":
        return list(range(len(pieces)))
    genes = np.asarray(genes, dtype=object)
    wanted = pd.DataFrame({"gene_id": genes, "lo": np.zeros(len(genes), np.int64),
                           "hi": np.full(len(genes), _INT64_MAX)})
    out, footers = [], {}
    for i, (file, groups) in enumerate(pieces):  # one step per piece (footers read once per file)
        if file not in footers:
            fs, stripped = url_to_fs(file, source.storage_options)
            with fs.open(stripped, "rb") as handle:
                footers[file] = pq.ParquetFile(handle)
        parquet = footers[file]
        groups = list(groups) if groups is not None else list(range(parquet.metadata.num_row_groups))
        if _groups_holding(parquet, groups, wanted):
            out.append(i)
    return out

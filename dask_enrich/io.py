"""Reading positions and base-prediction tracks into Dask (or pandas) data frames.

Inputs are a Parquet file, a directory of Parquet files or a glob, or CSV/TSV files (optionally
gzip-compressed), on a local path or any fsspec URL. :func:`inspect_input` resolves the files and
their columns cheaply (Parquet footers, CSV header lines) so that a missing column is reported
before any work starts, naming the file and the column, with a close-name suggestion.
"""
from __future__ import annotations

import difflib
import gzip
import hashlib
import io as _io
import json
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# the input columns are declared in columns.py; the names stay importable from here
from .columns import (CONTEXT_COLUMNS, FLOAT_COLUMNS as _FLOAT_COLUMNS, OPTIONAL_COLUMNS,  # noqa: F401
                      POSITION_COLUMNS, STRING_COLUMNS as _STRING_COLUMNS, TRACK_COLUMNS)
from . import storage
from .errors import InputError


_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_CSV_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")

Format = Literal["parquet", "csv"]


@dataclass(frozen=True)
class InputSource:
    """A resolved input: its files, format, separator, compression and columns."""

    path: str
    label: str  # "positions" or "track", used in messages
    format: Format
    files: tuple[str, ...]  # full paths (with protocol for remote filesystems)
    columns: tuple[str, ...]  # columns of the first file
    sep: str = ","
    compression: str | None = None
    storage_options: dict[str, Any] | None = None

    def has(self, column: str) -> bool:
        return column in self.columns

    @property
    def has_context_columns(self) -> bool:
        """True when every ``context_score_*`` column is present."""
        return all(c in self.columns for c in CONTEXT_COLUMNS)




def _kind(name: str) -> tuple[Format | None, str | None, str]:
    """(format, compression, separator) guessed from a file name."""
    lower = name.lower()
    compression = None
    if lower.endswith(".gz"):
        compression, lower = "gzip", lower[:-3]
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet", compression, ","
    if lower.endswith((".tsv", ".tab")):
        return "csv", compression, "\t"
    if lower.endswith(_CSV_SUFFIXES):
        return "csv", compression, ","
    return None, compression, ","


def inspect_input(path: str, *, label: str = "positions",
                  storage_options: dict[str, Any] | None = None) -> InputSource:
    """Resolve ``path`` (file, directory or glob; local or fsspec URL) into an :class:`InputSource`.

    Raises InputError when nothing is found, the format is unknown or files mix formats.
    """
    path = str(path)
    fs, stripped = storage.url_to_fs(path, storage_options)
    if any(ch in stripped for ch in "*?["):
        found = sorted(fs.glob(stripped))
        files = [f for f in found if fs.isfile(f)]
    elif fs.isdir(stripped):
        files = sorted(f for f in fs.find(stripped)
                       if not any(part.startswith(("_", ".")) for part in f[len(stripped):].split("/") if part))
    elif fs.isfile(stripped):
        files = [stripped]
    else:
        raise InputError(f"{label} input {path}: no such file or directory")
    kinds = {f: _kind(f) for f in files}
    files = [f for f in files if kinds[f][0] is not None] if len(files) > 1 else files
    if not files:
        raise InputError(f"{label} input {path}: no Parquet/CSV/TSV files found")
    formats = {kinds[f][0] for f in files}
    if None in formats:
        # A single file without a known suffix: sniff Parquet's magic bytes, else treat as CSV.
        with fs.open(files[0], "rb") as handle:
            magic = handle.read(4)
        fmt: Format = "parquet" if magic == b"PAR1" else "csv"
        compression = "gzip" if magic[:2] == b"\x1f\x8b" else None
        sep = ","
    elif len(formats) > 1 or len({kinds[f][1:] for f in files}) > 1:
        raise InputError(f"{label} input {path}: mixes file formats ({', '.join(sorted(map(str, formats)))}); "
                         "give files of one format")
    else:
        fmt, compression, sep = kinds[files[0]]
    columns = _columns_of(fs, files[0], fmt, compression, label)
    if fmt == "csv" and sep == "," and "\t" in ",".join(columns) and len(columns) == 1:
        sep = "\t"
        columns = tuple(columns[0].split("\t"))
    return InputSource(path, label, fmt, tuple(storage.full_path(fs, f) for f in files), columns, sep,
                       compression, storage_options)


def _columns_of(fs: storage.FileSystem, file: str, fmt: Format, compression: str | None,
                label: str) -> tuple[str, ...]:
    try:
        if fmt == "parquet":
            with fs.open(file, "rb") as handle:
                return tuple(pq.ParquetFile(handle).schema_arrow.names)
        with fs.open(file, "rb") as raw:
            handle = gzip.GzipFile(fileobj=raw) if compression == "gzip" else raw
            header = _io.TextIOWrapper(handle, encoding="utf-8-sig").readline().rstrip("\r\n")
    except InputError:
        raise
    except Exception as exc:  # unreadable / corrupt file
        raise InputError(f"{label} file {file}: cannot be read ({type(exc).__name__}: {exc})") from None
    if not header:
        raise InputError(f"{label} file {file}: empty file (no header line)")
    sep = "\t" if "\t" in header else ","
    return tuple(c.strip() for c in header.split(sep))


def check_columns(source: InputSource, required: Iterable[str]) -> None:
    """Raise InputError naming the file and each missing required column, with a close-name
    suggestion from the columns the file has (e.g. ``donor_prob`` for ``donor_score``)."""
    missing = [c for c in required if c not in source.columns]
    if not missing:
        return
    spare = [c for c in source.columns if c not in set(required)]
    parts = []
    for column in missing:
        close = difflib.get_close_matches(column, spare, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}? rename it to {column!r})" if close else ""
        parts.append(f"{column!r}{hint}")
    raise InputError(
        f"{source.label} file {source.files[0]}: missing required column(s) {', '.join(parts)}; "
        f"columns present: {', '.join(source.columns)}"
    )


def wanted_columns(source: InputSource, required: Sequence[str],
                   keep_columns: Sequence[str] = ()) -> list[str]:
    """Required columns, the optional ones present, then ``keep_columns`` (checked to exist)."""
    check_columns(source, required)
    absent = [c for c in keep_columns if c not in source.columns]
    if absent:
        close = {c: difflib.get_close_matches(c, source.columns, n=1, cutoff=0.6) for c in absent}
        named = ", ".join(f"{c!r}" + (f" (did you mean {close[c][0]!r}?)" if close[c] else "")
                          for c in absent)
        raise InputError(f"{source.label} file {source.files[0]}: --keep-columns names column(s) "
                         f"it does not have: {named}")
    return column_order(source.columns, required, keep_columns)


def column_order(available: Sequence[str], required: Sequence[str],
                 keep_columns: Sequence[str] = ()) -> list[str]:
    """The columns a run reads, in order: required, the optional ones available, ``keep_columns``."""
    columns = list(required)
    columns += [c for c in OPTIONAL_COLUMNS if c in available and c not in columns]
    columns += [c for c in keep_columns if c not in columns]
    return columns


def _csv_dtypes(columns: Sequence[str]) -> dict[str, Any]:
    dtypes: dict[str, Any] = {c: "str" for c in _STRING_COLUMNS if c in columns}
    dtypes.update({c: "float64" for c in _FLOAT_COLUMNS if c in columns})
    return dtypes


def normalise_frame(frame: pd.DataFrame, label: str = "positions", *,
                    position_dtype: Any = np.int64) -> pd.DataFrame:
    """Canonical dtypes: ids as ``str``, ``position`` int64, scores float64 (pure pandas).

    Raises InputError for a position that is missing or not an integer, or a non-numeric score.
    ``position_dtype=float64`` keeps missing and fractional positions (as float64) for the row
    checks of :mod:`dask_enrich.validate` to reject with a reason.
    """
    changed: dict[str, pd.Series] = {}
    for column in frame.columns:
        original = values = frame[column]
        if column in _STRING_COLUMNS:
            values = values.astype("str") if values.dtype != "str" else values
        elif column == "position" and np.dtype(position_dtype) == np.float64:
            if values.dtype != np.float64:
                try:
                    values = pd.Series(pd.to_numeric(values, errors="raise").to_numpy(
                        dtype=np.float64, na_value=np.nan), index=frame.index, name=column)
                except (TypeError, ValueError):
                    raise InputError(f"{label}: column 'position' holds non-numeric values") from None
        elif column == "position" and np.dtype(position_dtype) == np.uint64 and values.dtype.kind == "u":
            pass  # unsigned positions for the row checks (position_too_large), not wrapped here
        elif column == "position" and values.dtype.kind == "u" and (values > np.iinfo(np.int64).max).any():
            i = int(np.flatnonzero((values > np.iinfo(np.int64).max).to_numpy())[0])
            raise InputError(f"{label}: column 'position' holds a value too large for a coordinate: "
                             f"{values.iloc[i]} (row {i} of a partition)")
        elif column == "position" and values.dtype != np.int64:
            try:
                as_float = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                raise InputError(f"{label}: column 'position' holds non-numeric values") from None
            bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InputError(f"{label}: column 'position' has {int(bad.sum())} missing or "
                                 f"non-integer value(s), e.g. {values.iloc[i]!r} (row {i} of a partition)")
            values = pd.Series(as_float.astype(np.int64), index=frame.index, name=column)
        elif column in _FLOAT_COLUMNS and values.dtype != np.float64:
            try:
                values = pd.Series(pd.to_numeric(values, errors="raise").to_numpy(
                    dtype=np.float64, na_value=np.nan), index=frame.index, name=column)
            except (TypeError, ValueError):
                raise InputError(f"{label}: column {column!r} holds non-numeric values") from None
        if values is not original:
            changed[column] = values
    if not changed:
        return frame
    frame = frame.copy(deep=False)
    for column, values in changed.items():
        frame[column] = values
    return frame


def _meta_of(source: InputSource, columns: Sequence[str], position_dtype: Any = np.int64
             ) -> pd.DataFrame:
    """The normalised empty frame for these columns (keep-columns typed from the file)."""
    sample = read_head(source, columns)
    return normalise_frame(sample.iloc[:0], source.label, position_dtype=position_dtype)


def file_columns(source: InputSource, file: str) -> tuple[str, ...]:
    """The column names of one file of ``source`` (Parquet footer, or the CSV header line)."""
    fs, stripped = storage.url_to_fs(file, source.storage_options)
    return _columns_of(fs, stripped, source.format, source.compression, source.label)


def read_head(source: InputSource, columns: Sequence[str] | None = None, *,
              typed: bool = True) -> pd.DataFrame:
    """The head of the first file of ``source``, cheaply: the empty frame of a Parquet footer's
    schema, or the first 100 rows of a CSV file (``typed``: the input columns' canonical CSV
    dtypes, else pandas' inferred ones). ``columns``: only these (None: all). A file that cannot
    be read is an InputError naming it."""
    try:
        if source.format == "parquet":
            fs, stripped = storage.url_to_fs(source.files[0], source.storage_options)
            with fs.open(stripped, "rb") as handle:
                table = pq.ParquetFile(handle).schema_arrow.empty_table()
            return (table if columns is None else table.select(list(columns))).to_pandas()
        # the first 100 rows only (pandas would read a whole buffer of a gzip stream)
        with storage.open_file(source.files[0], source.storage_options, source.compression) as handle:
            head = b"".join(line for _, line in zip(range(101), handle))
        wanted = None if columns is None else list(columns)
        frame = pd.read_csv(_io.BytesIO(head), sep=source.sep, usecols=wanted,
                            dtype=_csv_dtypes(wanted or []) if typed else None)
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame
    except Exception as exc:  # truncated, undecodable or unparseable first rows
        raise InputError(f"{source.label} file {source.files[0]}: cannot be read "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None


def _raw_position_dtype(source: InputSource) -> Any:
    """int64 when the input stores positions as integers (Parquet integer column), else float64
    (CSV, float columns: missing or fractional positions are kept for the row checks)."""
    if source.format == "parquet" and "position" in source.columns:
        fs, stripped = storage.url_to_fs(source.files[0], source.storage_options)
        with fs.open(stripped, "rb") as handle:
            field = pq.ParquetFile(handle).schema_arrow.field("position")
        if pa.types.is_uint64(field.type):
            return np.uint64  # kept as read: the row checks show a too-large one as written
        if pa.types.is_integer(field.type):
            return np.int64
    return np.float64


def _parquet_pieces(source: InputSource, target_bytes: int) -> list[tuple[str, tuple[int, ...] | None]]:
    """(file, row groups) pieces of about ``target_bytes`` (uncompressed) each, from the footers."""
    pieces: list[tuple[str, tuple[int, ...] | None]] = []
    for file in source.files:
        fs, stripped = storage.url_to_fs(file, source.storage_options)
        try:
            with fs.open(stripped, "rb") as handle:
                metadata = pq.ParquetFile(handle).metadata
        except Exception as exc:  # unreadable / truncated footer
            raise InputError(f"{source.label} file {file}: cannot be read "
                             f"({type(exc).__name__}: {exc})") from None
        groups: list[int] = []
        size = 0
        for i in range(metadata.num_row_groups):
            groups.append(i)
            size += metadata.row_group(i).total_byte_size
            if size >= target_bytes:
                pieces.append((file, tuple(groups)))
                groups, size = [], 0
        if groups or not pieces or pieces[-1][0] != file:
            pieces.append((file, tuple(groups) if groups else None))
    return pieces


def _csv_pieces(source: InputSource, blocksize: int | None) -> list[tuple[str, int | None, int | None]]:
    """(file, offset, length) byte blocks (whole files when compressed or ``blocksize`` is None)."""
    pieces: list[tuple[str, int | None, int | None]] = []
    for file in source.files:
        if source.compression or blocksize is None:
            pieces.append((file, None, None))
            continue
        fs, stripped = storage.url_to_fs(file, source.storage_options)
        size = int(fs.info(stripped).get("size") or 0)
        pieces += [(file, offset, blocksize) for offset in range(0, max(size, 1), blocksize)]
    return pieces


def text_decoded(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary-encoded text columns (a Parquet file written from a pandas
    categorical, say) as plain text, decoded by Arrow: pandas would make them categoricals, which
    :func:`normalise_frame` then turns into ``str`` one Python string per row."""
    for i, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_dictionary(kind) and (pa.types.is_string(kind.value_type)
                                             or pa.types.is_large_string(kind.value_type)):
            table = table.set_column(i, field.name, table.column(i).cast(kind.value_type))
    return table


class _PieceReader:
    """Reads one piece of an input on a worker; any failure is an InputError naming the file."""

    def __init__(self, source: InputSource, columns: Sequence[str], position_dtype: Any,
                 file_column: str | None = None):
        self.source, self.columns, self.position_dtype = source, list(columns), position_dtype
        self.file_column = file_column
        self.file_index = {f: i for i, f in enumerate(source.files)} if file_column else {}

    def __call__(self, piece: tuple) -> pd.DataFrame:
        file = piece[0]
        try:
            frame = self._read(piece)
        except InputError as exc:
            raise InputError(f"{self.source.label} file {file}: {exc}") from None
        except Exception as exc:  # truncated, corrupt, undecodable, unparseable
            raise InputError(f"{self.source.label} file {file}: cannot be read "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
        try:
            frame = normalise_frame(frame, self.source.label, position_dtype=self.position_dtype)
        except InputError as exc:
            raise InputError(f"{self.source.label} file {file}: {str(exc).split(': ', 1)[-1]}") from None
        if self.file_column:  # which file each row came from (an index into source.files)
            frame[self.file_column] = np.full(len(frame), self.file_index[file], dtype=np.int32)
        return frame

    def _read(self, piece: tuple) -> pd.DataFrame:
        source = self.source
        if source.format == "parquet":
            file, groups = piece
            fs, stripped = storage.url_to_fs(file, source.storage_options)
            local = storage.is_local(fs)  # a local file: pyarrow's own reader
            with (open(stripped, "rb") if local else fs.open(stripped, "rb")) as handle:
                parquet = pq.ParquetFile(handle)
                table = (parquet.read(columns=self.columns) if groups is None
                         else parquet.read_row_groups(list(groups), columns=self.columns))
            return text_decoded(table).to_pandas(split_blocks=True, self_destruct=True)
        file, offset, length = piece
        dtypes = _csv_dtypes(self.columns)
        if np.dtype(self.position_dtype) == np.float64 and "position" in self.columns:
            dtypes["position"] = "float64"
        with storage.open_file(file, source.storage_options, source.compression) as handle:
            if offset is None:
                data = handle.read()
            else:
                from fsspec.utils import read_block

                data = read_block(handle, offset, length, delimiter=b"\n")
        if offset:  # a block after the first: no header line
            if not data.strip():
                return pd.DataFrame({c: pd.Series([], dtype=dtypes.get(c, "str"))
                                     for c in self.columns})
            frame = pd.read_csv(_io.BytesIO(data), sep=source.sep, header=None,
                                names=list(source.columns), usecols=self.columns, dtype=dtypes)
        else:
            frame = pd.read_csv(_io.BytesIO(data), sep=source.sep, usecols=self.columns, dtype=dtypes)
            frame.columns = [str(c).strip() for c in frame.columns]
        return frame[self.columns]


def input_pieces(source: InputSource, columns: Sequence[str], *,
                 blocksize: str | int | None = "128MiB", lenient: bool = False,
                 file_column: str | None = None) -> tuple["_PieceReader", list, pd.DataFrame]:
    """(reader, pieces, meta): the pieces of the input (Parquet row groups of about ``blocksize``
    uncompressed bytes, or CSV byte blocks; a compressed CSV file is one piece), the callable that
    reads one piece as a frame of ``columns`` with canonical dtypes, and the empty frame of that
    schema. Options as in :func:`read_dask`."""
    from dask.utils import parse_bytes

    columns = list(columns)
    position_dtype = _raw_position_dtype(source) if lenient else np.int64
    meta = _meta_of(source, columns, position_dtype)
    if file_column:
        meta[file_column] = pd.Series([], dtype=np.int32)
    size = parse_bytes(blocksize) if isinstance(blocksize, str) else blocksize
    if source.format == "parquet":
        pieces: list = _parquet_pieces(source, size or (256 << 20))
    else:
        pieces = _csv_pieces(source, size)
    return _PieceReader(source, columns, position_dtype, file_column), pieces, meta


def read_dask(source: InputSource, columns: Sequence[str], *, blocksize: str | int | None = "128MiB",
              lenient: bool = False, file_column: str | None = None):
    """A Dask DataFrame of ``columns`` of the input, with canonical dtypes.

    Each partition is one piece of one file (Parquet row groups of about ``blocksize``
    uncompressed bytes, or a CSV byte block; a compressed CSV file is one piece); a piece that
    cannot be read or parsed raises InputError naming its file. ``lenient``: keep missing or
    fractional positions (float64) for the row checks instead of failing the read.
    ``file_column``: add an int32 column of that name, each row's file (index into
    ``source.files``), so that row-level messages can name the file.
    """
    import dask
    import dask.dataframe as dd

    reader, pieces, meta = input_pieces(source, columns, blocksize=blocksize, lenient=lenient,
                                        file_column=file_column)
    with dask.config.set({"dataframe.convert-string": False}):  # keep pandas' own "str" dtype
        return dd.from_map(reader, pieces, meta=meta, label=f"read-{source.label}",
                           enforce_metadata=False)


def read_pandas(source: InputSource | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole input as one pandas frame with canonical dtypes (small inputs, tests)."""
    if not isinstance(source, InputSource):
        source = inspect_input(source)
    columns = list(columns) if columns is not None else list(source.columns)
    parts = []
    for file in source.files:
        if source.format == "parquet":
            parts.append(pd.read_parquet(file, columns=columns, storage_options=source.storage_options))
        else:
            with storage.open_file(file, source.storage_options, source.compression) as handle:
                parts.append(pd.read_csv(handle, sep=source.sep, usecols=columns,
                                         dtype=_csv_dtypes(columns))[columns])
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return normalise_frame(frame, source.label)


def fingerprint(source: InputSource) -> dict[str, Any]:
    """A JSON-able fingerprint of the input's files (path, size, modification key)."""
    digest = hashlib.sha256()
    total = 0
    for file in source.files:
        fs, stripped = storage.url_to_fs(file, source.storage_options)
        info = fs.info(stripped)
        size = int(info.get("size") or 0)
        total += size
        key = {k: str(info.get(k)) for k in ("size", "mtime", "LastModified", "ETag", "etag",
                                             "md5Hash", "created") if info.get(k) is not None}
        digest.update(json.dumps([file, key], sort_keys=True).encode())
    return {"path": source.path, "files": len(source.files), "bytes": total,
            "sha256": digest.hexdigest()}

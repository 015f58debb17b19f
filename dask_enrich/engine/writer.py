"""The resumable Parquet output: one file per bin, written on the worker, temp name then rename.

Layout of an output directory::

    OUT/_LOCK.json           while a run writes OUT: its pid, host and start time
    OUT/_RUN.json            the run fingerprint, settings and plan, written before any part
    OUT/part-00000.parquet   one file per bin, every file with the same pyarrow schema
    OUT/_parts/part-00000.parquet.json   the part's record and the CRC-32 of its bytes
    OUT/_metadata            every part's row groups (Dask reads exactly these files), at the end
    OUT/_SUCCESS.json        written last: counts, imputed features, each file's rows and hash

    OUT/_rejected/part-NNNNN.parquet   with --on-bad-rows quarantine: a bin's bad rows and reasons
    OUT/_rejected-track/part-NNNNN.parquet   the same for the rows of a track read for context

Each part file is written to ``.part-NNNNN.parquet.tmp-<random>``, its record (with the CRC-32 of
those bytes) written to ``_parts/``, and then renamed, so a file with the final name is always
whole and recorded, and Parquet readers of OUT (which skip names starting
with ``.`` or ``_``) never see one being written. Its footer metadata (key ``dask_enrich``) records the run
fingerprint, the bin, its row count and the bin's EnrichReport, which is what ``--resume`` reads to
skip complete bins of the same run (and to merge their reports into the final summary). Part
files carry Parquet page checksums. Text columns the writer has as dictionaries (a track's,
kept by the selective path; ``gene_id`` from the bin's factorised gene ids) go to the Parquet
writer as they are, which then hashes no value again; the footer records the output schema
(plain strings), so a part reads back exactly as one written from strings. ``--resume`` keeps a
part only when its ``_parts/`` record, footer and bytes agree (same fingerprint and bin, the plan's gene list and rows for that bin, the
recorded row count and CRC-32); any other part is deleted and redone.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import storage
from ..errors import ConfigError, RunFailure
from ..gene_codes import GeneCodes
from ..trackscan import dictionary_codes
from ..options import OutputMode

RUN_FILE = "_RUN.json"
SUCCESS_FILE = "_SUCCESS.json"
#: one JSON record per complete part (record, bytes, CRC-32), written after the part's rename
PARTS_DIR = "_parts"
META_KEY = b"dask_enrich"
PART_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")
TMP_MARKER = ".tmp-"
#: Parquet writer options of every part: snappy; dictionary encoding and min/max statistics only
#: for the identifying columns (strings and ``position``): doing both for 100+ feature columns
#: makes writing several times slower for little gain; larger write batches and pages (4 MB) save
#: another ~10% of the writing time at the same file size.
#: Page checksums (CRC32 of each page) let a reader find a corrupted page.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "snappy", "write_batch_size": 1 << 16,
                                   "data_page_size": 4 << 20, "write_page_checksum": True}
#: Integer columns written DELTA_BINARY_PACKED: a track's positions step by 1, so their pages are
#: a few bytes and decode ~6x faster than PLAIN + snappy (5M rows: 9 vs 57 ms), which is most of
#: the cost of scanning a track's identifying columns.
DELTA_COLUMNS = ("position",)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def parquet_options(schema: pa.Schema, **overrides: Any) -> dict[str, Any]:
    """The ``pyarrow.parquet.write_table`` options of a part or track with ``schema``:
    :data:`PARQUET_OPTIONS`, dictionaries for the text columns, statistics for those and
    ``position``, :data:`DELTA_COLUMNS` delta-encoded when they are integers, no compression for
    the features whose registry entry says so (``Feature.compress``); ``overrides`` last."""
    strings = _dictionary_columns(schema)
    delta = {n: "DELTA_BINARY_PACKED" for n in DELTA_COLUMNS
             if n in schema.names and pa.types.is_integer(schema.field(n).type)}
    return {**PARQUET_OPTIONS, "use_dictionary": strings, "column_encoding": delta or None,
            "write_statistics": strings + [n for n in ("position",) if n in schema.names],
            "compression": _compression(schema.names), **overrides}


def _compression(names: list[str]) -> str | dict[str, str]:
    """The codec of each column: :data:`PARQUET_OPTIONS`' but none for incompressible features."""
    from ..features.registry import lookup

    codec = PARQUET_OPTIONS["compression"]
    raw = {n for n in names if (feature := lookup(n)) is not None and not feature.compress}
    return {n: "none" if n in raw else codec for n in names} if raw else codec


Mode = OutputMode


def part_name(bin_id: int) -> str:
    """File name of bin ``bin_id``."""
    return f"part-{bin_id:05d}.parquet"


def _write_json(fs: storage.FileSystem, path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}{TMP_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        with fs.open(tmp, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=False, default=str)
        storage.rename(fs, tmp, path)
    except OSError as exc:
        storage.remove_quietly(fs, tmp)
        raise os_failure(exc, path) from exc


def os_failure(exc: OSError, path: str, doing: str = "cannot write") -> RunFailure:
    """The RunFailure of an OSError on one of the run's own files: the file and the errno text."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return RunFailure(f"{doing} {path}: {reason}")


#: The record's content hash of a part file: CRC-32 of its bytes, as the pages' own checksums.
#: It guards against faults (a flipped byte, a truncated or swapped file), not against forgery;
#: it is 2.5x cheaper than SHA-256 here (0.08 vs 0.20 CPU s for a 185 MB part of 200k rows).
HASH_KEY = "crc32"


class ChecksumSink:
    """A writable file that passes every write on to ``raw`` and keeps the CRC-32 and the size of
    what went through: a file's digest (:func:`file_digest`) as it is written, without reading it
    back."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.crc = 0
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        given = view.nbytes
        self.crc = zlib.crc32(view, self.crc)
        self.size += given
        while view:  # an unbuffered file may take fewer bytes than given: the rest again
            view = view[self.raw.write(view):]
        return given

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:  # the caller closes ``raw`` (pyarrow closes the file it is given)
        self.closed = True

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    @property
    def digest(self) -> tuple[str, int]:
        """(CRC-32 as 8 hex digits, size in bytes), as :func:`file_digest` gives them."""
        return f"{self.crc:08x}", self.size


def file_digest(fs: storage.FileSystem, path: str) -> tuple[str, int]:
    """(CRC-32 of a file's bytes as 8 hex digits, size in bytes)."""
    crc = 0
    size = 0
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return f"{crc:08x}", size


def _dictionary_counts(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """The values of a dictionary-encoded text column in order of first appearance and their row
    counts (nulls left out), from its indices: no string hashed per row. None when its dictionary
    repeats a value (two indices would be one gene) or holds a null."""
    if column.num_chunks == 0:
        return None
    codes, values = dictionary_codes(column)
    if pd.isna(values).any() or len(pd.unique(values)) != len(values):
        return None
    codes = codes[codes >= 0]
    used = pd.unique(codes)  # in order of first appearance (one hash pass over integers)
    return values[used], np.bincount(codes, minlength=len(values))[used]


def gene_rows_digest(gene_ids: Any, genes: GeneCodes | None = None) -> str:
    """A digest of the rows per gene of a part (genes in order of first appearance, their row
    counts): recorded when the part is written, recomputed by ``dask-enrich verify``.
    ``genes``: ``gene_ids`` already factorised (as text; :class:`GeneCodes`). An Arrow column:
    dictionary-encoded, from its indices (the same digest); else as pandas."""
    counted = None
    if genes is not None:
        counted = genes.uniques, genes.checked(len(gene_ids)).counts()
    elif isinstance(gene_ids, (pa.Array, pa.ChunkedArray)):
        column = gene_ids if isinstance(gene_ids, pa.ChunkedArray) else pa.chunked_array([gene_ids])
        if pa.types.is_dictionary(column.type):
            counted = _dictionary_counts(column)
            column = column.cast(column.type.value_type) if counted is None else column
        gene_ids = column.to_pandas() if counted is None else None
    if counted is None:
        codes, uniques = pd.factorize(gene_ids if isinstance(gene_ids, (pd.Series, pd.Index))
                                      else pd.Series(gene_ids, dtype=object))
        counted = uniques, np.bincount(codes[codes >= 0], minlength=len(uniques))
    uniques, counts = counted
    digest = hashlib.sha256("\0".join(map(str, uniques)).encode())
    digest.update(b"|" + np.asarray(counts).astype("<i8").tobytes())
    return digest.hexdigest()[:32]


def read_json(out: str, name: str, storage_options: dict[str, Any] | None = None) -> dict | None:
    """``OUT/name`` parsed, or None when absent."""
    fs, root = storage.url_to_fs(out, storage_options)
    path = f"{root}/{name}"
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as handle:
        return json.load(handle)


#: Names dask-enrich writes into OUT besides the part files (``--overwrite`` removes only these).
STAGING_DIR = "_staging"
REJECTED_DIR = "_rejected"
TRACK_REJECTED_DIR = "_rejected-track"
LOCK_FILE = "_LOCK.json"
#: the dataset's Parquet summary file (every part's row groups): Dask reads exactly these files
METADATA_FILE = "_metadata"
OWN_NAMES = frozenset({RUN_FILE, SUCCESS_FILE, PARTS_DIR, STAGING_DIR, REJECTED_DIR,
                       TRACK_REJECTED_DIR, LOCK_FILE, METADATA_FILE})
#: What may be left in OUT by a run that wrote no part (it failed its checks): a new run may reuse it.
_NO_PART_NAMES = frozenset({RUN_FILE, STAGING_DIR, LOCK_FILE, PARTS_DIR})


def _is_own(fs: storage.FileSystem, root: str, name: str) -> bool:
    """Whether ``root/name`` is something dask-enrich writes (a part, temporary file, record,
    staging or rejects directory, or a model's output directory of a multi-model run)."""
    if name in OWN_NAMES or PART_PATTERN.match(name) or TMP_MARKER in name:
        return True
    path = f"{root}/{name}"
    return (fs.isdir(path) and fs.exists(f"{path}/{RUN_FILE}")
            and not foreign_entries(fs, path))


def foreign_entries(fs: storage.FileSystem, root: str) -> list[str]:
    """The entries of directory ``root`` that dask-enrich did not write."""
    return [n for n in storage.listing(fs, root) if not _is_own(fs, root, n)]


def _refuse(out: str, fs: storage.FileSystem, root: str, mode: Mode, run_fingerprint: str,
            run_record: dict[str, Any] | None, storage_options: dict[str, Any] | None) -> list[str]:
    """The refusals shared by :func:`precheck_output` and :func:`prepare_output`; returns OUT's
    entries ([] when it does not exist, or holds only the records of a run that wrote no part)."""
    if not fs.exists(root):
        return []
    if not fs.isdir(root):
        raise ConfigError(f"output {out} exists and is not a directory")
    entries = [n for n in storage.listing(fs, root) if n != LOCK_FILE]
    if mode == "new" and set(entries) <= _NO_PART_NAMES and not _has_parts(fs, f"{root}/{PARTS_DIR}"):
        return []  # a run that stopped before writing any part (failed its checks): start afresh
    if entries and mode == "new":
        raise ConfigError(f"output directory {out} is not empty: use --resume to continue the run "
                          "that wrote it, or --overwrite to replace it")
    if entries and mode == "overwrite":
        foreign = foreign_entries(fs, root)
        if foreign:
            shown = ", ".join(sorted(foreign)[:5]) + (f" and {len(foreign) - 5} more"
                                                      if len(foreign) > 5 else "")
            raise ConfigError(f"output directory {out} holds files dask-enrich did not write "
                              f"({shown}): --overwrite removes only dask-enrich's own output; move "
                              "them away or choose another --out")
    if entries and mode == "resume":
        previous = read_json(out, RUN_FILE, storage_options)
        if previous is None:
            raise ConfigError(f"cannot resume into {out}: it holds no {RUN_FILE} (not an output of "
                              "dask-enrich); use --overwrite to replace it")
        if previous.get("fingerprint") != run_fingerprint:
            detail = ""
            if run_record is not None:  # say which settings or inputs changed
                changed = changed_paths(previous, run_record)
                detail = (f" ({', '.join(changed[:6])}{' and more' if len(changed) > 6 else ''} "
                          "differ)" if changed else " (fingerprint differs)")
            raise ConfigError(f"cannot resume into {out}: it was written by a run with other inputs or "
                              f"settings{detail}; use --overwrite")
    return entries


def _has_parts(fs: storage.FileSystem, directory: str) -> bool:
    return fs.exists(directory) and bool(storage.listing(fs, directory))


def precheck_output(out: str, *, mode: Mode, run_fingerprint: str,
                    storage_options: dict[str, Any] | None = None,
                    run_record: dict[str, Any] | None = None) -> None:
    """The refusals of :func:`prepare_output`, checked cheaply before any cluster starts."""
    fs, root = storage.url_to_fs(out, storage_options)
    _refuse(out, fs, root, mode, run_fingerprint, run_record, storage_options)


#: Threads deleting a previous output's entries: unlinking a part frees its cached pages in the
#: kernel (5M rows in 30 parts, 1.6 GB: 0.6 s in one thread), work that runs in parallel.
REMOVE_THREADS = 4


def remove_own(fs: storage.FileSystem, root: str) -> None:
    """Delete what dask-enrich wrote in ``root`` (not its lock, nothing else): ``_SUCCESS.json``
    first, then the rest in :data:`REMOVE_THREADS` threads."""
    names = [n for n in storage.listing(fs, root) if n != LOCK_FILE and _is_own(fs, root, n)]
    names.sort(key=lambda n: n != SUCCESS_FILE)  # a half-removed output never looks complete

    def remove(name: str) -> None:
        fs.rm(f"{root}/{name}", recursive=True)

    if names and names[0] == SUCCESS_FILE:
        remove(names.pop(0))
    with ThreadPoolExecutor(max_workers=max(1, min(REMOVE_THREADS, len(names)))) as pool:
        list(pool.map(remove, names))


def prepare_output(out: str, *, mode: Mode, run_fingerprint: str, run_record: dict[str, Any],
                   n_bins: int, storage_options: dict[str, Any] | None = None,
                   bin_digests: list[str] | None = None, failed: dict[str, str] | None = None
                   ) -> dict[int, dict[str, Any]]:
    """Make ``out`` ready for a run and return the complete parts to skip ({bin: record}).

    ``new``: refuse a non-empty directory. ``overwrite``: delete what dask-enrich wrote in it
    first (refusing anything else). ``resume``: keep the parts of the same run that pass
    :func:`verify_part` (with ``bin_digests``, the plan's digest of each bin); delete temporary
    files, parts that fail (their reasons go to ``failed``) and the previous ``_SUCCESS.json``;
    refuse a directory of another run.
    """
    fs, root = storage.url_to_fs(out, storage_options)
    entries = _refuse(out, fs, root, mode, run_fingerprint, run_record, storage_options)
    done: dict[int, dict[str, Any]] = {}
    failed = {} if failed is None else failed
    try:
        if mode == "overwrite" and entries:
            remove_own(fs, root)
            entries = []
        elif mode == "new" and entries == [] and fs.exists(root):
            remove_own(fs, root)  # the records of a run that wrote no part
        if entries and mode == "resume":
            previous = read_json(out, RUN_FILE, storage_options) or {}
            old_plan = (previous.get("plan") or {}).get("digest")
            new_plan = (run_record.get("plan") or {}).get("digest")
            replanned = old_plan is not None and new_plan is not None and old_plan != new_plan
            for name in entries:
                if TMP_MARKER in name or name in (SUCCESS_FILE, METADATA_FILE):
                    fs.rm(f"{root}/{name}")
            parts = [n for n in entries if PART_PATTERN.match(n)]

            def check(name: str) -> tuple[dict[str, Any] | None, str]:
                if replanned:
                    return None, "the plan differs from the one recorded in _RUN.json"
                return verify_part(fs, root, name, fingerprint=run_fingerprint, n_bins=n_bins,
                                   bin_digests=bin_digests)

            with ThreadPoolExecutor(max_workers=max(1, min(8, len(parts)))) as pool:  # hashing
                for name, (record, reason) in zip(parts, pool.map(check, parts)):
                    if record is None:
                        failed[name] = reason
                        fs.rm(f"{root}/{name}")  # truncated, corrupt, or not of this plan: redo it
                    else:
                        done[int(record["bin"])] = record
            parts_dir = f"{root}/{PARTS_DIR}"
            if fs.exists(parts_dir):  # records of parts that are gone or failed
                for name in storage.listing(fs, parts_dir):
                    match = PART_PATTERN.match(name.removesuffix(".json"))
                    if not match or int(match.group(1)) not in done:
                        fs.rm(f"{parts_dir}/{name}")
        fs.makedirs(root, exist_ok=True)
        if not done:
            _write_json(fs, f"{root}/{RUN_FILE}", {"fingerprint": run_fingerprint, **run_record})
    except OSError as exc:
        raise os_failure(exc, root, "cannot prepare the output directory") from exc
    return done


def changed_paths(previous: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the values of ``current`` that differ from ``previous`` (leaves of
    nested dicts; a file name such as ``feature_stats.json`` is one key)."""
    current = json.loads(json.dumps(current, default=str))
    if isinstance(current, dict) and isinstance(previous, dict):
        changed = []
        for key in current.keys() | previous.keys():
            if not prefix and key in ("fingerprint", "plan"):
                continue
            changed += changed_paths(previous.get(key), current.get(key), f"{prefix}{key}.")
        return sorted(changed)
    return [] if current == previous else [prefix.rstrip(".") or "record"]


def read_part_record(fs: storage.FileSystem, path: str) -> dict[str, Any] | None:
    """The ``dask_enrich`` footer record of a part file, or None if the file is not whole."""
    try:
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            metadata = parquet.schema_arrow.metadata or {}
            record = json.loads(metadata[META_KEY])
            if record.get("rows") != parquet.metadata.num_rows:
                return None
            return record
    except Exception:  # truncated or corrupt file, or no record: not complete
        return None


def part_record_path(root: str, name: str) -> str:
    """Where the record of part ``name`` (its bytes' CRC-32, rows, genes) is kept."""
    return f"{root}/{PARTS_DIR}/{name}.json"


def verify_part(fs: storage.FileSystem, root: str, name: str, *,
                fingerprint: str | None = None, n_bins: int | None = None,
                bin_digests: list[str] | None = None, record: dict[str, Any] | None = None,
                ) -> tuple[dict[str, Any] | None, str]:
    """(the part's record, "") when part ``name`` of ``root`` is whole and is what its record says
    (fingerprint, bin, the plan's genes for that bin, bytes and CRC-32, footer rows); else
    (None, why not). ``record``: the record to check against (default: its ``_parts/`` file)."""
    path = f"{root}/{name}"
    bin_id = int(PART_PATTERN.match(name).group(1))
    if record is None:
        try:
            with fs.open(part_record_path(root, name), "r") as handle:
                record = json.load(handle)
        except Exception:
            return None, "no record of a complete write"
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        return None, "written by a run with other inputs or settings"
    if record.get("bin") != bin_id or (n_bins is not None and bin_id >= n_bins):
        return None, "not a partition of this run's plan"
    if bin_digests is not None and record.get("genes") != bin_digests[bin_id]:
        return None, f"its genes or their rows are not those of partition {bin_id} of the plan"
    try:
        sha, size = file_digest(fs, path)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if size != record.get("bytes") or sha != record.get(HASH_KEY):
        return None, "content hash differs from the one recorded when it was written"
    footer = read_part_record(fs, path)
    if footer is None or footer.get("rows") != record.get("rows") or footer.get("bin") != bin_id:
        return None, "its footer does not match its record"
    return record, ""



def to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as a table of exactly ``schema``: numeric columns without a copy (10x cheaper
    than ``Table.from_pandas`` on a wide, block-consolidated frame); a dtype that is not the
    schema's raises."""
    arrays = []
    for field in schema:
        column = frame[field.name]
        if column.dtype.kind in "biuf" and not isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
            values = column.to_numpy()
            if pa.from_numpy_dtype(values.dtype) != field.type:
                raise TypeError(f"column {field.name!r} is {values.dtype}, the schema says {field.type}")
            arrays.append(pa.array(values, type=field.type))
        else:
            arrays.append(pa.array(column, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _first_used(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary column (one dictionary) with only the entries its rows use, in order of first
    appearance: the dictionary and indices that the Parquet writer's own hashing of the values
    would build (one hash pass over the integer indices instead of one over the strings)."""
    dictionary = column.chunk(0).dictionary
    flat, _ = dictionary_codes(column)
    used = pd.unique(flat[flat >= 0] if column.null_count else flat)
    if len(used) == len(dictionary) and np.array_equal(used, np.arange(len(used))):
        return column
    remap = np.full(len(dictionary) + 1, -1, dtype=np.int32)  # [-1]: a null's index
    remap[used] = np.arange(len(used), dtype=np.int32)
    new = remap[flat]
    chunk = pa.DictionaryArray.from_arrays(pa.array(new, mask=new < 0 if column.null_count else None),
                                           dictionary.take(pa.array(used)))
    return pa.chunked_array([chunk])


def _text_column(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    """``column`` as ``field``'s type, or as a dictionary of it (entries in order of first
    appearance) when ``field`` is text and ``column`` a dictionary of exactly that type."""
    kind = column.type
    if not (pa.types.is_dictionary(kind) and pa.types.is_string(field.type)
            and kind.value_type == field.type and column.num_chunks):
        return column.cast(field.type)
    column = column.unify_dictionaries() if column.num_chunks > 1 else column
    if column.chunk(0).dictionary.null_count:
        return column.cast(field.type)
    column = _first_used(column)
    dictionary = column.chunk(0).dictionary
    if pc.count_distinct(dictionary).as_py() != len(dictionary):  # a value twice: as before
        return column.cast(field.type)
    return column


#: Rows of ``gene_id`` compared with their given codes before the codes are written instead
#: (evenly spaced, first and last included): codes of other rows are refused, for ~50 us a bin.
CODES_SAMPLE = 1024


def _coded_genes(frame: pd.DataFrame, field: pa.Field, genes: GeneCodes) -> pa.ChunkedArray | None:
    """``frame``'s ``gene_id`` as a dictionary column from its factorised ``genes`` (int32 codes,
    ``uniques`` as the dictionary), or None when its column is not text (converted as before).
    ValueError when ``genes`` has other rows than ``frame``'s (their number, or the gene id of one
    of :data:`CODES_SAMPLE` rows, differs)."""
    column = frame["gene_id"]
    if not (pa.types.is_string(field.type) and pd.api.types.is_string_dtype(column.dtype)
            and column.dtype != object and len(genes.uniques) < np.iinfo(np.int32).max):
        return None
    codes = genes.checked(len(frame)).codes
    missing = codes < 0
    indices = pa.array(codes.astype(np.int32), mask=missing if missing.any() else None)
    coded = pa.DictionaryArray.from_arrays(
        indices, pa.array(np.asarray(genes.uniques, dtype=object), type=field.type))
    rows = np.unique(np.linspace(0, len(frame) - 1, min(len(frame), CODES_SAMPLE)).astype(np.int64))
    given = pa.array(column.iloc[rows], type=field.type, from_pandas=True)
    if isinstance(given, pa.ChunkedArray):  # a column of several Arrow chunks
        given = given.combine_chunks()
    if not coded.take(pa.array(rows)).cast(field.type).equals(given):
        raise ValueError("the gene codes given are not those of the frame's gene_id values")
    return pa.chunked_array([coded])


def writable_table(frame: pd.DataFrame | pa.Table, schema: pa.Schema,
                   genes: GeneCodes | None = None) -> pa.Table:
    """``frame`` as the table to write for ``schema``: every column of the schema's type, but a
    text column that is a dictionary (an Arrow table's) or whose values are factorised (``genes``:
    ``gene_id``) as a dictionary of that type, which the Parquet writer takes as it is instead of
    hashing every value again. Written with :func:`write_parquet` and ``schema``, the file reads
    back as one written from ``frame`` cast to ``schema``."""
    if isinstance(frame, pa.Table):
        columns = [_text_column(frame.column(f.name), f) for f in schema]
        return pa.Table.from_arrays(columns, schema=pa.schema(
            [f.with_type(c.type) for f, c in zip(schema, columns)], metadata=schema.metadata))
    coded = _coded_genes(frame, schema.field("gene_id"), genes) \
        if genes is not None and "gene_id" in schema.names else None
    if coded is None:
        return to_table(frame, schema)
    at = schema.get_field_index("gene_id")
    rest = to_table(frame, pa.schema([f for f in schema if f.name != "gene_id"]))
    return rest.add_column(at, schema.field("gene_id").with_type(coded.type), coded) \
        .replace_schema_metadata(schema.metadata)


#: The footer key under which pyarrow keeps a file's Arrow schema (what readers restore).
ARROW_SCHEMA_KEY = b"ARROW:schema"


def write_parquet(table: pa.Table, where: Any, schema: pa.Schema | None = None, **options: Any) -> None:
    """``pq.write_table(table, where, **options)``; with ``schema`` (``table``'s but for text columns
    that are dictionaries, see :func:`writable_table`), a file whose footer records ``schema`` with
    ``table``'s metadata as pyarrow records a table's schema: it reads back (types, metadata) as
    if ``table`` had been cast to ``schema``, and the Parquet writer takes the dictionaries as
    they are (their indices are the pages' dictionary indices)."""
    if schema is None or table.schema.equals(schema, check_metadata=False):
        pq.write_table(table, where, **options)
        return
    if schema.names != table.column_names:
        raise ValueError(f"columns {table.column_names} are not those of the schema {schema.names}")
    stored = schema.with_metadata(table.schema.metadata)
    row_group_size = options.pop("row_group_size", None)
    # the footer's key-value metadata as pyarrow builds it: the schema's, then the Arrow schema
    metadata = {**(stored.metadata or {}),
                ARROW_SCHEMA_KEY: base64.b64encode(stored.serialize().to_pybytes())}
    with pq.ParquetWriter(where, table.schema.remove_metadata(), store_schema=False,
                          **options) as parquet:
        parquet.write_table(table, row_group_size=row_group_size)
        parquet.add_key_value_metadata(metadata)


def write_table_atomic(fs: Any, table: pa.Table, directory: str, bin_id: int, *,
                       before_rename: Callable[[str, tuple[str, int]], None] | None = None,
                       schema: pa.Schema | None = None, **options: Any) -> str:
    """Write ``table`` as ``directory/part-NNNNN.parquet``: under a hidden temporary name first
    (Parquet dataset readers skip names starting with "."), renamed when complete, so a reader or
    ``--resume`` never takes a half-written file as a part. ``before_rename(tmp, digest)`` runs
    once the file is complete, with its (CRC-32, bytes) taken as it was written (to record them);
    ``schema``: the file's schema when ``table``'s text columns are dictionaries
    (:func:`write_parquet`). Returns the final path. An OSError (full disk, read-only, ...) leaves
    no temporary file and becomes a RunFailure naming the file."""
    final = f"{directory}/{part_name(bin_id)}"
    tmp = f"{directory}/.{part_name(bin_id)}{TMP_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        # a local file unbuffered: pyarrow writes whole pages, each copied once (to the kernel)
        with (open(tmp, "wb", buffering=0) if storage.is_local(fs) else fs.open(tmp, "wb")) as handle:
            sink = ChecksumSink(handle)
            write_parquet(table, sink, schema, **options)
        if before_rename is not None:
            before_rename(tmp, sink.digest)
        storage.rename(fs, tmp, final)
    except OSError as exc:
        storage.remove_quietly(fs, tmp)
        raise RunFailure(f"bin {bin_id}: {os_failure(exc, final)}") from exc
    return final


def write_part(frame: pd.DataFrame | pa.Table, out: str, bin_id: int, schema: pa.Schema,
               run_fingerprint: str, report: dict[str, Any],
               storage_options: dict[str, Any] | None = None, *,
               rows_in: int | None = None, rows_rejected: int = 0, genes: str = "",
               gene_codes: GeneCodes | None = None) -> dict[str, Any]:
    """Write one bin's enriched frame (or an Arrow table whose text columns may be dictionaries) as
    ``OUT/part-NNNNN.parquet`` with exactly ``schema`` (text columns given as dictionaries, or
    ``gene_id`` with ``gene_codes``, are written as such: :func:`writable_table`); return its record
    (also stored in the file's footer, and with the file's bytes and CRC-32 in ``OUT/_parts/``).
    Runs on the worker; the frame never travels back to the client.
    ``rows_in``/``rows_rejected``: the bin's input rows and the rows split off as bad (kept in the
    record so that a resumed run can add them up); ``genes``: the plan's digest of the bin;
    ``gene_codes``: the frame's gene ids already factorised (its rows, in its order)."""
    fs, root = storage.url_to_fs(out, storage_options)
    arrow = isinstance(frame, pa.Table)
    names = frame.column_names if arrow else list(frame.columns)
    if names != schema.names:
        raise RunFailure(f"bin {bin_id}: enriched columns {names} do not match the "
                         f"output schema {schema.names}")
    try:
        table = writable_table(frame, schema, gene_codes)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError, TypeError) as exc:
        raise RunFailure(f"bin {bin_id}: enriched frame does not match the output schema: {exc}") from exc
    gene_ids = frame["gene_id"] if "gene_id" in names else None  # a table's: as it was given
    record = {"fingerprint": run_fingerprint, "bin": int(bin_id), "file": part_name(bin_id),
              "rows": int(table.num_rows),
              "rows_in": int(table.num_rows if rows_in is None else rows_in),
              "rows_rejected": int(rows_rejected), "report": report, "genes": genes,
              "gene_rows": gene_rows_digest(gene_ids, gene_codes) if gene_ids is not None else ""}
    return write_recorded_part(fs, table, root, bin_id, record, schema=schema,
                               **parquet_options(schema))


def write_recorded_part(fs: Any, table: pa.Table, root: str, bin_id: int, record: dict[str, Any],
                        **options: Any) -> dict[str, Any]:
    """Write ``table`` as part ``bin_id`` of ``root`` with ``record`` in its footer, and the record
    with the file's bytes and CRC-32 in ``_parts/`` before the rename (what ``--resume`` and
    ``verify`` check a kept part against). Returns the record. ``options``: those of
    :func:`write_table_atomic` (``schema``: the file's, when text columns are dictionaries)."""
    table = table.replace_schema_metadata({META_KEY: json.dumps(record).encode()})

    def record_bytes(tmp: str, digest: tuple[str, int]) -> None:  # the record first: a part
        sha, size = digest  # under its final name has one
        record.update({HASH_KEY: sha, "bytes": size})
        fs.makedirs(f"{root}/{PARTS_DIR}", exist_ok=True)
        _write_json(fs, part_record_path(root, part_name(bin_id)), record)

    write_table_atomic(fs, table, root, bin_id, before_rename=record_bytes, **options)
    return record


def schema_fields(schema: pa.Schema) -> list[str]:
    """``name: type`` of each column (what ``_SUCCESS.json`` records and ``verify`` checks)."""
    return [f"{f.name}: {f.type}" for f in schema]


class OutputLock:
    """``OUT/_LOCK.json`` held for a whole run: its pid, host and start time. Created atomically
    (``O_EXCL``) on a local filesystem; elsewhere (object stores) checked, then written, which
    narrows but cannot close the race. A lock left by a dead process on this host is taken over."""

    def __init__(self, out: str, storage_options: dict[str, Any] | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.out = out
        self.fs, self.root = storage.url_to_fs(out, storage_options)
        self.path = f"{self.root}/{LOCK_FILE}"
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "token": uuid.uuid4().hex}
        self.say = say or (lambda message: None)
        self.created = False

    def acquire(self) -> "OutputLock":
        """Take the lock: ConfigError (exit 3) naming the holder when another run holds it;
        RunFailure (exit 4) when OUT cannot be written (read-only, no space, no permission)."""
        fs = self.fs
        if fs.exists(self.root) and not fs.isdir(self.root):
            raise ConfigError(f"output {self.out} exists and is not a directory")
        try:
            self.created = not fs.exists(self.root)
            fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise os_failure(exc, self.root, "cannot create the output directory") from exc
        for attempt in range(2):
            try:
                if self._create():
                    return self
            except OSError as exc:
                self._cleanup_dir()
                raise os_failure(exc, self.path) from exc
            holder = self._holder()
            if attempt == 0 and self._stale(holder):
                self.say(f"taking over the lock {self.path} of a run that is gone (pid "
                         f"{holder.get('pid')} on {holder.get('host')}, started {holder.get('started')})")
                storage.remove_quietly(fs, self.path)
                continue
            break
        self._cleanup_dir()
        raise ConfigError(f"output {self.out} is locked by another run (pid {holder.get('pid', '?')} on "
                          f"{holder.get('host', '?')}, started {holder.get('started', '?')}): wait for it "
                          f"to finish; if that run is gone, remove {self.path}")

    def _create(self) -> bool:
        data = json.dumps(self.info).encode()
        if storage.is_local(self.fs):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        if self.fs.exists(self.path):
            return False
        with self.fs.open(self.path, "wb") as handle:
            handle.write(data)
        return True

    def _holder(self) -> dict[str, Any]:
        try:
            with self.fs.open(self.path, "r") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        """A lock of a process of this host that no longer runs (or an empty lock file: its
        writer died between creating and writing it, if it is older than a minute)."""
        if not holder:
            try:
                modified = self.fs.info(self.path).get("mtime")
                return modified is not None and time.time() - float(modified) > 60
            except (OSError, TypeError, ValueError):
                return False
        if holder.get("host") != self.info["host"] or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        """Remove the lock if it is still this run's (and OUT itself if this run created it and
        left nothing in it)."""
        if self._holder().get("token") == self.info["token"]:
            storage.remove_quietly(self.fs, self.path)
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        try:
            if self.created and self.fs.exists(self.root) and not storage.listing(self.fs, self.root):
                self.fs.rmdir(self.root)
        except Exception:
            pass


def write_dataset_metadata(out: str, names: list[str], schema: pa.Schema,
                           storage_options: dict[str, Any] | None = None) -> None:
    """Write ``OUT/_metadata``: the row groups of the part files ``names``, so that dataset readers
    that honour it (Dask) read exactly these files and nothing else under OUT (``_rejected/``
    holds Parquet files too, and Dask's directory listing does not skip ``_`` directories)."""
    fs, root = storage.url_to_fs(out, storage_options)
    collected = []
    path = f"{root}/{METADATA_FILE}"
    tmp = f"{path}{TMP_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        for name in names:
            with fs.open(f"{root}/{name}", "rb") as handle:
                metadata = pq.read_metadata(handle)
            metadata.set_file_path(name)
            collected.append(metadata)
        buffer = io.BytesIO()  # write_metadata reads back what it wrote: a seekable buffer
        pq.write_metadata(schema, buffer, metadata_collector=collected)
        with fs.open(tmp, "wb") as handle:
            handle.write(buffer.getvalue())
        storage.rename(fs, tmp, path)
    except OSError as exc:
        storage.remove_quietly(fs, tmp)
        raise os_failure(exc, path) from exc


def write_success(out: str, data: dict[str, Any], storage_options: dict[str, Any] | None = None) -> str:
    """Write ``OUT/_SUCCESS.json`` (atomically) and return its path."""
    fs, root = storage.url_to_fs(out, storage_options)
    path = f"{root}/{SUCCESS_FILE}"
    _write_json(fs, path, data)
    return path


def part_records(out: str, n_bins: int, storage_options: dict[str, Any] | None = None
                 ) -> list[dict[str, Any] | None]:
    """The ``_parts/`` record of each bin's part in ``out`` (None where absent or unreadable)."""
    fs, root = storage.url_to_fs(out, storage_options)
    records: list[dict[str, Any] | None] = []
    for b in range(n_bins):
        try:
            with fs.open(part_record_path(root, part_name(b)), "r") as handle:
                records.append(json.load(handle))
        except (OSError, ValueError):
            records.append(None)
    return records


def part_files(out: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The complete part files of ``out``, in bin order (full paths)."""
    fs, root = storage.url_to_fs(out, storage_options)
    names = sorted(n for n in storage.listing(fs, root) if PART_PATTERN.match(n))
    return [f"{root}/{n}" for n in names]

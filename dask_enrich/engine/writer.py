"""The resumable Parquet output: one file per bin, written on the worker, temp name then rename.

Layout of an output directory::

    OUT/_RUN.json            the run fingerprint and settings, written before any part
    OUT/part-00000.parquet   one file per bin, every file with the same pyarrow schema
    OUT/_SUCCESS.json        written last: counts, imputed features, fingerprints, timings

    OUT/rejected/part-NNNNN.parquet   with --on-bad-rows quarantine: a bin's bad rows and reasons
    OUT/rejected-track/part-NNNNN.parquet   the same for the rows of a track read for context

Each part file is written to ``.part-NNNNN.parquet.tmp-<random>`` and renamed when complete, so a
file with the final name is always whole, and Parquet readers of OUT (which skip names starting
with ``.`` or ``_``) never see one being written. Its footer metadata (key ``dask_enrich``) records the run
fingerprint, the bin, its row count and the bin's EnrichReport, which is what ``--resume`` reads to
skip complete bins of the same run (and to merge their reports into the final summary).
"""
from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any, Literal

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, RunFailure

RUN_FILE = "_RUN.json"
SUCCESS_FILE = "_SUCCESS.json"
META_KEY = b"dask_enrich"
PART_PATTERN = re.compile(r"^part-(\d{5,})\.parquet$")
TMP_MARKER = ".tmp-"
#: Parquet writer options of every part: snappy; dictionary encoding and min/max statistics only
#: for the identifying columns (strings and ``position``): doing both for 100+ feature columns
#: makes writing several times slower for little gain; larger write batches and pages (4 MB) save
#: another ~10% of the writing time at the same file size.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "snappy", "write_batch_size": 1 << 16,
                                   "data_page_size": 4 << 20}


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _writer_options(schema: pa.Schema) -> dict[str, Any]:
    strings = _dictionary_columns(schema)
    return {**PARQUET_OPTIONS, "use_dictionary": strings,
            "write_statistics": strings + [n for n in ("position",) if n in schema.names]}

Mode = Literal["new", "resume", "overwrite"]


def part_name(bin_id: int) -> str:
    """File name of bin ``bin_id``."""
    return f"part-{bin_id:05d}.parquet"


def _fs(out: str, storage_options: dict[str, Any] | None = None
        ) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(str(out), **(storage_options or {}))


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _write_json(fs: fsspec.AbstractFileSystem, path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}{TMP_MARKER}{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=False, default=str)
    _rename(fs, tmp, path)


def _rename(fs: fsspec.AbstractFileSystem, tmp: str, final: str) -> None:
    if _is_local(fs):
        os.replace(tmp, final)  # atomic on one filesystem
    else:
        fs.mv(tmp, final)


def read_json(out: str, name: str, storage_options: dict[str, Any] | None = None) -> dict | None:
    """``OUT/name`` parsed, or None when absent."""
    fs, root = _fs(out, storage_options)
    path = f"{root}/{name}"
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as handle:
        return json.load(handle)


def _listing(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    return [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]


def _refuse(out: str, fs: fsspec.AbstractFileSystem, root: str, mode: Mode, run_fingerprint: str,
            run_record: dict[str, Any] | None, storage_options: dict[str, Any] | None) -> list[str]:
    """The refusals shared by :func:`precheck_output` and :func:`prepare_output`; returns OUT's
    entries ([] when it does not exist)."""
    if not fs.exists(root):
        return []
    if not fs.isdir(root):
        raise ConfigError(f"output {out} exists and is not a directory")
    entries = _listing(fs, root)
    if entries and mode == "new":
        raise ConfigError(f"output directory {out} is not empty: use --resume to continue the run "
                          "that wrote it, or --overwrite to replace it")
    if entries and mode == "resume":
        previous = read_json(out, RUN_FILE, storage_options)
        if previous is None:
            raise ConfigError(f"cannot resume into {out}: it holds no {RUN_FILE} (not an output of "
                              "dask-enrich); use --overwrite to replace it")
        if previous.get("fingerprint") != run_fingerprint:
            detail = ""
            if run_record is not None:  # say which settings or inputs changed
                detail = f" ({', '.join(_changed_keys(previous, run_record)) or 'fingerprint differs'})"
            raise ConfigError(f"cannot resume into {out}: it was written by a run with other inputs or "
                              f"settings{detail}; use --overwrite")
    return entries


def precheck_output(out: str, *, mode: Mode, run_fingerprint: str,
                    storage_options: dict[str, Any] | None = None) -> None:
    """The refusals of :func:`prepare_output`, checked cheaply before any cluster starts."""
    fs, root = _fs(out, storage_options)
    _refuse(out, fs, root, mode, run_fingerprint, None, storage_options)


def prepare_output(out: str, *, mode: Mode, run_fingerprint: str, run_record: dict[str, Any],
                   n_bins: int, storage_options: dict[str, Any] | None = None
                   ) -> dict[int, dict[str, Any]]:
    """Make ``out`` ready for a run and return the complete parts to skip ({bin: record}).

    ``new``: refuse a non-empty directory. ``overwrite``: delete it first. ``resume``: keep the
    parts of the same run (same fingerprint) that are complete; delete temporary files, partial or
    foreign parts and the previous ``_SUCCESS.json``; refuse a directory of another run.
    """
    fs, root = _fs(out, storage_options)
    entries = _refuse(out, fs, root, mode, run_fingerprint, run_record, storage_options)
    done: dict[int, dict[str, Any]] = {}
    if entries and mode == "overwrite":
        fs.rm(root, recursive=True)
        entries = []
    if entries and mode == "resume":
        for name in entries:
            path = f"{root}/{name}"
            match = PART_PATTERN.match(name)
            if TMP_MARKER in name or name == SUCCESS_FILE:
                fs.rm(path)
            elif match:
                record = read_part_record(fs, path)
                bin_id = int(match.group(1))
                if (record is None or record.get("fingerprint") != run_fingerprint
                        or record.get("bin") != bin_id or bin_id >= n_bins):
                    fs.rm(path)  # truncated, corrupt, or not of this plan: redo it
                else:
                    done[bin_id] = record
    fs.makedirs(root, exist_ok=True)
    if not done:
        _write_json(fs, f"{root}/{RUN_FILE}", {"fingerprint": run_fingerprint, **run_record})
    return done


def _changed_keys(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    changed = []
    for key, value in current.items():
        if json.loads(json.dumps(value, default=str)) != previous.get(key):
            changed.append(key)
    return changed


def read_part_record(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
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


def write_table_atomic(fs: Any, table: pa.Table, directory: str, bin_id: int, **options: Any) -> str:
    """Write ``table`` as ``directory/part-NNNNN.parquet``: under a hidden temporary name first
    (Parquet dataset readers skip names starting with "."), renamed when complete, so a reader or
    ``--resume`` never takes a half-written file as a part. Returns the final path."""
    final = f"{directory}/{part_name(bin_id)}"
    tmp = f"{directory}/.{part_name(bin_id)}{TMP_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        if _is_local(fs):
            pq.write_table(table, tmp, **options)
        else:
            with fs.open(tmp, "wb") as handle:
                pq.write_table(table, handle, **options)
        _rename(fs, tmp, final)
    except OSError as exc:
        try:
            fs.rm(tmp)
        except Exception:
            pass
        raise RunFailure(f"bin {bin_id}: cannot write {final}: {exc}") from exc
    return final


def write_part(frame: pd.DataFrame, out: str, bin_id: int, schema: pa.Schema, run_fingerprint: str,
               report: dict[str, Any], storage_options: dict[str, Any] | None = None, *,
               rows_in: int | None = None, rows_rejected: int = 0) -> dict[str, Any]:
    """Write one bin's enriched frame as ``OUT/part-NNNNN.parquet`` with exactly ``schema``; return
    its record (also stored in the file's footer). Runs on the worker; the frame never travels back
    to the client. ``rows_in``/``rows_rejected``: the bin's input rows and the rows split off as
    bad (kept in the record so that a resumed run can add them up)."""
    fs, root = _fs(out, storage_options)
    if list(frame.columns) != schema.names:
        raise RunFailure(f"bin {bin_id}: enriched columns {list(frame.columns)} do not match the "
                         f"output schema {schema.names}")
    try:
        table = to_table(frame, schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError, TypeError) as exc:
        raise RunFailure(f"bin {bin_id}: enriched frame does not match the output schema: {exc}") from exc
    record = {"fingerprint": run_fingerprint, "bin": int(bin_id), "file": part_name(bin_id),
              "rows": int(table.num_rows),
              "rows_in": int(table.num_rows if rows_in is None else rows_in),
              "rows_rejected": int(rows_rejected), "report": report}
    table = table.replace_schema_metadata({META_KEY: json.dumps(record).encode()})
    write_table_atomic(fs, table, root, bin_id, **_writer_options(schema))
    return record


def write_success(out: str, data: dict[str, Any], storage_options: dict[str, Any] | None = None) -> str:
    """Write ``OUT/_SUCCESS.json`` (atomically) and return its path."""
    fs, root = _fs(out, storage_options)
    path = f"{root}/{SUCCESS_FILE}"
    _write_json(fs, path, data)
    return path


def part_files(out: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The complete part files of ``out``, in bin order (full paths)."""
    fs, root = _fs(out, storage_options)
    names = sorted(n for n in _listing(fs, root) if PART_PATTERN.match(n))
    return [f"{root}/{n}" for n in names]

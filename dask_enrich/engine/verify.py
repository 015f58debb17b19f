"""``dask-enrich verify OUT``: check a finished dataset against its record (``_SUCCESS.json``).

For every part file the record lists: present, the same bytes (size and CRC-32), Parquet page
checksums valid (every page read back with verification), the footer's fingerprint and bin those
of the run, the recorded rows and rows per gene, and the recorded schema. Part files the record
does not list, leftover temporary files, and rejected rows that do not add up are reported too.
A multi-model output (``OUT/<model>/``) is checked model by model.
"""
from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from .. import storage
from . import writer


def verify_output(out: str, storage_options: dict[str, Any] | None = None) -> tuple[list[str], dict[str, int]]:
    """(problems, counts) of the dataset in ``out``; no problems means it is whole and exactly
    what its run recorded. ``counts``: files and rows checked."""
    fs, root = storage.url_to_fs(out, storage_options)
    counts = {"files": 0, "rows": 0}
    if not fs.isdir(root):
        return [f"{out}: no such directory"], counts
    success = writer.read_json(out, writer.SUCCESS_FILE, storage_options)
    if success is None:
        lock = " (a run is writing it now)" if fs.exists(f"{root}/{writer.LOCK_FILE}") else ""
        return [f"{out}: no {writer.SUCCESS_FILE}: the run did not finish{lock} (continue it with "
                "--resume)"], counts
    if "models" in success:  # one dataset per model
        problems: list[str] = []
        for name, info in success["models"].items():
            found, sub = verify_output(f"{root}/{info.get('dir', name)}", storage_options)
            problems += found
            counts = {k: counts[k] + sub[k] for k in counts}
        return problems, counts
    problems = _verify_files(fs, root, success, counts)
    return problems, counts


def _verify_files(fs: Any, root: str, success: dict[str, Any], counts: dict[str, int]) -> list[str]:
    problems: list[str] = []
    files = success.get("partitions", {}).get("files", [])
    if files and not isinstance(files[0], dict):
        return [f"{root}/{writer.SUCCESS_FILE}: written by an older dask-enrich (no file hashes): "
                "nothing to verify against"]
    listed = {f["file"] for f in files}
    for name in storage.listing(fs, root):
        if writer.TMP_MARKER in name or (writer.PART_PATTERN.match(name) and name not in listed):
            problems.append(f"{root}/{name}: not in the record (a leftover or foreign file that "
                            "dataset readers would read)")
    schema = success.get("schema")
    for entry in files:
        path = f"{root}/{entry['file']}"
        if not fs.exists(path):
            problems.append(f"{path}: missing")
            continue
        record, why = writer.verify_part(fs, root, entry["file"], fingerprint=success.get("fingerprint"),
                                         record={**entry, "fingerprint": success.get("fingerprint")})
        if record is None:
            problems.append(f"{path}: {why}")
        try:
            with fs.open(path, "rb") as handle:
                # read in this thread only: Arrow's pool threads reading a Python file object can
                # abort the interpreter's exit (std::terminate, exit 134) after the report
                parquet = pq.ParquetFile(handle, page_checksum_verification=True, pre_buffer=False)
                table = parquet.read(use_threads=False)
        except Exception as exc:  # a page checksum mismatch, or an unreadable file
            problems.append(f"{path}: cannot be read back ({type(exc).__name__}: {exc})")
            continue
        if table.num_rows != entry["rows"]:
            problems.append(f"{path}: {table.num_rows:,} rows, the record says {entry['rows']:,}")
        if schema is not None and writer.schema_fields(table.schema) != schema:
            problems.append(f"{path}: its columns or types differ from the recorded schema")
        if entry.get("gene_rows") and "gene_id" in table.column_names:
            if writer.gene_rows_digest(table.column("gene_id").to_pandas()) != entry["gene_rows"]:
                problems.append(f"{path}: its rows per gene differ from the record")
        counts["files"] += 1
        counts["rows"] += table.num_rows
    written = success.get("rows", {}).get("written")
    if written is not None and not problems and counts["rows"] != written:
        problems.append(f"{root}: {counts['rows']:,} rows in the files, the record says {written:,}")
    rejected = success.get("rejected", {})
    if rejected.get("rows"):
        directory = f"{root}/{rejected.get('dir', writer.REJECTED_DIR)}"
        try:
            found = sum(pq.ParquetFile(fs.open(f"{directory}/{n}", "rb")).metadata.num_rows
                        for n in storage.listing(fs, directory) if writer.PART_PATTERN.match(n))
        except Exception as exc:
            found = -1
            problems.append(f"{directory}: cannot be read ({type(exc).__name__}: {exc})")
        if found >= 0 and found != rejected["rows"]:
            problems.append(f"{directory}: {found:,} rejected rows, the record says {rejected['rows']:,}")
    return problems

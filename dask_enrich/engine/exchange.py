"""The staged exchange: moving rows from input partitions to their bins through files on disk.

This is the engine's default way to regroup rows by bin (``--exchange staged``); Dask's own
``set_index`` shuffle on the bin id (``--exchange p2p``) is the alternative. Two task kinds:

``split_part`` (one per input partition)
    gives each row its bin id, sorts the rows by bin (stable), and writes them to
    ``STAGING/<label>-NNNNN.arrow``: an Arrow IPC file with one record batch per bin present. It
    returns only a small dict ``{bin: batch number}``.
``gather_bin`` (one per bin)
    reads that bin's batch from every staged file that has one (memory-mapped on a local
    filesystem, so only the bin's bytes are touched) and concatenates them.

Each task holds one input partition or one bin, never the whole input, so worker memory does not
grow with the input size; the staged files are deleted when the run ends.
"""
from __future__ import annotations

import uuid
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from ..io import normalise_frame
from .partition import PartitionPlan
from .writer import STAGING_DIR, os_failure


def _fs(path: str, storage_options: dict[str, Any] | None) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(path, **(storage_options or {}))


def _local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def split_part(frame: pd.DataFrame, part: int, label: str, plan: PartitionPlan,
               done: frozenset[int], staging: str, storage_options: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Write the rows of one input partition to a staged file, grouped by bin.

    Returns ``{"path": file or None, "batches": {bin: batch number}, "rows": rows staged}``; rows of
    genes outside the plan and of ``done`` bins are left out.
    """
    bins = plan.bin_of(frame["gene_id"])
    keep = bins >= 0
    if done:
        keep &= ~np.isin(bins, np.fromiter(done, dtype=np.int64))
    if not keep.all():
        frame, bins = frame[keep], bins[keep]
    if len(frame) == 0:
        return {"path": None, "batches": {}, "rows": 0}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if len(bins) > 1 and bool((bins[1:] < bins[:-1]).any()):  # not already grouped by bin
        order = np.argsort(bins, kind="stable")
        bins = bins[order]
        table = table.take(pa.array(order))
    starts = np.concatenate([[0], np.flatnonzero(bins[1:] != bins[:-1]) + 1])
    present = bins[starts]
    ends = np.append(starts[1:], len(bins))
    batch = table.combine_chunks().to_batches()[0]
    fs, root = _fs(staging, storage_options)
    path = f"{root}/{label}-{part:05d}-{uuid.uuid4().hex[:6]}.arrow"
    try:
        fs.makedirs(root, exist_ok=True)
        sink = pa.OSFile(path, "wb") if _local(fs) else fs.open(path, "wb")
        with sink, ipc.new_file(sink, table.schema) as stream:
            for start, end in zip(starts, ends):
                stream.write_batch(batch.slice(int(start), int(end - start)))
    except OSError as exc:  # full disk, read-only, ...: no partial staged file is left
        try:
            fs.rm(path)
        except Exception:
            pass
        raise os_failure(exc, path, "cannot write staged rows to") from exc
    # a URL keeps its protocol (memory://, s3://): gather_bin opens it on whichever worker runs it
    path = path if _local(fs) else fs.unstrip_protocol(path)
    return {"path": path, "batches": {int(b): i for i, b in enumerate(present)}, "rows": int(len(frame))}


def gather_bin(bin_id: int, splits: list[dict[str, Any]], meta: pd.DataFrame, label: str,
               storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """All staged rows of bin ``bin_id`` as one frame with ``meta``'s columns and dtypes."""
    batches = []
    for split in splits:
        index = split["batches"].get(bin_id)
        if index is None:
            continue
        fs, path = _fs(split["path"], storage_options)
        try:
            if _local(fs):  # the batch's buffers keep the mapping alive after this function returns
                batches.append(ipc.open_file(pa.memory_map(path, "r")).get_batch(index))
            else:
                with fs.open(path, "rb") as handle:
                    batches.append(ipc.open_file(handle).get_batch(index))
        except OSError as exc:
            raise os_failure(exc, path, "cannot read staged rows from") from exc
    if not batches:
        return meta.iloc[:0].copy()
    table = pa.Table.from_batches(batches)
    frame = table.to_pandas(split_blocks=True)
    position_dtype = meta["position"].dtype if "position" in meta.columns else np.int64
    return normalise_frame(frame[list(meta.columns)], label, position_dtype=position_dtype)


def staging_path(out: str, fingerprint: str) -> str:
    """The staging directory of a run inside its output directory."""
    return f"{str(out).rstrip('/')}/{STAGING_DIR}/{fingerprint[:12]}"


def remove_staging(out: str, storage_options: dict[str, Any] | None = None) -> None:
    """Delete ``OUT/_staging`` (staged rows of this or an interrupted run)."""
    fs, root = _fs(str(out).rstrip("/") + "/" + STAGING_DIR, storage_options)
    if fs.exists(root):
        fs.rm(root, recursive=True)

"""How rows reach their bin: the :class:`Exchange` strategies, each building its part of the graph
(one :func:`~.tasks.process_bin` per bin) and owning its task keys.

:class:`WhereRead`
    input grouped by gene (``plan.follows_input``): one task per input partition reads it and
    processes each of its bins in turn; no rows move between tasks.
:class:`WhereScanned`
    track-only selection from a scanned track whose every gene lies in one piece: one task per
    piece processes its bins from the scan's rows of the piece.
:class:`Staged` (``--exchange staged``, the default otherwise)
    rows regrouped through Arrow files on disk, then one task per bin.
:class:`P2P` (``--exchange p2p``)
    Dask's ``set_index`` shuffle on the bin id with explicit integer divisions, then one task
    per bin.

Each strategy names the keys of the tasks it builds and records what each key stands for, so
that :meth:`Exchange.bins_of_key` turns a lost task (a worker killed by it) back into its bins
or input partition for the error message (``diagnose.py``), with no key parsing elsewhere.

The staged exchange has two task kinds:

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

import abc
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from .. import storage
from ..io import normalise_frame
from .partition import PartitionPlan
from .writer import STAGING_DIR, os_failure


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
    fs, root = storage.url_to_fs(staging, storage_options)
    path = f"{root}/{label}-{part:05d}-{uuid.uuid4().hex[:6]}.arrow"
    try:
        fs.makedirs(root, exist_ok=True)
        sink = pa.OSFile(path, "wb") if storage.is_local(fs) else fs.open(path, "wb")
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
    path = path if storage.is_local(fs) else fs.unstrip_protocol(path)
    return {"path": path, "batches": {int(b): i for i, b in enumerate(present)}, "rows": int(len(frame))}


def gather_bin(bin_id: int, splits: list[dict[str, Any]], meta: pd.DataFrame, label: str,
               storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """All staged rows of bin ``bin_id`` as one frame with ``meta``'s columns and dtypes."""
    batches = []
    for split in splits:
        index = split["batches"].get(bin_id)
        if index is None:
            continue
        fs, path = storage.url_to_fs(split["path"], storage_options)
        try:
            if storage.is_local(fs):  # the batch's buffers keep the mapping alive after this function returns
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
    fs, root = storage.url_to_fs(str(out).rstrip("/") + "/" + STAGING_DIR, storage_options)
    if fs.exists(root):
        fs.rm(root, recursive=True)


# --- the strategies ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskPlace:
    """What a task of the graph stands for: its bins, and the input partition it reads."""

    bins: tuple[int, ...] = ()
    input: tuple[str, int] | None = None  # (input label, input partition)


#: A per-bin task: ``task(positions, track, ctx, bin_id) -> BinResult`` (``tasks.process_bin``).
BinTask = Callable[..., Any]


class Exchange(abc.ABC):
    """The parallel strategy of a run: :meth:`graph` builds the tasks (each computes to a list of
    ``BinResult``) and :meth:`bins_of_key` names what a task key stands for."""

    name = "exchange"

    def __init__(self, fingerprint: str) -> None:
        self.tag = fingerprint[:8]
        self._places: dict[Any, TaskPlace] = {}

    def _key(self, text: str, place: TaskPlace) -> str:
        key = f"{text}-{self.tag}"
        self._places[key] = place
        return key

    def bin_key(self, bin_id: int) -> str:
        """The key of the task that processes bin ``bin_id`` (staged, p2p)."""
        return self._key(f"enrich-bin-{bin_id}", TaskPlace((int(bin_id),)))

    def split_key(self, label: str, part: int) -> str:
        """The key of the task that stages input partition ``part`` (staged)."""
        return self._key(f"split-{label}-{part}", TaskPlace(input=(label, int(part))))

    def part_key(self, label: str, part: int, bins: Any, chunk: int | None = None) -> str:
        """The key of the task that reads input partition ``part`` and processes its ``bins``
        (where read; ``chunk``: which of the tasks sharing that partition's bins)."""
        suffix = "" if chunk is None else f"-{chunk}"
        return self._key(f"enrich-write-{label}-{part}{suffix}",
                         TaskPlace(tuple(int(b) for b in bins), (label, int(part))))

    def bins_of_key(self, key: Any) -> TaskPlace | None:
        """The bins and input partition of a task key of this graph, or None (unknown)."""
        if isinstance(key, bytes):
            key = key.decode()
        try:
            place = self._places.get(key)
        except TypeError:  # an unhashable key
            return None
        if place is None and isinstance(key, tuple) and len(key) >= 2 \
                and isinstance(key[-1], (int, np.integer)):
            for label in ("positions", "track"):  # a read task of ``io.read_dask`` (``read-<label>``)
                if str(key[0]).startswith(f"read-{label}-"):
                    return TaskPlace(input=(label, int(key[-1])))
        return place

    @abc.abstractmethod
    def graph(self, inputs: Any, ctx: Any, task: BinTask) -> list[Any]:
        """The run's tasks (``dask.delayed``), one list of ``BinResult`` each: ``inputs`` an
        ``inputs.RunInputs``, ``ctx`` the ``RunContext``, ``task`` ``tasks.process_bin``."""


def _where_read_part(read: Callable[[Any], pd.DataFrame], piece: Any, part: int, ctx: Any,
                     track_only: bool, task: BinTask, chunk: Any = None) -> list[Any]:
    """Read one input partition, then process each of its bins (input grouped by gene), or those
    of ``chunk`` (some of them): one task, so the partition is in memory only while its own bins
    are worked on, one bin at a time."""
    frame = read(piece)
    return (_part_bins(None, frame, part, ctx, task, chunk) if track_only
            else _part_bins(frame, None, part, ctx, task, chunk))


def _part_bins(positions: pd.DataFrame | None, track: pd.DataFrame | None, part: int, ctx: Any,
               task: BinTask, chunk: Any = None) -> list[Any]:
    """Process each bin of input partition ``part`` (or those of ``chunk``) from that partition's
    rows (of the positions, of the track), one bin at a time."""
    by_bin = {}
    for label, frame in (("positions", positions), ("track", track)):
        if frame is None:
            continue
        bins = ctx.plan.bin_of(frame["gene_id"])
        if len(bins) > 1 and bool((bins[1:] < bins[:-1]).any()):  # genes not contiguous: group rows
            order = np.argsort(bins, kind="stable")
            frame, bins = frame.take(order), bins[order]
        by_bin[label] = (frame, bins)
    results = []
    for bin_id in ctx.plan.bins_of_part(part) if chunk is None else chunk:  # one iteration per bin
        if bin_id in ctx.done:
            continue
        rows = {}
        for label, (frame, bins) in by_bin.items():
            start, end = np.searchsorted(bins, [bin_id, bin_id + 1])
            rows[label] = frame.iloc[start:end]
        results.append(task(rows.get("positions"), rows.get("track"), ctx, int(bin_id)))
    return results


def balanced_chunks(bins: np.ndarray, rows: np.ndarray, n: int) -> list[np.ndarray]:
    """``bins`` (with ``rows`` each) cut into at most ``n`` consecutive runs of about equal rows,
    none empty."""
    n = max(1, min(int(n), len(bins)))
    if n == 1:
        return [np.asarray(bins)]
    cum = np.cumsum(rows, dtype=np.float64)
    target = cum[-1] * np.arange(1, n) / n
    after = np.clip(np.searchsorted(cum, target), 1, len(bins) - 1)  # first run end >= target
    nearer = np.abs(cum[after - 1] - target) <= np.abs(cum[after] - target)
    cuts = np.unique(np.where(nearer, after, after + 1).clip(1, len(bins) - 1))
    return np.split(np.asarray(bins), cuts)


def where_read_tasks(part_bins: list[np.ndarray], bin_rows: np.ndarray, slots: int
                     ) -> list[list[np.ndarray]]:
    """How the pending bins of each input partition (``part_bins``) are shared among where-read
    tasks on ``slots`` worker threads: one task per partition, except that when the partitions do
    not divide evenly among the slots, the last ``len(part_bins) % slots`` are each cut into
    ``slots`` tasks of about equal rows (each reads its partition, then its bins), so that no
    slot is left idle while another works through a whole partition (5 partitions on 2 slots:
    2.5 instead of 3 partitions' time)."""
    split = len(part_bins) % slots if slots > 1 else 0
    return [balanced_chunks(bins, bin_rows[bins], slots) if i >= len(part_bins) - split else [bins]
            for i, bins in enumerate(part_bins)]


def _part_tasks(ctx: Any, parts: int, slots: int) -> list[tuple[int, np.ndarray, int | None]]:
    """The where-read (where-scanned) tasks of input partitions ``0..parts-1``: (partition, its
    pending bins, None) for a task of the whole partition, (partition, some of its bins, i) for
    the i-th task sharing it (:func:`where_read_tasks`); partitions of complete bins left out."""
    pending = []
    for p in range(parts):
        bins = np.array([b for b in ctx.plan.bins_of_part(p).tolist() if b not in ctx.done],
                        dtype=np.int64)
        if len(bins):
            pending.append((p, bins))
    shares = where_read_tasks([bins for _, bins in pending], ctx.plan.bin_rows, slots)
    out: list[tuple[int, np.ndarray, int | None]] = []
    for (p, bins), chunks in zip(pending, shares):
        out += [(p, bins, None)] if len(chunks) == 1 else [(p, c, i) for i, c in enumerate(chunks)]
    return out


class _WherePart(Exchange):
    """The bins processed where their input partition is (:class:`WhereRead`,
    :class:`WhereScanned`): one task per partition, a remainder of partitions shared among
    ``slots`` tasks each (:func:`where_read_tasks`), those run last."""

    def __init__(self, fingerprint: str, slots: int = 1) -> None:
        super().__init__(fingerprint)
        self.slots = max(1, int(slots))

    def _tasks(self, ctx: Any, parts: int, label: str, make: Callable[..., Any]) -> list[Any]:
        """``make(p, chunk, key)`` for each task of :func:`_part_tasks` (chunk None: every bin)."""
        import dask

        tasks = []
        for p, bins, i in _part_tasks(ctx, parts, self.slots):
            if i is None:
                tasks.append(make(p, None, self.part_key(label, p, bins)))
                continue
            with dask.annotate(priority=-1):  # after the whole partitions: the shorter last
                tasks.append(make(p, bins.tolist(), self.part_key(label, p, bins, i)))
        return tasks


class WhereRead(_WherePart):
    """Input grouped by gene: one task per input partition reads it (the same pieces as the plan's
    pass over ``gene_id``) and processes its bins; partitions of complete bins only are skipped."""

    name = "where-read"

    def graph(self, inputs: Any, ctx: Any, task: BinTask) -> list[Any]:
        import dask

        label, reader, pieces = inputs.sources.pieces()
        process = dask.delayed(_where_read_part, pure=True)
        reader_key = dask.delayed(reader, pure=True, traverse=False)
        ctx_key = dask.delayed(ctx, pure=True, traverse=False)
        track_only = inputs.sources.track_only
        return self._tasks(ctx, len(pieces), label, lambda p, chunk, key: process(
            reader_key, pieces[p], p, ctx_key, track_only, task, chunk, dask_key_name=key))


class WhereScanned(_WherePart):
    """A scanned track (track-only selection) whose every gene lies in one piece: one task per
    piece takes that piece's selected and context rows (the scan's partitions) and processes its
    bins (packed within the piece); nothing is staged."""

    name = "where-scanned"

    def graph(self, inputs: Any, ctx: Any, task: BinTask) -> list[Any]:
        import dask

        process = dask.delayed(_part_bins, pure=True)
        ctx_key = dask.delayed(ctx, pure=True, traverse=False)
        positions, track = inputs.positions.to_delayed(), inputs.track.to_delayed()
        return self._tasks(ctx, len(positions), "track", lambda p, chunk, key: process(
            positions[p], track[p], p, ctx_key, task, chunk, dask_key_name=key))


def _one_bin(positions: pd.DataFrame | None, track: pd.DataFrame | None, ctx: Any, bin_id: int,
             task: BinTask) -> list[Any]:
    return [task(positions, track, ctx, bin_id)]


def _gather_one_bin(bin_id: int, staged: dict[str, tuple[list, pd.DataFrame]], ctx: Any,
                    task: BinTask) -> list[Any]:
    """Gather one bin's staged rows (of the positions, of the track) and process it."""
    rows = {label: gather_bin(bin_id, splits, meta, label, ctx.storage_options)
            for label, (splits, meta) in staged.items()}
    return _one_bin(rows.get("positions"), rows.get("track"), ctx, bin_id, task)


class Staged(Exchange):
    """Each input partition written once, grouped by bin, under ``OUT/_staging`` (``split_part``);
    each bin's task reads its slices back (``gather_bin``) and processes the bin."""

    name = "staged"

    def graph(self, inputs: Any, ctx: Any, task: BinTask) -> list[Any]:
        import dask

        staging = staging_path(ctx.out, ctx.fingerprint)
        split = dask.delayed(split_part, pure=True)
        plan_key = dask.delayed(ctx.plan, pure=True, traverse=False)
        staged = {}
        for label in ("positions", "track"):
            frame = inputs.frame(label)
            if frame is None:
                continue
            splits = []
            for i, part in enumerate(frame.to_delayed()):
                self._places[part.key] = TaskPlace(input=(label, i))
                splits.append(split(part, i, label, plan_key, ctx.done, staging, ctx.storage_options,
                                    dask_key_name=self.split_key(label, i)))
            staged[label] = (splits, frame._meta)
        process = dask.delayed(_gather_one_bin, pure=True)
        ctx_key = dask.delayed(ctx, pure=True, traverse=False)
        return [process(b, staged, ctx_key, task, dask_key_name=self.bin_key(b))
                for b in range(ctx.plan.n_bins) if b not in ctx.done]


def _assign_bins(frame: pd.DataFrame, ctx: Any) -> pd.DataFrame:
    """Add the bin id of each row; drop rows of genes outside the plan or of complete bins."""
    from .tasks import BIN

    bins = ctx.plan.bin_of(frame["gene_id"])
    keep = bins >= 0
    if ctx.done:
        keep &= ~np.isin(bins, np.fromiter(ctx.done, dtype=np.int64))
    out = frame[keep] if not keep.all() else frame.copy()
    out[BIN] = bins[keep]
    return out


class P2P(Exchange):
    """Dask's ``set_index`` shuffle on the bin id (``shuffle_method="p2p"``) with the plan's integer
    divisions, so that partition i holds exactly the rows of bin i; then one task per bin."""

    name = "p2p"

    def graph(self, inputs: Any, ctx: Any, task: BinTask) -> list[Any]:
        import dask

        from .tasks import BIN

        ctx_key = dask.delayed(ctx, pure=True, traverse=False)
        parts = {}
        for label in ("positions", "track"):
            frame = inputs.frame(label)
            if frame is None:
                continue
            with_bins = frame.map_partitions(_assign_bins, ctx_key,
                                             meta=frame._meta.assign(**{BIN: np.int64(0)}))
            by_bin = with_bins.set_index(BIN, divisions=list(ctx.plan.divisions), shuffle_method="p2p")
            parts[label] = by_bin.to_delayed()
        process = dask.delayed(_one_bin, pure=True)
        none = [None] * ctx.plan.n_bins
        return [process(parts.get("positions", none)[b], parts.get("track", none)[b], ctx_key, b,
                        task, dask_key_name=self.bin_key(b))
                for b in range(ctx.plan.n_bins) if b not in ctx.done]


def choose_exchange(plan: PartitionPlan, exchange_method: str, fingerprint: str,
                    scanned: bool = False, slots: int = 1) -> Exchange:
    """The strategy of a run: where read (``scanned``: where scanned) when the plan follows the
    input, else staged or p2p (``slots``: the cluster's worker threads, how where-read tasks share
    partitions)."""
    if plan.follows_input:
        return (WhereScanned if scanned else WhereRead)(fingerprint, slots)
    return P2P(fingerprint) if exchange_method == "p2p" else Staged(fingerprint)

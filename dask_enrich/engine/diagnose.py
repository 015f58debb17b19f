"""Failure diagnosis: a task that killed its worker, a lost scheduler, workers that cannot start.

The task keys are the exchange's (``exchange.Exchange.bins_of_key`` turns a key back into its
bins or input partition); this module only words the message: the bins' genes and rows, largest
first, and the workers' memory limit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import RunFailure


def _genes_of_bins(plan: Any, bins: Any) -> str:
    """'(genes A (n rows), ...; N rows in all)': the largest genes of these bins first."""
    in_bins = np.flatnonzero(np.isin(np.asarray(plan.bins), np.asarray(bins)))
    sizes = np.asarray(plan.sizes)[in_bins]
    order = in_bins[np.argsort(-sizes, kind="stable")]
    shown = ", ".join(f"{plan.genes[i]} ({int(plan.sizes[i]):,} rows)" for i in order[:5])
    more = f" and {len(order) - 5} more" if len(order) > 5 else ""
    return f"(gene{'s' if len(order) > 1 else ''} {shown}{more}; {int(sizes.sum()):,} rows in all)"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}"
        value /= 1024
    return f"{value:,.0f} TiB"  # pragma: no cover


def worker_memory_limits(client: Any) -> list[int]:
    """The memory limit of each worker the scheduler knows (0 = none), or [] when unknown."""
    try:
        workers = client.scheduler_info()["workers"].values()
        return [int(w.get("memory_limit") or 0) for w in workers]
    except Exception:
        return []


def killed_worker_failure(exc: BaseException, plan: Any, exchange: Any,
                          memory_limits: list[int]) -> RunFailure:
    """A RunFailure for a task that killed its worker(s) repeatedly, naming the bins' genes and
    their rows (the usual cause: one gene too large for a worker's memory). ``exchange`` (an
    :class:`~.exchange.Exchange`) turns the task's key back into its bins or input partition."""
    key = getattr(exc, "task", None)
    place = exchange.bins_of_key(key)
    limits = [m for m in memory_limits if m > 0]
    limit = (f"worker memory limit {_bytes(min(limits))}" if limits
             else "worker memory limit unknown")
    bins = [b for b in (place.bins if place else ()) if 0 <= b < plan.n_bins]
    if place is not None and place.input is not None and bins:  # enriched where read
        label, part = place.input
        where = (f"input partition {part} of the {label} (enriched where read) with "
                 f"partition{'s' if len(bins) > 1 else ''} {', '.join(map(str, bins))} ")
        where += _genes_of_bins(plan, bins)
    elif place is not None and place.input is not None:
        where = (f"reading partition {place.input[1]} of the {place.input[0]} input (one file or "
                 "block of it; a gzip CSV file is read whole)")
    elif not bins:
        where = f"task {key!r}"
    else:
        where = f"partition{'s' if len(bins) > 1 else ''} {', '.join(map(str, bins))} " \
            + _genes_of_bins(plan, bins)
    return RunFailure(
        f"{where} killed its worker repeatedly; it most likely ran out of memory ({limit}). A gene "
        "is never split across partitions, so --partition-rows cannot make it smaller: raise "
        "--memory-limit (or start the workers with more memory), or leave the gene out "
        f"[{type(exc).__name__}: {exc}]")

def result(future: Any, client: Any, plan: Any, exchange: Any, futures: Any = (),
           out: str | None = None, storage_options: dict[str, Any] | None = None) -> Any:
    """``future.result()``; a KilledWorker becomes a RunFailure naming the bins' genes. On any
    failure the run's other ``futures`` are cancelled and its staged rows (``OUT/_staging``)
    deleted, best effort, before the error goes up."""
    from distributed import KilledWorker

    try:
        return future.result()
    except BaseException as exc:
        lost = scheduler_lost(client, exc)
        if not lost:  # an interrupt does not wait for running tasks
            _abandon(client, futures, out, storage_options, wait=isinstance(exc, Exception))
        if isinstance(exc, KilledWorker):
            raise killed_worker_failure(exc, plan, exchange, worker_memory_limits(client)) from exc
        if lost:
            raise lost_scheduler_failure(exc) from exc
        raise


def scheduler_lost(client: Any, exc: BaseException) -> bool:
    """Whether ``exc`` means the client lost its scheduler (the connection closed, the
    futures cancelled with it), not a failure of a task."""
    import asyncio
    import concurrent.futures

    from distributed.comm.core import CommClosedError

    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return False
    if isinstance(exc, (CommClosedError, asyncio.CancelledError, concurrent.futures.CancelledError)):
        return True
    status = str(getattr(client, "status", "running"))
    return isinstance(exc, (OSError, TimeoutError)) and status not in ("running", "connecting")


def lost_scheduler_failure(exc: BaseException) -> "RunFailure":
    """The RunFailure of a run whose scheduler went away (killed, its machine lost)."""
    from ..errors import SchedulerLost

    return SchedulerLost("scheduler lost; rerun with --resume (the complete partitions are kept; the "
                      f"client lost its connection to the Dask scheduler: {type(exc).__name__})")


#: A worker process uses about 150 MiB at rest (Python, NumPy, pandas, pyarrow, distributed and
#: this package imported); below this limit it is paused (80%) or killed before any task runs.
MIN_WORKER_MEMORY = 256 * 2**20


def check_memory_limit(memory_limit: Any, workers: int) -> None:
    """RunFailure when a LocalCluster worker's memory limit is too small to start a worker
    (else the run would wait forever for paused workers)."""
    if memory_limit in (None, 0, "0", "auto"):
        return
    from dask.utils import parse_bytes

    try:
        limit = parse_bytes(memory_limit) if isinstance(memory_limit, str) else int(memory_limit)
    except (ValueError, TypeError):
        from ..errors import ConfigError

        raise ConfigError(f"--memory-limit {memory_limit!r}: expected a size such as 4GB, "
                          "'auto' or 0") from None
    if 0 < limit < MIN_WORKER_MEMORY:
        raise RunFailure(f"--memory-limit {memory_limit} ({_bytes(limit)}) is below what a worker "
                         f"process needs to start (about 150 MiB at rest; give at least "
                         f"{_bytes(MIN_WORKER_MEMORY)}, or 0 for no limit)")


def check_workers_running(client: Any) -> None:
    """RunFailure when every worker of the cluster is paused already before any task (its memory
    at rest above its pause threshold: the run would wait forever)."""
    try:
        workers = list(client.scheduler_info()["workers"].values())
    except Exception:
        return
    if workers and all(str(w.get("status", "")).endswith("paused") for w in workers):
        limits = [int(w.get("memory_limit") or 0) for w in workers]
        used = [int((w.get("metrics") or {}).get("memory") or 0) for w in workers]
        raise RunFailure(f"every worker is paused before any task: its memory at rest "
                         f"({_bytes(max(used))}) is near its memory limit ({_bytes(min(limits))}); "
                         "start the workers with a larger --memory-limit")


def _abandon(client: Any, futures: Any, out: str | None,
             storage_options: dict[str, Any] | None, wait: bool = True) -> None:
    """Cancel a failed run's remaining tasks and delete its staged rows (errors ignored)."""
    try:
        if futures:
            client.cancel(list(futures))
            if wait:
                _wait_idle(client)
    except Exception:
        pass
    if out is not None:
        from . import exchange

        try:
            exchange.remove_staging(out, storage_options)
        except Exception:
            pass


def _executing(dask_worker: Any = None) -> int:
    return len(dask_worker.state.executing) if dask_worker is not None else 0


def _wait_idle(client: Any, timeout: float = 15.0) -> None:
    """Wait (at most ``timeout`` s) until no worker still executes a task: a cancelled task that
    was running goes on to its end, and may write its part after the run has failed."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.run(_executing).values()):
            return
        time.sleep(0.1)


def cluster_failure(client: Any, exc: Exception) -> Exception:
    """The error a run reports for an unexpected failure on the cluster: a lost scheduler, an I/O
    error on a file of the run, a worker killed repeatedly (RunFailures), else ``exc`` itself."""
    from distributed import KilledWorker

    from .writer import os_failure

    if scheduler_lost(client, exc):
        return lost_scheduler_failure(exc)
    if isinstance(exc, OSError) and getattr(exc, "filename", None):  # a file of the run
        return os_failure(exc, exc.filename, "I/O error on")
    if isinstance(exc, KilledWorker):
        return RunFailure(f"a worker died repeatedly while running a task ({exc}); it may have "
                          "run out of memory: lower --partition-rows or raise --memory-limit")
    return exc

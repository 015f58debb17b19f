"""Which Dask cluster a run uses, and the LocalCluster's sizing from Dask's configuration.

In order: a ``client`` passed in; ``scheduler`` (an address, ``--scheduler``); ``scheduler_file``
(Dask's JSON scheduler file, ``--scheduler-file``, as written by ``dask scheduler
--scheduler-file``); Dask's own ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``, which
the dask-kubernetes operator sets in a DaskJob's runner); else a LocalCluster on this machine
sized by ``enrich.workers`` (default: Dask's CPU count), ``enrich.threads-per-worker`` and
``enrich.memory-limit``, listening on ``enrich.host`` (127.0.0.1). The connect timeout is Dask's
``distributed.comm.timeouts.connect``.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import dask.system

from .. import settings
from ..errors import ConfigError, RunFailure
from ..logs import LOGGER, surface_worker_warnings


@dataclass(frozen=True)
class LocalSpec:
    """The LocalCluster a run starts when it is given no cluster."""

    workers: int
    threads_per_worker: int
    memory_limit: str | int | None
    host: str


def local_spec(workers: int | None = None, threads_per_worker: int | None = None,
               memory_limit: str | int | None = None, host: str | None = None) -> LocalSpec:
    """Explicit values, else ``enrich.*`` of Dask's config; workers default to Dask's CPU count
    (``dask.system.CPU_COUNT``: CPU affinity and cgroup quotas included). A memory limit of 0
    (or "0"/"none") means no limit."""
    workers = settings.get("workers", workers) or dask.system.CPU_COUNT
    threads = settings.get("threads-per-worker", threads_per_worker)
    if workers < 1 or threads < 1:
        raise ConfigError("--workers and --threads-per-worker must be at least 1")
    memory = settings.get("memory-limit", memory_limit)
    if str(memory).strip().lower() in ("0", "none"):
        memory = 0
    return LocalSpec(int(workers), int(threads), memory, settings.get("host", host))


def existing_scheduler(scheduler: str | None = None,
                       scheduler_file: str | None = None) -> dict[str, str] | None:
    """How to reach an existing scheduler: ``{"address": ...}`` or ``{"scheduler_file": ...}``
    (arguments first, then Dask's ``scheduler-address``), or None for a LocalCluster."""
    if scheduler and scheduler_file:
        raise ConfigError("give either --scheduler or --scheduler-file, not both")
    if scheduler:
        return {"address": str(scheduler)}
    if scheduler_file:
        if not Path(scheduler_file).is_file():
            raise ConfigError(f"scheduler file {scheduler_file}: no such file (written by "
                              "`dask scheduler --scheduler-file F`)")
        return {"scheduler_file": str(scheduler_file)}
    address = dask.config.get("scheduler-address", None)
    return {"address": str(address)} if address else None


def connect(scheduler: str | None = None, scheduler_file: str | None = None):
    """A ``distributed.Client`` of the existing scheduler :func:`existing_scheduler` finds, or
    None. Raises :class:`RunFailure` naming the address when it cannot be reached."""
    from distributed import Client

    target = existing_scheduler(scheduler, scheduler_file)
    if target is None:
        return None
    where = target.get("address") or f"the scheduler file {target['scheduler_file']}"
    source = "" if scheduler or scheduler_file else " (Dask's scheduler-address, DASK_SCHEDULER_ADDRESS)"
    LOGGER.debug("connecting to the Dask scheduler at %s%s", where, source)
    try:
        return Client(**target)
    except (OSError, TimeoutError, ValueError, KeyError) as exc:
        raise RunFailure(f"cannot reach the Dask scheduler at {where}{source}: {exc}") from None


def make_client(scheduler: str | None = None, scheduler_file: str | None = None, *,
                processes: bool = True, **local: Any):
    """``(client, own_cluster)``: a client of an existing scheduler (``own_cluster`` None), or of
    a new LocalCluster (:func:`local_spec` of ``local``) that the caller closes."""
    from distributed import Client

    client = connect(scheduler, scheduler_file)
    if client is not None:
        return client, None
    spec = local_spec(**local)
    from .rejects import check_memory_limit

    check_memory_limit(spec.memory_limit, spec.workers)  # too small to start a worker: exit 4 now
    LOGGER.debug("starting a LocalCluster: %d worker(s) x %d thread(s), memory limit %s, on %s",
                 spec.workers, spec.threads_per_worker, spec.memory_limit, spec.host)
    cluster = make_local_cluster(spec.workers, spec.threads_per_worker, spec.memory_limit,
                                 processes, host=spec.host)
    client = Client(cluster)
    if processes:  # its workers' memory warnings, silenced with distributed's chatter, once each
        surface_worker_warnings(client)
    return client, cluster


#: glibc malloc settings of LocalCluster worker processes. Each task allocates and frees a few
#: hundred MB of large arrays; with Dask's default (trim at 64 KiB, large blocks mmap'ed) every one
#: of them is a fresh mmap whose pages the kernel must zero and fault in, which cost as much system
#: time as the enrichment's own user time. Keeping freed blocks in the heap for reuse cuts the
#: worker CPU time by about a third; the heap stays bounded by the largest task, so the peak RSS
#: stays flat with the input size (see benchmarks/bench_engine.py).
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


#: Interface the LocalCluster's scheduler, workers and dashboard listen on, unless asked otherwise.
LOCAL_HOST = "127.0.0.1"


def make_local_cluster(workers: int = 2, threads_per_worker: int = 1,
                       memory_limit: str | int | None = "auto", processes: bool = True,
                       host: str = LOCAL_HOST):
    """The engine's LocalCluster: ``workers`` processes x ``threads_per_worker`` threads, quiet
    logs, a dashboard on a free port, and :data:`WORKER_MALLOC_ENV` in each worker process.
    Scheduler, workers and dashboard listen on ``host`` only (default 127.0.0.1: nothing is
    reachable from other machines; "0.0.0.0" for every interface)."""
    import dask
    from distributed import LocalCluster

    if workers < 1 or threads_per_worker < 1:
        raise ConfigError("--workers and --threads-per-worker must be at least 1")
    for noisy in ("distributed.shuffle", "distributed.shuffle._scheduler_plugin"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_MALLOC_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), _workers_ignore_sigint():
        return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                            memory_limit=memory_limit, processes=processes,
                            host=host if processes else None,  # threads: in-process comms
                            dashboard_address=f"{host}:0", silence_logs=logging.CRITICAL)


@contextlib.contextmanager
def _workers_ignore_sigint():
    """SIGINT ignored while the worker processes start, so that they inherit it ignored: Ctrl-C
    (sent to the whole process group) then interrupts the client alone, which closes the cluster,
    instead of printing a traceback from every worker. Only from the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

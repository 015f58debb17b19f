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
    from .run import make_local_cluster

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

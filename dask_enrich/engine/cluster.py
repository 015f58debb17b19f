"""Which Dask cluster a run uses, and the LocalCluster's sizing from Dask's configuration.

In order: a ``client`` passed in; ``scheduler`` (an address, ``--scheduler``); ``scheduler_file``
(Dask's JSON scheduler file, ``--scheduler-file``, as written by ``dask scheduler
--scheduler-file``); Dask's own ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``, which
the dask-kubernetes operator sets in a DaskJob's runner); else a LocalCluster on this machine
sized by ``enrich.workers`` (default: Dask's CPU count), ``enrich.threads-per-worker`` and
``enrich.memory-limit``, listening on ``enrich.host`` (127.0.0.1). The connect timeout is Dask's
``distributed.comm.timeouts.connect``.

The LocalCluster's worker processes are forked from a forkserver (``enrich.worker-start``, default
``forkserver``; ``spawn`` is distributed's own way) that imported what a worker needs once
(:data:`WORKER_PRELOAD`): a worker is ready in milliseconds instead of importing distributed,
pandas, pyarrow, dask.dataframe and the engine for about a second of CPU each. The command line
starts that forkserver as soon as it knows it will start a LocalCluster (:func:`start_forkserver`),
so its imports run beside the client's own. The environment a worker starts with stays the one a
spawned worker gets: the forkserver starts with distributed's ``pre-spawn-environ`` and
:data:`WORKER_MALLOC_ENV`, variables set since are given to each worker when it starts, and a
process whose ``sys.path`` changed (or that removed variables) since spawns its workers.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import dask.system

from .. import options as defaults
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
    a new LocalCluster (:func:`local_spec` of ``local``) that the caller closes. The one
    :func:`prestart_client` began with the same arguments, when there is one (its error, if it
    failed)."""
    from distributed import Client

    prestarted = _take_prestarted((scheduler, scheduler_file, processes, local))
    if prestarted is not None:
        return prestarted
    client = connect(scheduler, scheduler_file)
    if client is not None:
        return client, None
    spec = local_spec(**local)
    from .diagnose import check_memory_limit

    check_memory_limit(spec.memory_limit, spec.workers)  # too small to start a worker: exit 4 now
    LOGGER.debug("starting a LocalCluster: %d worker(s) x %d thread(s), memory limit %s, on %s",
                 spec.workers, spec.threads_per_worker, spec.memory_limit, spec.host)
    cluster = make_local_cluster(spec.workers, spec.threads_per_worker, spec.memory_limit,
                                 processes, host=spec.host)
    client = Client(cluster)
    if processes:  # its workers' memory warnings, silenced with distributed's chatter, once each
        surface_worker_warnings(client)
    return client, cluster


#: The client :func:`prestart_client` is making: its arguments, thread and outcome.
_prestarted: dict[str, Any] = {}


def prestart_client(scheduler: str | None = None, scheduler_file: str | None = None, *,
                    processes: bool = True, **local: Any) -> bool:
    """Begin :func:`make_client` of these arguments in a background thread, when it will start a
    LocalCluster whose workers are forked from the forkserver (a spawned worker inherits SIGINT
    ignored only when started from the main thread); returns whether it began. The cluster then
    starts while the caller reads footers and plans; the :func:`make_client` call with the same
    arguments takes it (or raises its error, at that point). :func:`discard_prestarted` closes
    what no call took."""
    discard_prestarted()
    try:
        if existing_scheduler(scheduler, scheduler_file) is not None or not processes or not (
                start_forkserver() and _forkserver_changes() is not None):
            return False
    except Exception:  # noqa: BLE001 - make_client raises it in its turn
        return False
    key = (scheduler, scheduler_file, processes, local)
    import distributed  # noqa: F401 - imported here, not by the thread beside the caller's imports

    def start() -> None:
        try:
            _prestarted["result"] = make_client(scheduler, scheduler_file, processes=processes, **local)
        except BaseException as exc:  # noqa: BLE001 - raised by the make_client that takes it
            _prestarted["error"] = exc

    thread = threading.Thread(target=start, name="dask-enrich cluster start", daemon=True)
    _prestarted.update(key=key, thread=thread)
    thread.start()
    return True


def _take_prestarted(key: tuple) -> tuple[Any, Any] | None:
    """The prestarted ``(client, cluster)`` of ``key`` (waiting for it), or None."""
    if not _prestarted or _prestarted["key"] != key or _prestarted["thread"] is threading.current_thread():
        return None
    _prestarted["thread"].join()
    taken = dict(_prestarted)
    _prestarted.clear()
    if "error" in taken:
        raise taken["error"]
    return taken["result"]


def discard_prestarted() -> None:
    """Close the client and cluster :func:`prestart_client` made that no call took (waiting for
    its start to end)."""
    if not _prestarted:
        return
    _prestarted["thread"].join()
    left = dict(_prestarted)
    _prestarted.clear()
    client, own_cluster = left.get("result", (None, None))
    for closing in (client, own_cluster):
        if closing is not None:
            with contextlib.suppress(Exception):
                closing.close()


#: glibc malloc settings of LocalCluster worker processes. Each task allocates and frees a few
#: hundred MB of large arrays; with Dask's default (trim at 64 KiB, large blocks mmap'ed) every one
#: of them is a fresh mmap whose pages the kernel must zero and fault in, which cost as much system
#: time as the enrichment's own user time. Keeping freed blocks in the heap for reuse cuts the
#: worker CPU time by about a third; the heap stays bounded by the largest task, so the peak RSS
#: stays flat with the input size (see benchmarks/bench_engine.py). Arrow's buffers use the same
#: heap (``ARROW_DEFAULT_MEMORY_POOL=system``): its default pool, mimalloc, hands freed pages back
#: to the kernel, and the next read faults them in again (on the positions path about a third of
#: the workers' system time; 13% of their CPU time, the same peak RSS).
#: The tasks that read whole track pieces take mimalloc while they run
#: (``trackscan_stage.scan_memory_pool``): there it is the cheaper of the two.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                     "ARROW_DEFAULT_MEMORY_POOL": "system"}


#: Interface the LocalCluster's scheduler, workers and dashboard listen on, unless asked otherwise.
LOCAL_HOST = defaults.DEFAULT_HOST


def make_local_cluster(workers: int = 2,
                       threads_per_worker: int = defaults.DEFAULT_THREADS_PER_WORKER,
                       memory_limit: str | int | None = defaults.DEFAULT_MEMORY_LIMIT, processes: bool = True,
                       host: str = LOCAL_HOST):
    """The engine's LocalCluster: ``workers`` processes x ``threads_per_worker`` threads, quiet
    logs, a dashboard on a free port, and :data:`WORKER_MALLOC_ENV` in each worker process.
    Scheduler, workers and dashboard listen on ``host`` only (default 127.0.0.1: nothing is
    reachable from other machines; "0.0.0.0" for every interface). Worker processes are forked
    from the forkserver when ``enrich.worker-start`` is ``forkserver`` (module docstring)."""
    import dask
    from distributed import LocalCluster

    if workers < 1 or threads_per_worker < 1:
        raise ConfigError("--workers and --threads-per-worker must be at least 1")
    for noisy in ("distributed.shuffle", "distributed.shuffle._scheduler_plugin"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_MALLOC_ENV}
    options: dict[str, Any] = {}
    method = "spawn"
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), _workers_ignore_sigint():
        if processes and start_forkserver():
            since = _forkserver_changes()
            if since is not None:
                method = "forkserver"
                if since:  # set in each worker process before the worker starts
                    options["env"] = since
        LOGGER.debug("LocalCluster worker processes: %s", method)
        with dask.config.set({"distributed.worker.multiprocessing-method": method}):
            return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                memory_limit=memory_limit, processes=processes,
                                host=host if processes else None,  # threads: in-process comms
                                dashboard_address=f"{host}:0", silence_logs=logging.CRITICAL,
                                **options)


#: What the forkserver imports before it forks any worker: the modules every worker needs
#: (distributed, pandas, pyarrow, dask.dataframe, the engine), then ``gc.freeze()``.
WORKER_PRELOAD = ("dask_enrich.engine.worker_preload",)
#: Imported too by the forkserver of a run that scores (``score``, ``--score``): the library the
#: xgboost model formats load with (the bundled demo model's), about 1.5 s of CPU that each worker
#: would otherwise spend at its first bin, all workers at once. Left out when not installed.
SCORING_PRELOAD = ("xgboost",)

#: The forkserver this process started: the ``sys.path`` and environment it started with.
_forkserver: dict[str, Any] = {}


def worker_start_method() -> str:
    """``enrich.worker-start``: ``forkserver`` (where the platform has it) or ``spawn``."""
    import multiprocessing

    method = settings.get("worker-start")
    return method if method in multiprocessing.get_all_start_methods() else "spawn"


def start_forkserver(scoring: bool = False) -> bool:
    """Start the forkserver the LocalCluster's workers are forked from, unless it runs already or
    ``enrich.worker-start`` is ``spawn``; returns at once (its imports run in the background).
    ``scoring``: it imports :data:`SCORING_PRELOAD` too. False when workers are to be spawned
    (that setting, or a forkserver started by other code, whose environment is unknown)."""
    if worker_start_method() != "forkserver":
        return False
    import multiprocessing
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if _forkserver:
        if pid == _forkserver["pid"]:
            forkserver.ensure_running()  # restarted if it died (with distributed's preload)
            return getattr(server, "_forkserver_pid", None) == _forkserver["pid"]
        return False
    if pid is not None:
        return False
    environ = _pre_spawn_environ()
    ctx = multiprocessing.get_context("forkserver")
    import importlib.util

    extra = [m for m in SCORING_PRELOAD if importlib.util.find_spec(m) is not None] if scoring else []
    ctx.set_forkserver_preload([*WORKER_PRELOAD, *extra])
    saved = {k: os.environ.get(k) for k in environ}
    try:
        os.environ.update(environ)
        with _workers_ignore_sigint():  # the workers inherit SIGINT ignored from the forkserver
            forkserver.ensure_running()
        _forkserver.update(pid=getattr(server, "_forkserver_pid", None), path=_import_path(),
                           environ=dict(os.environ))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


def _pre_spawn_environ() -> dict[str, str]:
    """The variables a nanny sets before it spawns a worker (distributed's
    ``distributed.nanny.pre-spawn-environ``, the environment's values first, and its fixed
    ``PYTHONHASHSEED``), with :data:`WORKER_MALLOC_ENV` in that setting; read from distributed's shipped YAML when
    distributed is not imported yet (its defaults are merged into Dask's config at its import)."""
    import dask.config

    key = "distributed.nanny.pre-spawn-environ"
    if "distributed" in sys.modules:
        config = dask.config.get(key, {})
    else:
        import importlib.util

        import yaml

        spec = importlib.util.find_spec("distributed")
        shipped: dict[str, Any] = {}
        if spec is not None and spec.origin:
            with open(Path(spec.origin).with_name("distributed.yaml")) as handle:
                shipped = (yaml.safe_load(handle) or {}).get("distributed", {}).get(
                    "nanny", {}).get("pre-spawn-environ", {}) or {}
        config = {**shipped, **dask.config.get(key, {})}
    config = {**config, **WORKER_MALLOC_ENV}  # as make_local_cluster sets it
    environ = {k: os.environ.get(k, str(v)) for k, v in config.items() if v is not None}
    if environ.get("PYTHONHASHSEED") in (None, "0"):  # as distributed's Nanny: one hash seed
        environ["PYTHONHASHSEED"] = "6640"
    return environ


def _import_path() -> tuple[str, ...]:
    """``sys.path`` as imports resolve it: without repeated entries, nor the scratch directories
    a scheduler or worker of this process added (distributed puts its ``local_directory`` there,
    for ``upload_file``)."""
    import tempfile

    import dask.config

    scratch = os.path.join(dask.config.get("temporary-directory", None) or tempfile.gettempdir(),
                           "dask-scratch-space")
    return tuple(dict.fromkeys(p for p in sys.path if not p.startswith(scratch)))


def _forkserver_changes() -> dict[str, str] | None:
    """The environment variables set or changed since the forkserver started (each worker sets
    them before it starts), or None when a forked worker would differ from a spawned one in what
    cannot be set afterwards: ``sys.path``, a removed variable, or a pre-spawn variable (those
    act at process start: malloc, thread counts, hash seed). The reason is logged (debug)."""
    if not _forkserver:
        return None
    started = _forkserver["environ"]
    now = dict(os.environ)
    pre_spawn = _pre_spawn_environ()
    removed = sorted(set(started) - set(now) - set(pre_spawn))
    differ = sorted(k for k, v in pre_spawn.items() if started.get(k) != v)
    path = _import_path()
    added = sorted(set(path) - set(_forkserver["path"]))
    why = (f"sys.path changed ({', '.join(added) or 'order or removals'})"
           if path != _forkserver["path"] else
           f"variables removed: {', '.join(removed)}" if removed else
           f"pre-spawn variables changed: {', '.join(differ)}" if differ else None)
    if why:
        LOGGER.debug("LocalCluster workers spawned, not forked: since the forkserver started, %s", why)
        return None
    return {k: v for k, v in now.items() if started.get(k) != v and k not in pre_spawn}


@contextlib.contextmanager
def _workers_ignore_sigint():
    """SIGINT ignored while the worker processes start, so that they inherit it ignored: Ctrl-C
    (sent to the whole process group) then interrupts the client alone, which closes the cluster,
    instead of printing a traceback from every worker. Only from the main thread."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

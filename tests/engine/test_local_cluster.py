"""The engine's LocalCluster listens on 127.0.0.1 only (scheduler, workers, dashboard), unless
asked otherwise: checked on the real listening sockets of this process and its worker processes.
Its workers are forked from the forkserver with a spawned worker's environment."""
from __future__ import annotations

import logging

import dask
import psutil
import pytest
from distributed import Client

from dask_enrich.engine.run import make_local_cluster


def listening(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def cluster_sockets(cluster) -> tuple[set[tuple[str, int]], set[int]]:
    """Listening (ip, port) of this process and its children, and the cluster's own ports."""
    me = psutil.Process()
    sockets = listening([me.pid, *(c.pid for c in me.children(recursive=True))])
    with Client(cluster) as client:
        info = client.scheduler_info()
        ports = {int(client.scheduler.address.rsplit(":", 1)[1]),
                 int(info["services"]["dashboard"])}
        ports |= {int(addr.rsplit(":", 1)[1]) for addr in info["workers"]}
    return sockets, ports


def test_local_cluster_listens_on_loopback_only():
    cluster = make_local_cluster(1)
    try:
        sockets, ports = cluster_sockets(cluster)
        assert len(ports) == 3  # scheduler, dashboard, worker
        ours = {(ip, port) for ip, port in sockets if port in ports}
        assert {port for _, port in ours} == ports  # each is listening
        assert {ip for ip, _ in ours} == {"127.0.0.1"}, ours  # the dashboard bound 0.0.0.0 before
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
    finally:
        cluster.close()


def test_local_cluster_on_every_interface_when_asked():
    cluster = make_local_cluster(1, host="0.0.0.0")
    try:
        sockets, ports = cluster_sockets(cluster)
        ours = {(ip, port) for ip, port in sockets if port in ports}
        assert {port for _, port in ours} == ports and {ip for ip, _ in ours} == {"0.0.0.0"}
    finally:
        cluster.close()


def _hold(nbytes: int, seconds: float) -> int:
    """A task holding ``nbytes`` of unmanaged memory for a while (as an oversized partition)."""
    import time

    import numpy as np

    block = np.ones(nbytes, dtype=np.uint8)
    time.sleep(seconds)
    return int(block[-1])


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def test_worker_memory_warnings_reach_the_dask_enrich_logger_once_each(caplog):
    """distributed's worker memory warnings (silenced with its other output on the engine's
    LocalCluster) reach dask_enrich.worker: the pause warning once though the worker pauses twice."""
    import time

    from dask_enrich.engine.cluster import make_client

    client, cluster = make_client(workers=1, threads_per_worker=1, memory_limit="600MB")
    try:
        rss = next(iter(client.run(_rss).values()))
        hold = int(0.87 * 600e6) - rss  # the worker at 87%: between pause (80%) and terminate (95%)
        with caplog.at_level(logging.WARNING, logger="dask_enrich"):
            for _ in range(2):
                assert client.submit(_hold, hold, 2.0, pure=False).result() == 1
                time.sleep(1.0)  # the resume warning, and the forwarded events, arrive
    finally:
        client.close()
        cluster.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "dask_enrich.worker"]
    pausing = [m for m in messages if "memory usage. Pausing worker" in m]
    assert len(pausing) == 1, messages
    assert "worker tcp://127.0.0.1:" in pausing[0] and "raise --memory-limit" in pausing[0]
    assert sum("Resuming worker" in m for m in messages) == 1


def test_threaded_local_cluster_dashboard_on_loopback():
    cluster = make_local_cluster(1, processes=False)  # in-process comms: only the dashboard listens
    try:
        port = int(cluster.dashboard_link.split(":")[2].split("/")[0])
        ips = {ip for ip, p in listening([psutil.Process().pid]) if p == port}
        assert ips == {"127.0.0.1"}
    finally:
        cluster.close()


def _worker_view() -> dict:
    """What a worker process sees: its parent, environment variables and sys.path."""
    import os
    import sys

    import pyarrow

    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "PYTHONHASHSEED",
            "DASK_ENRICH_TEST_SET_LATER")
    return {"ppid": os.getppid(), "env": {k: os.environ.get(k) for k in keys},
            "path": list(sys.path), "engine": "dask_enrich.engine.run" in sys.modules,
            "arrow_pool": pyarrow.default_memory_pool().backend_name}


def _views(cluster) -> list[dict]:
    with Client(cluster) as client:
        return list(client.run(_worker_view).values())


def test_workers_are_forked_from_the_forkserver_with_a_spawned_workers_environment(monkeypatch):
    """enrich.worker-start forkserver: the workers' parent is the forkserver, they start with the
    engine imported, distributed's pre-spawn variables and the engine's malloc settings, and a
    variable set after the forkserver started reaches them as it reaches a spawned worker."""
    from dask_enrich.engine import cluster as engine_cluster

    assert engine_cluster.start_forkserver()
    monkeypatch.setenv("DASK_ENRICH_TEST_SET_LATER", "yes")
    forked = make_local_cluster(1)
    try:
        [view] = _views(forked)
    finally:
        forked.close()
    assert view["ppid"] == engine_cluster._forkserver["pid"]
    assert view["engine"]  # imported once, by the forkserver
    assert view["env"] == {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                           "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "6640",
                           "DASK_ENRICH_TEST_SET_LATER": "yes"}
    assert view["arrow_pool"] == "system"  # Arrow's buffers in the same glibc heap

    with dask.config.set({"enrich.worker-start": "spawn"}):
        spawned = make_local_cluster(1)
    try:
        [spawned_view] = _views(spawned)
    finally:
        spawned.close()
    assert spawned_view["ppid"] != engine_cluster._forkserver["pid"]
    assert spawned_view["env"] == view["env"]  # the same environment either way
    assert spawned_view["arrow_pool"] == "system"


def test_a_changed_sys_path_spawns_the_workers(monkeypatch, tmp_path):
    """A process whose sys.path changed since the forkserver started (a plugin directory added)
    spawns its workers: they get the new sys.path, as before."""
    from dask_enrich.engine import cluster as engine_cluster

    assert engine_cluster.start_forkserver()
    monkeypatch.syspath_prepend(str(tmp_path))
    local = make_local_cluster(1)
    try:
        [view] = _views(local)
    finally:
        local.close()
    assert view["ppid"] != engine_cluster._forkserver["pid"]
    assert str(tmp_path) in view["path"]


def test_a_prestarted_cluster_is_taken_by_the_make_client_of_the_same_arguments():
    """prestart_client starts the LocalCluster in the background (the command line, while the run
    reads footers); make_client with the same arguments takes it, its error included, and
    discard_prestarted closes one nobody took."""
    from dask_enrich.engine import cluster as engine_cluster
    from dask_enrich.errors import RunFailure

    assert engine_cluster.prestart_client(workers=1, threads_per_worker=1, memory_limit="1GiB")
    started = engine_cluster._prestarted["thread"]
    client, own = engine_cluster.make_client(workers=1, threads_per_worker=1, memory_limit="1GiB")
    try:
        assert not started.is_alive() and not engine_cluster._prestarted
        assert own is not None and len(client.scheduler_info()["workers"]) == 1
    finally:
        client.close()
        own.close()

    assert engine_cluster.prestart_client(workers=1, memory_limit="1GiB")
    engine_cluster._prestarted["thread"].join()
    client, own = engine_cluster._prestarted["result"]
    engine_cluster.discard_prestarted()  # nobody took it
    assert own.status.name == "closed" and client.status == "closed"

    assert engine_cluster.prestart_client(workers=1, memory_limit="16MB")  # too small for a worker
    with pytest.raises(RunFailure, match="below what a worker"):
        engine_cluster.make_client(workers=1, memory_limit="16MB")
    assert not engine_cluster._prestarted

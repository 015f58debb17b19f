"""The engine's LocalCluster listens on 127.0.0.1 only (scheduler, workers, dashboard), unless
asked otherwise: checked on the real listening sockets of this process and its worker processes."""
from __future__ import annotations

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

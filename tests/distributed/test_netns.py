"""Multi-host on one machine: the client, the scheduler and the workers in separate network
namespaces, joined through a router namespace by veth links, so every message crosses a network
interface (as between hosts). Needs root and ``ip netns``; skipped cleanly elsewhere.

    ns c (client, 10.250.1.2) --veth-- ns r (router, forwarding) --veth-- ns s (scheduler, 10.250.2.2)
                                                                 --veth-- ns w (2 workers, 10.250.3.2)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import (ENV, assert_same_output, dask_command, run_args, start, stop,
                       tail)

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

LEAVES = {"c": 1, "s": 2, "w": 3}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@pytest.fixture
def namespaces():
    """Four namespaces (router + client/scheduler/workers); deleted afterwards, pass or fail."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    prefix = f"de{os.getpid() % 100000}"
    names = {k: f"{prefix}{k}" for k in ("r", *LEAVES)}
    created: list[str] = []
    try:
        for name in names.values():
            done = _ip("netns", "add", name, check=False)
            if done.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {done.stderr.strip()}")
            created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        router = names["r"]
        for leaf, i in LEAVES.items():
            # The veth pair is created inside the namespaces: the host's interfaces are untouched.
            _ip("-n", router, "link", "add", f"r{leaf}", "type", "veth", "peer", "name", "eth0",
                "netns", names[leaf])
            _ip("-n", router, "addr", "add", f"10.250.{i}.1/24", "dev", f"r{leaf}")
            _ip("-n", router, "link", "set", f"r{leaf}", "up")
            _ip("-n", names[leaf], "addr", "add", f"10.250.{i}.2/24", "dev", "eth0")
            _ip("-n", names[leaf], "link", "set", "eth0", "up")
            _ip("-n", names[leaf], "route", "add", "default", "via", f"10.250.{i}.1")
        done = subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw",
                               "net.ipv4.ip_forward=1"], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot enable forwarding in the router namespace: {done.stderr.strip()}")
        yield names
    finally:
        for name in created:
            _ip("netns", "del", name, check=False)


def _bytes(ns: str) -> int:
    """Bytes received plus sent on the namespace's eth0."""
    stats = Path(f"/sys/class/net/eth0/statistics")
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", str(stats / "rx_bytes"),
                          str(stats / "tx_bytes")], capture_output=True, text=True, timeout=30)
    return sum(int(v) for v in out.stdout.split())


def test_run_across_network_namespaces(namespaces, shared_inputs, local_reference, tmp_path):
    def in_ns(leaf: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", namespaces[leaf], *cmd]

    address_file = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(start(in_ns("s", dask_command(
            "scheduler", "--host", "10.250.2.2", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(address_file))), tmp_path / "scheduler.log", cwd=tmp_path))
        deadline = time.monotonic() + 60
        while not address_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, \
                tail(tmp_path / "scheduler.log")
            time.sleep(0.1)
        time.sleep(0.2)
        address = json.loads(address_file.read_text())["address"]
        assert address.startswith("tcp://10.250.2.2:")
        for i in range(2):
            local = tmp_path / f"worker-{i}"
            local.mkdir()
            procs.append(start(in_ns("w", dask_command(
                "worker", address, "--name", f"w{i}", "--host", "10.250.3.2", "--nthreads", "1",
                "--memory-limit", "1GiB", "--local-directory", str(local), "--no-dashboard",
                "--death-timeout", "30")), tmp_path / f"worker-{i}.log", cwd=local))
        wait = subprocess.run(in_ns("c", [sys.executable, "-c", (
            "import sys; from distributed import Client; "
            "c = Client(sys.argv[1], timeout='30s'); c.wait_for_workers(2, timeout=60); "
            "print(sorted(w['host'] for w in c.scheduler_info()['workers'].values())); c.close()"),
            address]), capture_output=True, text=True, timeout=120, env=ENV)
        assert wait.returncode == 0, wait.stderr[-2000:] + tail(tmp_path / "worker-0.log")
        assert wait.stdout.strip() == "['10.250.3.2', '10.250.3.2']"
        before = {leaf: _bytes(namespaces[leaf]) for leaf in LEAVES}

        out = tmp_path / "out"
        done = subprocess.run(in_ns("c", run_args(shared_inputs, out, "--scheduler", address,
                                                  "--partition-rows", "250")),
                              capture_output=True, text=True, timeout=240, env=ENV, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        moved = {leaf: _bytes(namespaces[leaf]) - before[leaf] for leaf in LEAVES}
        # The graph, the tasks and the results really crossed the links of every namespace.
        assert all(v > 10_000 for v in moved.values()), moved
        assert_same_output(out, local_reference)
    finally:
        for proc in reversed(procs):
            stop(proc)

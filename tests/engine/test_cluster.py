"""Cluster selection (``engine/cluster.py``): arguments, then Dask's ``scheduler-address``, then a
LocalCluster sized from the ``enrich`` config and Dask's CPU count. Real scheduler processes are
in tests/distributed/test_cluster_selection.py."""
from __future__ import annotations

import dask
import dask.system
import pytest

from dask_enrich.engine import cluster
from dask_enrich.errors import ConfigError, RunFailure


def test_local_workers_default_to_dasks_cpu_count(monkeypatch):
    monkeypatch.setattr(dask.system, "CPU_COUNT", 1)  # e.g. a 1-CPU affinity on a 2-core machine
    assert cluster.local_spec() == cluster.LocalSpec(1, 1, "auto", "127.0.0.1")
    monkeypatch.setattr(dask.system, "CPU_COUNT", 6)
    assert cluster.local_spec().workers == 6
    with dask.config.set({"enrich.workers": 3, "enrich.threads-per-worker": 2,
                          "enrich.memory-limit": "2GiB", "enrich.host": "0.0.0.0"}):
        assert cluster.local_spec() == cluster.LocalSpec(3, 2, "2GiB", "0.0.0.0")
        assert cluster.local_spec(workers=5, memory_limit="none").workers == 5
        assert cluster.local_spec(memory_limit="none").memory_limit == 0
        assert cluster.local_spec(memory_limit="0").memory_limit == 0


def test_existing_scheduler_order(tmp_path):
    assert cluster.existing_scheduler() is None
    with dask.config.set({"scheduler-address": "tcp://10.0.0.1:8786"}):
        assert cluster.existing_scheduler() == {"address": "tcp://10.0.0.1:8786"}
        assert cluster.existing_scheduler("tcp://h:1") == {"address": "tcp://h:1"}
        path = tmp_path / "scheduler.json"
        path.write_text("{}")
        assert cluster.existing_scheduler(scheduler_file=str(path)) == {"scheduler_file": str(path)}
    with pytest.raises(ConfigError, match="not both"):
        cluster.existing_scheduler("tcp://h:1", str(tmp_path / "scheduler.json"))
    with pytest.raises(ConfigError, match="no such file"):
        cluster.existing_scheduler(scheduler_file=str(tmp_path / "absent.json"))


def test_unreachable_scheduler_names_the_address():
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(RunFailure, match="tcp://127.0.0.1:9"):
            cluster.connect("tcp://127.0.0.1:9")

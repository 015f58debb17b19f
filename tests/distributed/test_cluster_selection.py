"""Choosing an existing cluster: Dask's ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``) and
``--scheduler-file`` reach a real ``dask scheduler`` process started by the test (no LocalCluster
is started), and the ``enrich`` section of Dask's config (``DASK_ENRICH__PARTITION_ROWS``) sets
the run's defaults, overridden by the command-line option."""
from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from distributed import Client

from .conftest import ENV, assert_same_output, read_output, run_args

pytestmark = pytest.mark.distributed


def run_with_env(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env={**ENV, **env})


def tasks_run_by(address: str) -> set[str]:
    """Task prefixes the scheduler at ``address`` has seen (they outlive the tasks)."""
    with Client(address, timeout="20s") as client:
        return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


def settings_of(out) -> dict:
    return json.loads((out / "_SUCCESS.json").read_text())["settings"]


def test_dask_scheduler_address_selects_the_running_scheduler(cluster_factory, shared_inputs,
                                                             local_reference, tmp_path):
    cluster = cluster_factory("env", 1)
    assert not any(p.startswith("enrich") for p in tasks_run_by(cluster.address))
    out = tmp_path / "out"
    done = run_with_env(run_args(shared_inputs, out), DASK_SCHEDULER_ADDRESS=cluster.address,
                        DASK_ENRICH__PARTITION_ROWS="1500")
    assert done.returncode == 0, done.stderr + cluster.logs()
    ran = tasks_run_by(cluster.address)
    assert "count_genes" in ran and any(p.startswith("enrich") for p in ran), ran  # plan, enrich
    assert settings_of(out)["partition_rows"] == 1500  # from Dask's config (environment)
    # the same rows as the LocalCluster reference (in other partitions: 1,500 rows, not 200,000)
    pd.testing.assert_frame_equal(read_output(out), read_output(local_reference), check_exact=True)


def test_scheduler_file_selects_the_running_scheduler(cluster_factory, shared_inputs,
                                                      local_reference, tmp_path):
    cluster = cluster_factory("file", 1)
    scheduler_file = cluster.root / "scheduler.json"  # written by `dask scheduler --scheduler-file`
    out = tmp_path / "out"
    done = run_with_env(run_args(shared_inputs, out, "--scheduler-file", str(scheduler_file),
                                 "--partition-rows", "200000"),
                        DASK_ENRICH__PARTITION_ROWS="1500")
    assert done.returncode == 0, done.stderr + cluster.logs()
    ran = tasks_run_by(cluster.address)
    assert "count_genes" in ran and any(p.startswith("enrich") for p in ran), ran
    assert settings_of(out)["partition_rows"] == 200000  # the option beats the config
    assert_same_output(out, local_reference)


def test_unreachable_scheduler_address_is_a_run_failure_naming_it(shared_inputs, tmp_path):
    done = run_with_env(run_args(shared_inputs, tmp_path / "out"),
                        DASK_SCHEDULER_ADDRESS="tcp://127.0.0.1:9",
                        DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    assert done.returncode == 4, done.stderr
    assert "tcp://127.0.0.1:9" in done.stderr and "DASK_SCHEDULER_ADDRESS" in done.stderr

"""``dask-enrich run --scheduler`` against real scheduler/worker processes, and the faults it must
survive: a worker SIGKILLed mid-run, the whole run (client, scheduler, workers) killed and resumed
on a fresh cluster, and a worker running out of memory on one oversized gene.

Every output is compared with a clean LocalCluster run of the same inputs (rows, values, schema).
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.engine.conftest import follows_input, write_grouped

from .conftest import (assert_same_output, enrich_command, kill, part_paths, read_output, run_args,
                       run_enrich, start, stop, wait_for_parts)

pytestmark = pytest.mark.distributed

#: Small partitions so that a run has many of them (the faults land mid-run).
PARTITION_ROWS = "250"


def success(out: Path) -> dict:
    return json.loads((out / "_SUCCESS.json").read_text())


def n_input_rows(inputs) -> int:
    return sum(pq.read_metadata(p).num_rows for p in Path(inputs["positions"]).glob("*.parquet"))


def test_remote_scheduler_run_equals_local_cluster_run(process_cluster, shared_inputs,
                                                       local_reference, tmp_path):
    out = tmp_path / "remote"
    done = run_enrich(run_args(shared_inputs, out, "--scheduler", process_cluster.address,
                               "--partition-rows", PARTITION_ROWS), cwd=tmp_path)
    assert done.returncode == 0, f"{done.stderr}\n{process_cluster.logs()}"
    assert_same_output(out, local_reference)
    rows = n_input_rows(shared_inputs)
    record = success(out)
    assert record["rows"]["in"] == record["rows"]["written"] == rows
    assert record["partitions"]["count"] == len(part_paths(out)) > 10
    assert len(read_output(out)) == rows
    # The work ran on the cluster's workers, which are still both alive and connected.
    assert all(w.poll() is None for w in process_cluster.workers)


def _wait_for_staging(out: Path, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(out.glob("_staging/*/*.arrow")):
        assert proc.poll() is None, "the run ended before staging"
        assert time.monotonic() < deadline, "no staged file appeared"
        time.sleep(0.01)


def _grouped_by_gene(inputs: dict[str, Path], directory: Path, files: int = 4) -> dict[str, Path]:
    """The same positions rewritten grouped by gene (each gene's rows in one of ``files`` files)."""
    frame = pd.concat(pq.read_table(p).to_pandas() for p in sorted(inputs["positions"].glob("*.parquet")))
    write_grouped(frame, directory, files)
    return {**inputs, "positions": directory}


@pytest.mark.parametrize("when", ["first-part", "first-part-grouped",
                                  pytest.param("staging", marks=pytest.mark.slow)])
def test_worker_sigkill_mid_run_still_completes_identically(process_cluster, shared_inputs,
                                                           local_reference, tmp_path, when):
    """SIGKILL one worker (nanny and worker process) when the first part file appears (results
    of finished tasks are lost with it), or as soon as the exchange has staged its first rows.
    ``first-part-grouped``: input grouped by gene, each file enriched where it is read by one task
    that writes several parts; the killed worker's file is redone elsewhere (parts it had written
    are written again, whole)."""
    grouped = when == "first-part-grouped"
    inputs = _grouped_by_gene(shared_inputs, tmp_path / "grouped") if grouped else shared_inputs
    out = tmp_path / "out"
    log = tmp_path / "client.log"
    client = start(run_args(inputs, out, "--scheduler", process_cluster.address,
                            "--partition-rows", PARTITION_ROWS), log, cwd=tmp_path)
    try:
        if when == "staging":
            _wait_for_staging(out, client)
        parts_at_kill = part_paths(out) if when == "staging" else wait_for_parts(out, client, 1)
        process_cluster.kill_worker(0)
        returncode = client.wait(180)
    finally:
        stop(client)
    assert returncode == 0, f"{log.read_text()[-3000:]}\n{process_cluster.logs()}"
    record = success(out)
    assert follows_input(out) == grouped
    assert len(parts_at_kill) < record["partitions"]["count"], "the kill came after the run's end"
    assert process_cluster.workers[0].poll() is not None  # really gone
    assert_same_output(out, local_reference)
    assert record["rows"]["in"] == record["rows"]["written"] == n_input_rows(shared_inputs)
    assert not list(out.glob("*.tmp-*")) and not list(out.glob(".*tmp*")), "temporary files left"
    assert not (out / "_staging").exists(), "staged rows left behind"


def _snapshot(paths: list[Path]) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in paths}


@pytest.mark.slow
def test_kill_whole_run_then_resume_on_fresh_cluster(cluster_factory, shared_inputs,
                                                     local_reference, tmp_path):
    out = tmp_path / "out"
    first = cluster_factory("first", 2)
    log = tmp_path / "client-1.log"
    client = start(run_args(shared_inputs, out, "--scheduler", first.address,
                            "--partition-rows", PARTITION_ROWS), log, cwd=tmp_path)
    try:
        wait_for_parts(out, client, 3)
        # Everything dies at once: the client, the scheduler and both workers.
        kill(client, signal.SIGKILL)
        first.kill_all()
        client.wait(10)
    finally:
        stop(client)
        first.stop()
    assert not (out / "_SUCCESS.json").exists(), "the run finished before it was killed"
    complete = _snapshot(part_paths(out))
    assert len(complete) >= 3

    second = cluster_factory("second", 2)
    done = run_enrich(run_args(shared_inputs, out, "--scheduler", second.address,
                               "--partition-rows", PARTITION_ROWS, "--resume"), cwd=tmp_path)
    assert done.returncode == 0, f"{done.stderr}\n{second.logs()}"
    # The parts complete before the kill were kept as they were: not rewritten, not replaced.
    after = _snapshot(part_paths(out))
    for name, stat in complete.items():
        assert after[name] == stat, f"{name} was written again on --resume"
    record = success(out)
    assert record["partitions"]["resumed"] == len(complete)
    assert record["partitions"]["written"] == record["partitions"]["count"] - len(complete)
    assert_same_output(out, local_reference)
    assert record["rows"]["in"] == record["rows"]["written"] == n_input_rows(shared_inputs)
    assert not list(out.glob("*.tmp-*"))
    assert not (out / "_staging").exists(), "staged rows of the killed run left behind"


@pytest.mark.slow
def test_relative_paths_resolve_on_the_client_not_on_the_workers(process_cluster, shared_inputs,
                                                                 local_reference, tmp_path):
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    for name in ("positions", "cache"):  # the inputs under the client's working directory
        os.symlink(shared_inputs[name], client_dir / name)
    done = run_enrich(enrich_command(
        "run", "--positions", "positions", "--manifest", str(shared_inputs["manifest"]),
        "--cache", "cache", "--out", "out", "--scheduler", process_cluster.address,
        "--partition-rows", PARTITION_ROWS, "--quiet"), cwd=client_dir)
    assert done.returncode == 0, done.stderr
    assert not list(process_cluster.root.rglob("part-*.parquet")), "parts written in a worker's cwd"
    assert_same_output(client_dir / "out", local_reference)


BIG_GENE = "AT9G99999_OVERSIZED"


@pytest.mark.slow
def test_worker_out_of_memory_on_one_gene_names_the_gene(cluster_factory, tmp_path):
    """One gene far larger than a worker's memory limit: a clear error naming it, not a hang."""
    # Scores-only inputs (no annotation: the gene need not exist in a genome), one huge gene and a
    # few small ones; the manifest's other features are imputed.
    rng = np.random.default_rng(3)
    big = 600_000
    small = pd.DataFrame({"gene_id": np.repeat([f"G{i}" for i in range(20)], 50),
                          "position": np.tile(np.arange(1, 51), 20)})
    frame = pd.concat([pd.DataFrame({"gene_id": BIG_GENE, "position": np.arange(1, big + 1)}),
                       small], ignore_index=True)
    scores = rng.dirichlet([1, 1, 1], len(frame))
    frame[["donor_score", "acceptor_score", "neither_score"]] = scores
    positions = tmp_path / "positions.parquet"
    frame.to_parquet(positions, index=False)
    cluster = cluster_factory("small", 2, memory_limit="450MiB",
                              scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})
    from tests.conftest import MODEL_DIR

    done = run_enrich(enrich_command("run", "--positions", str(positions), "--manifest",
                                     str(MODEL_DIR), "--missing", "impute", "--out",
                                     str(tmp_path / "out"), "--scheduler", cluster.address,
                                     "--partition-rows", "10000", "--quiet"), timeout=180)
    assert done.returncode == 4, "an oversized gene cannot be enriched within 450 MiB"
    assert BIG_GENE in done.stderr, done.stderr
    assert f"{big:,} rows" in done.stderr and "--memory-limit" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "_SUCCESS.json").exists()

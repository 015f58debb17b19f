"""Real Dask clusters for the distributed tests: ``dask scheduler`` and ``dask worker`` started as
separate OS processes on 127.0.0.1, each worker with its own ``--local-directory``, and the
``dask-enrich`` command line run as a subprocess against them, as a user would.

Every process is started in its own session (process group), so a worker is killed with its nanny
and the nanny's child together, and teardown reaches every descendant. Teardown runs on test
failure too (fixture finalizers) and, as a last resort, at interpreter exit.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import MODEL_DIR, SLICE_FASTA, SLICE_GTF

#: Environment of every process we start: one BLAS thread (2 shared cores), no colour, no buffering.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
_LIVE: set[subprocess.Popen] = set()


def dask_command(*args: str) -> list[str]:
    """``dask <args>`` with the interpreter running the tests (the same environment)."""
    return [sys.executable, "-m", "dask", *args]


def enrich_command(*args: str) -> list[str]:
    """``dask-enrich <args>`` (the console script of this interpreter, else ``python -m``)."""
    script = Path(sys.executable).with_name("dask-enrich")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "dask_enrich.cli", *args]


def start(cmd: Sequence[str], log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in a new session with stdout+stderr to ``log``; tracked for teardown."""
    handle = open(log, "ab")
    try:
        proc = subprocess.Popen(list(cmd), stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=env or ENV,
                                start_new_session=True)
    finally:
        handle.close()
    _LIVE.add(proc)
    return proc


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``proc`` (the process and all its children)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the group, then SIGKILL it after ``grace`` seconds; reap the process."""
    if proc.poll() is None:
        kill(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    kill(proc, signal.SIGKILL)  # stray children of an exited leader too
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        pass
    _LIVE.discard(proc)


@atexit.register
def _reap_all() -> None:  # pragma: no cover - only when a finalizer could not run
    for proc in list(_LIVE):
        stop(proc, grace=0.5)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class ProcessCluster:
    """A scheduler and workers running as separate processes."""

    root: Path
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [self.scheduler, *self.workers]

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` (its nanny and the worker process), as a lost machine."""
        kill(self.workers[i], signal.SIGKILL)
        self.workers[i].wait(10)

    def kill_all(self) -> None:
        """SIGKILL the scheduler and every worker at once."""
        for proc in self.processes:
            kill(proc, signal.SIGKILL)
        for proc in self.processes:
            proc.wait(10)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            stop(proc)

    def logs(self) -> str:
        parts = [f"--- scheduler\n{tail(self.root / 'scheduler.log')}"]
        parts += [f"--- {log.name}\n{tail(log)}" for log in self.worker_logs]
        return "\n".join(parts)


def _wait_for_file(path: Path, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"scheduler exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"scheduler did not start within {timeout} s:\n{tail(log)}")
        time.sleep(0.1)


def _wait_for_workers(cluster: ProcessCluster, n: int, timeout: float) -> None:
    from distributed import Client

    with Client(cluster.address, timeout="30s") as client:
        try:
            client.wait_for_workers(n, timeout=timeout)
        except TimeoutError:
            raise RuntimeError(f"{n} workers did not connect within {timeout} s:\n"
                               f"{cluster.logs()}") from None


def start_cluster(root: Path, n_workers: int = 2, *, memory_limit: str = "1GiB",
                  nthreads: int = 1, scheduler_env: dict[str, str] | None = None,
                  worker_args: Sequence[str] = (), timeout: float = 60.0) -> ProcessCluster:
    """Start ``dask scheduler`` on a free port of 127.0.0.1 and ``n_workers`` ``dask worker``
    processes, each with its own local directory under ``root``; wait until all have joined."""
    root.mkdir(parents=True, exist_ok=True)
    address_file = root / "scheduler.json"
    log = root / "scheduler.log"
    scheduler = start(dask_command("scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--no-dashboard", "--scheduler-file", str(address_file)),
                      log, cwd=root, env={**ENV, **(scheduler_env or {})})
    cluster = ProcessCluster(root, "", scheduler)
    try:
        _wait_for_file(address_file, scheduler, log, timeout)
        for _ in range(50):  # the file appears before it is fully written on slow disks
            try:
                cluster.address = json.loads(address_file.read_text())["address"]
                break
            except (ValueError, KeyError):
                time.sleep(0.1)
        assert cluster.address.startswith("tcp://127.0.0.1:"), cluster.address
        for i in range(n_workers):
            local = root / f"worker-{i}"
            local.mkdir()
            wlog = root / f"worker-{i}.log"
            cluster.worker_logs.append(wlog)
            cluster.workers.append(start(dask_command(
                "worker", cluster.address, "--name", f"w{i}", "--host", "127.0.0.1",
                "--nthreads", str(nthreads), "--memory-limit", memory_limit,
                "--local-directory", str(local), "--no-dashboard", "--death-timeout", "30",
                *worker_args), wlog, cwd=local))
        _wait_for_workers(cluster, n_workers, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., ProcessCluster]]:
    """``factory(name, n_workers=2, **kw)`` starts a fresh cluster under tmp_path/name; every
    cluster started is torn down at the end of the test, pass or fail."""
    started: list[ProcessCluster] = []

    def factory(name: str = "cluster", n_workers: int = 2, **kw) -> ProcessCluster:
        cluster = start_cluster(tmp_path / name, n_workers, **kw)
        started.append(cluster)
        return cluster

    yield factory
    for cluster in started:
        cluster.stop()


@pytest.fixture
def process_cluster(cluster_factory) -> ProcessCluster:
    """A scheduler and two workers (separate processes) on 127.0.0.1."""
    return cluster_factory("cluster", 2)


# --- inputs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_inputs(tmp_path_factory) -> dict[str, Path]:
    """The real 1 Mb slice's genomic cache (built with ``dask-enrich build-cache``) and generated
    positions inside its genes, as files on a path every process sees (a shared filesystem)."""
    root = tmp_path_factory.mktemp("shared")
    cache = root / "cache"
    done = subprocess.run(enrich_command("build-cache", "--genome", str(SLICE_FASTA),
                                         "--annotation", str(SLICE_GTF), "--out", str(cache),
                                         "--quiet"),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    genes = pd.read_parquet(cache / "genes.parquet")
    positions = root / "positions"
    write_positions(genes, positions, rows=6_000, files=4, seed=7)
    return {"root": root, "cache": cache, "positions": positions, "manifest": MODEL_DIR}


def write_positions(genes: pd.DataFrame, out: Path, rows: int, files: int, seed: int) -> int:
    """Random unique (gene, position) rows inside the genes' spans with scores summing to 1 and
    context scores, split into ``files`` Parquet files in random row order. Returns the row count."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(genes), rows)
    start = genes["gene_start"].to_numpy()[idx]
    end = genes["gene_end"].to_numpy()[idx]
    position = start + (rng.random(rows) * (end - start + 1)).astype(np.int64)
    scores = rng.dirichlet([0.6, 0.6, 1.0], rows)
    frame = pd.DataFrame({"gene_id": genes["gene_id"].to_numpy()[idx], "position": position,
                          "donor_score": scores[:, 0], "acceptor_score": scores[:, 1],
                          "neither_score": scores[:, 2]})
    for name in ("m2", "m1", "p1", "p2"):
        frame[f"context_score_{name}"] = rng.random(rows)
    frame = frame.drop_duplicates(["gene_id", "position"]).reset_index(drop=True)
    out.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[part].to_parquet(out / f"part-{i}.parquet", index=False)
    return len(frame)


# --- running and reading ---------------------------------------------------------------------------
def run_args(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return enrich_command("run", "--positions", str(inputs["positions"]),
                          "--manifest", str(inputs["manifest"]), "--cache", str(inputs["cache"]),
                          "--out", str(out), "--quiet", *extra)


def run_enrich(args: Sequence[str], timeout: float = 240.0, cwd: Path | None = None
               ) -> subprocess.CompletedProcess:
    """Run a ``dask-enrich`` command to completion (killing its group on timeout)."""
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=cwd, start_new_session=True)
    _LIVE.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"dask-enrich did not finish within {timeout} s:\n{stderr[-3000:]}")
    finally:
        stop(proc, grace=0.1)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def local_reference(shared_inputs, tmp_path_factory) -> Path:
    """A clean run of the shared inputs on a LocalCluster (dask-enrich's own, no --scheduler),
    default partitioning: what every distributed run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = run_enrich(run_args(shared_inputs, out, "--workers", "2"))
    assert done.returncode == 0, done.stderr
    return out


def part_paths(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("part-*.parquet"))


def read_output(out: Path) -> pd.DataFrame:
    """Every part of an output directory, as one frame in (gene_id, position) order."""
    parts = part_paths(out)
    assert parts, f"no part files in {out}"
    frame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    return frame.sort_values(["gene_id", "position"], kind="stable").reset_index(drop=True)


def assert_same_output(actual: Path, expected: Path) -> None:
    """Identical rows and values (bit for bit, NaN == NaN), no duplicated (gene, position)."""
    left, right = read_output(actual), read_output(expected)
    assert not left.duplicated(["gene_id", "position"]).any(), "duplicated rows in the output"
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    pd.testing.assert_frame_equal(left, right, check_exact=True)
    # Same schema in every file of both outputs.
    schemas = {pq.read_schema(p).remove_metadata() for p in part_paths(actual) + part_paths(expected)}
    assert len(schemas) == 1
    # OUT reads as one dataset, as a user reads it (no partial or temporary file in the way).
    assert pq.read_table(actual).num_rows == len(right)


def wait_for_parts(out: Path, proc: subprocess.Popen, count: int = 1, timeout: float = 120.0
                   ) -> list[Path]:
    """Block until ``out`` holds at least ``count`` complete part files (final names)."""
    deadline = time.monotonic() + timeout
    while True:
        parts = part_paths(out) if out.exists() else []
        if len(parts) >= count:
            return parts
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before {count} part(s) appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} part file(s) in {out} after {timeout} s")
        time.sleep(0.02)

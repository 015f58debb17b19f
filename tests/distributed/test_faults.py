"""Faults of a real ``dask-enrich run`` process and its cluster, with their exit codes: Ctrl-C and
SIGTERM (quiet, resumable), the scheduler SIGKILLed (exit 4, resumable on a fresh cluster), a
second run into a locked OUT (exit 3), a memory limit too small for a worker (exit 4 at once).
Every resumed output equals a clean run."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import (assert_same_output, kill, run_args, run_enrich, start, stop, tail,
                       wait_for_parts)

pytestmark = pytest.mark.distributed

PARTITION_ROWS = "250"


def _wait(proc, timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except Exception:
        kill(proc)
        raise AssertionError(f"the run did not end within {timeout} s")


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_and_sigterm_are_quiet_and_resumable(shared_inputs, local_reference, tmp_path,
                                                    sig, code, said):
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    proc = start(run_args(shared_inputs, out, "--workers", "2", "--partition-rows", PARTITION_ROWS),
                 log, cwd=tmp_path)
    try:
        wait_for_parts(out, proc, 2)
        kill(proc, sig)  # to the whole process group, as a terminal's Ctrl-C or a batch system
        assert _wait(proc, 60) == code, tail(log)
    finally:
        stop(proc)
    text = log.read_text()
    assert f"dask-enrich: {said}" in text and "--resume" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 3, text
    assert not (out / "_SUCCESS.json").exists() and not (out / "_LOCK.json").exists()
    done = run_enrich(run_args(shared_inputs, out, "--workers", "2", "--partition-rows",
                               PARTITION_ROWS, "--resume"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_output(out, local_reference)


def test_scheduler_sigkill_exits_4_and_resume_on_a_fresh_cluster_completes(
        cluster_factory, shared_inputs, local_reference, tmp_path):
    out = tmp_path / "out"
    first = cluster_factory("first", 2)
    log = tmp_path / "run.log"
    proc = start(run_args(shared_inputs, out, "--scheduler", first.address,
                          "--partition-rows", PARTITION_ROWS), log, cwd=tmp_path)
    try:
        wait_for_parts(out, proc, 2)
        t = time.monotonic()
        kill(first.scheduler, signal.SIGKILL)
        assert _wait(proc, 90) == 4, tail(log)
        assert time.monotonic() - t < 60
    finally:
        stop(proc)
        first.stop()
    text = log.read_text()
    assert "scheduler lost; rerun with --resume" in text, text
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 3, text
    second = cluster_factory("second", 2)
    done = run_enrich(run_args(shared_inputs, out, "--scheduler", second.address,
                               "--partition-rows", PARTITION_ROWS, "--resume"), cwd=tmp_path)
    assert done.returncode == 0, f"{done.stderr}\n{second.logs()}"
    assert_same_output(out, local_reference)


def test_a_second_run_into_a_locked_out_is_refused_with_exit_3(shared_inputs, local_reference,
                                                               tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "first.log"
    first = start(run_args(shared_inputs, out, "--workers", "1", "--partition-rows", PARTITION_ROWS),
                  log, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (out / "_LOCK.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, tail(log)
            time.sleep(0.02)
        # the first run (its whole process group: client, forkserver, workers) is stopped while
        # the second ones check OUT, so that it holds OUT however fast it would finish
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(2) as pool:
                seconds = list(pool.map(lambda mode: run_enrich(
                    run_args(shared_inputs, out, "--workers", "1", mode), cwd=tmp_path),
                    ("--overwrite", "--resume")))
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        for second in seconds:
            assert second.returncode == 3, second.stderr
            assert "is locked by another run (pid" in second.stderr
        assert _wait(first, 240) == 0, tail(log)
    finally:
        stop(first)
    assert_same_output(out, local_reference)
    assert not (out / "_LOCK.json").exists()


def test_a_memory_limit_too_small_for_a_worker_fails_at_once(shared_inputs, tmp_path):
    t = time.monotonic()
    done = run_enrich(run_args(shared_inputs, tmp_path / "out", "--workers", "1",
                               "--memory-limit", "64MB"), timeout=60, cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    assert "--memory-limit 64MB" in done.stderr and "below what a worker" in done.stderr
    assert time.monotonic() - t < 30
    assert not Path(tmp_path / "out").exists()  # nothing written (the lock, its directory: gone)

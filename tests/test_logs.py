"""Logging under the ``dask_enrich`` logger: levels filter as documented (``--log-level``, ``-v``,
``--quiet``), and progress lines carry the rate and the time left."""
from __future__ import annotations

import io
import logging

import pytest

from dask_enrich import logs
from dask_enrich.cli import main
from dask_enrich.logs import progress_printer as _progress_printer
from dask_enrich.logs import rate_and_eta
from tests.engine.conftest import client  # noqa: F401
from tests.test_cli import _inputs


@pytest.fixture(autouse=True)
def _restore_logger():
    yield
    logs.configure("info")


@pytest.mark.parametrize("level, shown", [
    ("debug", ["debug", "info", "warning: warn", "error: err"]),
    ("info", ["info", "warning: warn", "error: err"]),
    ("warning", ["warning: warn", "error: err"]),
    ("error", ["error: err"]),
])
def test_levels_filter_the_dask_enrich_logger_and_its_children(level, shown):
    stream = io.StringIO()
    logs.configure(level, stream)
    child = logging.getLogger("dask_enrich.engine.run")  # module loggers below dask_enrich
    child.debug("debug")
    logs.LOGGER.info("info")
    child.warning("warn")
    logs.LOGGER.error("err")
    assert stream.getvalue().splitlines() == shown


def test_run_messages_follow_the_log_level(client, tmp_path, capsys):  # noqa: F811
    positions, manifest = _inputs(tmp_path)
    base = ["run", "--positions", positions, "--manifest", manifest,
            "--scheduler", client.scheduler.address]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "plan: " in err and "dask dashboard" in err and "partitions 1/1" in err  # info
    assert "connecting to the Dask scheduler" not in err  # a debug message
    assert main(["-v", *base, "--out", str(tmp_path / "b")]) == 0
    assert f"connecting to the Dask scheduler at {client.scheduler.address}" in capsys.readouterr().err
    assert main([*base, "--log-level", "debug", "--out", str(tmp_path / "c")]) == 0  # after the command
    assert "connecting to the Dask scheduler" in capsys.readouterr().err
    for quiet in (["--log-level", "warning"], ["--quiet"]):
        assert main([*base, *quiet, "--out", str(tmp_path / quiet[-1].strip("-"))]) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and "rows written" in captured.out  # the summary stays


def test_rate_and_eta_by_hand():
    assert rate_and_eta(0, 10, 5.0) == ""
    assert rate_and_eta(3, 10, 6.0) == ", 0.50/s, ETA 14s"
    assert rate_and_eta(40, 100, 2.0) == ", 20/s, ETA 3s"
    assert rate_and_eta(1, 200, 30.0) == ", 0.03/s, ETA 1h39m"
    assert rate_and_eta(10, 10, 125.0) == ", 0.08/s, 2m05s"  # done: the time taken


def test_progress_lines_without_a_terminal():
    stream, now = io.StringIO(), [100.0]
    show = _progress_printer(stream, "genes", clock=lambda: now[0])
    for done, t in ((0, 100.0), (1, 102.0), (2, 104.0), (4, 108.0)):
        now[0] = t
        show(done, 4)
    assert stream.getvalue().splitlines() == [
        "genes 0/4", "genes 1/4, 0.50/s, ETA 6s", "genes 2/4, 0.50/s, ETA 4s", "genes 4/4, 0.50/s, 8s"]


def test_worker_warnings_are_shown_once_per_kind_whatever_their_numbers():
    stream = io.StringIO()
    logs.configure("info", stream)
    logs._once.seen.clear()
    for message in ("Worker is at 85% memory usage. Pausing worker.  Process memory: 491.02 MiB "
                    "-- Worker memory limit: 572.20 MiB",
                    "Worker is at 91% memory usage. Pausing worker.  Process memory: 521.5 MiB "
                    "-- Worker memory limit: 572.20 MiB",
                    "Worker is at 20% memory usage. Resuming worker. Process memory: 114 MiB "
                    "-- Worker memory limit: 572.20 MiB",
                    "Spill to disk failed; keeping data in memory",
                    "Spill to disk failed; keeping data in memory"):
        record = logging.LogRecord("distributed.worker.memory", logging.WARNING, __file__, 0, message,
                                   None, None)
        record.worker = "tcp://127.0.0.1:1"
        logs._once.handle(record)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("warning: worker tcp://127.0.0.1:1: ") for line in lines)
    assert "85% memory usage. Pausing" in lines[0] and "raise --memory-limit" in lines[0]
    assert "Resuming" in lines[1] and "raise --memory-limit" not in lines[1]
    assert "Spill to disk failed" in lines[2]

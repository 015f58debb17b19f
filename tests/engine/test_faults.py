"""Faults on the run's own files and on OUT: a lock for the whole run, a read-only or full OUT
(exit 4, naming the file and the errno text, nothing left that resume would keep), --overwrite
that removes only dask-enrich's own files, and failed input checks that do not block a rerun."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich import storage
from dask_enrich.engine import inputs as engine_inputs, run_enrichment, writer
from dask_enrich.errors import ConfigError, InputError, RunFailure
from dask_enrich.manifest import manifest_from_names

KEEP = EnrichConfig(keep_columns=("row_id",))
SCORES_ONLY = manifest_from_names(["donor_score", "splice_probability", "donor_acceptor_logodds",
                                   "score_difference_ratio"])


def _positions(n: int, genes: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gene = np.sort(rng.integers(0, genes, n))
    d, a = rng.random(n) * 0.6, rng.random(n) * 0.3
    frame = pd.DataFrame({"gene_id": pd.Series([f"G{g:03d}" for g in gene], dtype="str"),
                          "position": (1 + 1_000_000 * gene + np.arange(n)).astype(np.int64),
                          "donor_score": d, "acceptor_score": a, "neither_score": 1.0 - d - a,
                          "row_id": np.arange(n, dtype=np.int64)})
    return frame


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _mount_tmpfs(path: Path, options: str) -> None:
    """Mount a tmpfs at ``path`` (the test is skipped where that is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_stale_lock_of_a_dead_process_is_taken_over(client, tmp_path):
    _positions(500).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "out"
    out.mkdir()
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}
    (out / writer.LOCK_FILE).write_text(json.dumps(stale))
    said: list[str] = []
    summary = run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), config=KEEP,
                             client=client, log=said.append)
    assert summary.rows_written == 500
    assert any("taking over the lock" in line and str(stale["pid"]) in line for line in said), said
    assert not (out / writer.LOCK_FILE).exists()  # released at the end


@pytest.mark.parametrize("mode", ["new", "resume", "overwrite"])
def test_a_locked_out_is_refused_whatever_the_mode(client, tmp_path, mode):
    _positions(300).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "out"
    run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), config=KEEP, client=client)
    before = sorted(p.name for p in out.iterdir())
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-12-01T10:00:00+00:00"}
    (out / writer.LOCK_FILE).write_text(json.dumps(holder))  # a live process: this one
    with pytest.raises(ConfigError, match=rf"locked by another run \(pid {os.getpid()} on "):
        run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), config=KEEP,
                       client=client, mode=mode)
    assert sorted(p.name for p in out.iterdir()) == sorted(before + [writer.LOCK_FILE])
    assert json.loads((out / writer.LOCK_FILE).read_text()) == holder  # not taken, not removed
    # a lock of another host is never taken over (its pid cannot be checked from here)
    (out / writer.LOCK_FILE).write_text(json.dumps({**holder, "pid": _dead_pid(), "host": "elsewhere"}))
    with pytest.raises(ConfigError, match="locked by another run .* on elsewhere"):
        run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), config=KEEP,
                       client=client, mode=mode)


def test_a_read_only_out_fails_with_exit_4_before_any_work(client, tmp_path, monkeypatch):
    _positions(300).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "ro"
    _mount_tmpfs(out, "ro,size=1m")
    try:
        def no_work(*args, **kwargs):
            raise AssertionError("work started on a read-only OUT")

        monkeypatch.setattr(engine_inputs, "gene_counts", no_work)
        with pytest.raises(RunFailure, match=rf"cannot write {out}/_LOCK.json: Read-only file system"):
            run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), config=KEEP,
                           client=client)
        assert RunFailure.exit_code == 4
        with pytest.raises(RunFailure, match="Read-only file system"):  # OUT inside it: the same
            run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out / "sub"), config=KEEP,
                           client=client)
    finally:
        _umount(out)


@pytest.mark.parametrize("exchange", ["staged", "auto"])
def test_a_full_disk_fails_with_exit_4_and_resume_completes_identically(client, tmp_path, exchange):
    """OUT on a 2 MiB tmpfs: the run fails naming a file and ENOSPC's text; no temporary or
    partial file stays, no part resume would keep is wrong; with room again, resume completes
    and equals a clean run."""
    frame = _positions(60_000, genes=30)
    frame.to_parquet(tmp_path / "p.parquet", row_group_size=4_000)
    kwargs = dict(config=KEEP, client=client, partition_rows=5_000, exchange_method=exchange)
    run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(tmp_path / "clean"), **kwargs)
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=2m")
    try:
        out = disk / "out"
        with pytest.raises(RunFailure, match=r"cannot write .*(part-\d+\.parquet|\.arrow|\.json)"
                                             r".*No space left on device") as caught:
            run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), **kwargs)
        assert "\n" not in str(caught.value).strip()
        left = [p for p in out.rglob("*") if writer.TMP_MARKER in p.name]
        assert left == [], left
        assert not (out / writer.LOCK_FILE).exists() and not (out / writer.SUCCESS_FILE).exists()
        for part in out.glob("part-*.parquet"):  # whatever stays is whole or will be redone
            record, _ = writer.verify_part(storage.url_to_fs(str(out))[0], str(out), part.name)
            assert record is None or record["rows"] == len(pd.read_parquet(part))
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = run_enrichment(str(tmp_path / "p.parquet"), SCORES_ONLY, str(out), mode="resume",
                                 **kwargs)
        assert resumed.rows_written == 60_000
        clean = sorted((tmp_path / "clean").glob("part-*.parquet"))
        assert [p.name for p in clean] == sorted(p.name for p in out.glob("part-*.parquet"))
        for path in clean:
            pd.testing.assert_frame_equal(pd.read_parquet(out / path.name), pd.read_parquet(path),
                                          check_exact=True)
    finally:
        _umount(disk)


def test_overwrite_removes_only_what_dask_enrich_wrote(client, tmp_path):
    _positions(300).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "out"
    args = (str(tmp_path / "p.parquet"), SCORES_ONLY, str(out))
    run_enrichment(*args, config=KEEP, client=client, partition_rows=100)
    (out / "notes.txt").write_text("the user's notes")
    with pytest.raises(ConfigError, match=r"holds files dask-enrich did not write \(notes.txt\)"):
        run_enrichment(*args, config=KEEP, client=client, mode="overwrite")
    assert (out / "notes.txt").read_text() == "the user's notes"
    assert (out / writer.SUCCESS_FILE).exists()  # nothing removed
    (out / "notes.txt").unlink()
    summary = run_enrichment(*args, config=KEEP, client=client, mode="overwrite", partition_rows=1000)
    assert summary.partitions == 1 and sorted(p.name for p in out.glob("part-*")) == [writer.part_name(0)]


def test_a_run_failing_its_row_checks_does_not_block_the_corrected_rerun(client, tmp_path):
    frame = _positions(400)
    bad = frame.copy()
    bad.loc[390, "donor_score"] = np.nan  # in the last gene: earlier bins are written first
    bad.to_parquet(tmp_path / "bad.parquet")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="bad.parquet"):
        run_enrichment(str(tmp_path / "bad.parquet"), SCORES_ONLY, str(out), config=KEEP,
                       client=client, partition_rows=50)
    assert not out.exists() or list(out.iterdir()) == []
    frame.to_parquet(tmp_path / "bad.parquet")  # corrected in place
    summary = run_enrichment(str(tmp_path / "bad.parquet"), SCORES_ONLY, str(out), config=KEEP,
                             client=client, partition_rows=50)
    assert summary.rows_written == 400


def test_a_full_disk_at_success_json_names_the_file_and_leaves_no_temporary_file(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=64k")
    try:
        with pytest.raises(RunFailure, match=rf"cannot write {disk}/_SUCCESS.json: No space left on device"):
            writer.write_success(str(disk), {"files": ["x" * 100] * 2_000})  # ~200 kB of JSON
        assert list(disk.iterdir()) == []
    finally:
        _umount(disk)

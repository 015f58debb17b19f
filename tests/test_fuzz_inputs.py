"""Fuzz-style inputs: truncated and byte-flipped Parquet and CSV files fed to ``dask-enrich run``.

A clean failure is: exit code 2 (bad input), one message line and no Python traceback (without
``--debug``), no ``_SUCCESS.json``, and no hang (every run has a time limit). A corruption that
still parses may also succeed, but then everything written must be valid (scores finite in [0, 1],
positions inside their annotated gene) and ``_SUCCESS.json`` must record rows in = written + rejected.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.engine import writer
from tests.engine.conftest import client  # noqa: F401  (session LocalCluster fixture)
from tests.test_bad_inputs import GENES, clean_positions, cli, world  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def source_bytes(tmp_path: Path, kind: str) -> bytes:
    """A clean 300-row positions file as bytes (parquet, csv or csv.gz)."""
    frame = clean_positions(300, seed=5)
    canonical = ["gene_id", "position", "donor_score", "acceptor_score", "neither_score", "strand"]
    frame = frame[canonical + [c for c in frame.columns if c not in canonical]]
    path = tmp_path / f"clean.{kind}"
    if kind == "parquet":
        frame.to_parquet(path, index=False)
    elif kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_csv(path, index=False, compression="gzip")
    return path.read_bytes()


def truncate(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def flip(data: bytes, seed: int, count: int = 3) -> bytes:
    """``count`` bytes at seeded offsets XOR 0xFF."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for offset in rng.integers(0, len(data), count):
        out[offset] ^= 0xFF
    return bytes(out)


def outcome_problems(code: int, err: str, out: Path) -> list[str]:
    """What is wrong with the outcome of a run on a corrupt input ([] when it is clean)."""
    problems = []
    if "Traceback" in err:
        problems.append("a traceback without --debug")
    if code == 0:
        success = out / writer.SUCCESS_FILE
        if not success.exists():
            return problems + ["exit 0 without _SUCCESS.json"]
        rows = json.loads(success.read_text())["rows"]
        if rows["in"] != rows["written"] + rows["rejected"]:
            problems.append(f"row invariant broken: {rows}")
        parts = writer.part_files(str(out))
        if parts:
            written = pd.concat(pd.read_parquet(p) for p in parts)
            scores = written[["donor_score", "acceptor_score"]].to_numpy()
            if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
                problems.append("invalid scores were written")
            for gene, (start, end, _) in GENES.items():
                pos = written.loc[written["gene_id"] == gene, "position"]
                if ((pos < start) | (pos > end)).any():
                    problems.append(f"positions outside {gene} were written")
            if not written["gene_id"].isin(list(GENES)).all():
                problems.append("rows of genes absent from the annotation were written")
    else:
        if code != 2:
            problems.append(f"exit code {code} (bad input is 2): {err.strip()[-300:]}")
        lines = [line for line in err.splitlines() if line.startswith("dask-enrich: error:")]
        if len(lines) != 1:
            problems.append(f"expected one error line, got: {err.strip()[-300:]}")
        if (out / writer.SUCCESS_FILE).exists():
            problems.append("_SUCCESS.json written by a failed run")
    return problems


def run_corrupt(capsys, client, world, tmp_path: Path, name: str, data: bytes) -> list[str]:
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / f"out_{name.replace('.', '_')}"
    code, _, err = cli(capsys, client, "--positions", str(path), "--manifest", world["genomic"],
                       "--cache", world["cache"], "--out", str(out))
    return [f"{name}: {p}" for p in outcome_problems(code, err, out)]


# --- Parquet ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.95, 0.999])
def test_truncated_parquet_fails_cleanly(world, client, tmp_path, capsys, fraction):
    data = truncate(source_bytes(tmp_path, "parquet"), fraction)
    problems = run_corrupt(capsys, client, world, tmp_path, "positions.parquet", data)
    assert problems == []


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_byte_flipped_input_fails_cleanly_or_writes_only_valid_rows(world, client, tmp_path, capsys,
                                                                    kind):
    clean = source_bytes(tmp_path, kind)
    problems = []
    for seed in range(3):
        problems += run_corrupt(capsys, client, world, tmp_path, f"{kind[0]}{seed}.{kind}",
                                flip(clean, seed))
    assert problems == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_many_byte_flipped_input_files(world, client, tmp_path, capsys, kind):
    clean = source_bytes(tmp_path, kind)
    problems = []
    for seed in range(100, 140):
        problems += run_corrupt(capsys, client, world, tmp_path, f"{kind[0]}{seed}.{kind}",
                                flip(clean, seed, count=1 + seed % 4))
    assert problems == []


# --- CSV -------------------------------------------------------------------------------------------
def test_csv_truncated_in_the_middle_of_a_row_fails_cleanly(world, client, tmp_path, capsys):
    data = source_bytes(tmp_path, "csv")
    last = data.rstrip(b"\n").rindex(b"\n") + 1
    cut = data.index(b",", data.index(b",", last) + 1) + 4  # the last row ends inside donor_score
    problems = run_corrupt(capsys, client, world, tmp_path, "positions.csv", data[:cut])
    assert problems == []


def test_csv_truncated_to_nothing_or_inside_the_header_fails_cleanly(world, client, tmp_path, capsys):
    data = source_bytes(tmp_path, "csv")
    problems = run_corrupt(capsys, client, world, tmp_path, "empty.csv", b"")
    problems += run_corrupt(capsys, client, world, tmp_path, "header.csv", data[:25])
    assert problems == []


def test_csv_with_a_non_utf8_byte_or_a_broken_row_fails_cleanly(world, client, tmp_path, capsys):
    data = source_bytes(tmp_path, "csv")
    lines = data.split(b"\n")
    bad_byte = b"\n".join(lines[:50] + [lines[50][:5] + b"\xff" + lines[50][6:]] + lines[51:])
    extra_field = b"\n".join(lines[:60] + [lines[60] + b",0.5"] + lines[61:])
    problems = run_corrupt(capsys, client, world, tmp_path, "bad_byte.csv", bad_byte)
    problems += run_corrupt(capsys, client, world, tmp_path, "extra_field.csv", extra_field)
    assert problems == []


def test_truncated_gzip_csv_fails_cleanly(world, client, tmp_path, capsys):
    data = source_bytes(tmp_path, "csv.gz")
    problems = run_corrupt(capsys, client, world, tmp_path, "positions.csv.gz", truncate(data, 0.6))
    assert problems == []


# --- the real console script -------------------------------------------------------------------------
def test_console_script_on_a_truncated_parquet_file_exits_2_without_traceback(tmp_path, world):
    path = tmp_path / "positions.parquet"
    path.write_bytes(truncate(source_bytes(tmp_path, "parquet"), 0.5))
    args = [sys.executable, "-m", "dask_enrich.cli", "run", "--positions", str(path),
            "--manifest", world["scores"], "--out", str(tmp_path / "out"), "--workers", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "positions.parquet" in done.stderr
    assert not (tmp_path / "out" / writer.SUCCESS_FILE).exists()
    debug = subprocess.run(args + ["--debug"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_console_script_on_a_csv_that_breaks_on_a_worker_exits_2_without_traceback(tmp_path, world):
    """The read fails inside a worker of the CLI's own LocalCluster: still one clean line."""
    path = tmp_path / "positions.csv"
    lines = source_bytes(tmp_path, "csv").split(b"\n")
    # beyond the first 100 rows and 8 kB, which the client reads for the columns and the meta
    path.write_bytes(b"\n".join(lines[:250] + [lines[250][:5] + b"\xff" + lines[250][6:]] + lines[251:]))
    args = [sys.executable, "-m", "dask_enrich.cli", "run", "--positions", str(path),
            "--manifest", world["scores"], "--out", str(tmp_path / "out"), "--workers", "1",
            "--quiet"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "positions.csv" in done.stderr
    assert not (tmp_path / "out" / writer.SUCCESS_FILE).exists()

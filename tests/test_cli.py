"""The dask-enrich command line: help, the features listing, run, messages and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.cli import build_parser, main
from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.engine import writer
from dask_enrich.errors import ConfigError, InputError, ManifestError, MissingFeatureError, RunFailure
from dask_enrich.features import registry
from dask_enrich.genome.cache import load_cached
from dask_enrich.manifest import load_manifest
from tests.engine.conftest import (MODEL_DIR, SLICE_FASTA, SLICE_GTF, client,  # noqa: F401
                                   positions_in_genes)

SCORES = ["donor_score", "splice_probability", "probability_entropy"]


def _inputs(tmp_path: Path, n: int = 500) -> tuple[str, str]:
    genes = pd.DataFrame({"gene_start": [1, 5_000, 9_000], "gene_end": [3_000, 6_000, 9_500]},
                         index=pd.Index(["g1", "g2", "g3"], name="gene_id"))
    positions_in_genes(genes, n, seed=2).to_parquet(tmp_path / "p.parquet")
    (tmp_path / "m.txt").write_text("\n".join(SCORES) + "\n")
    return str(tmp_path / "p.parquet"), str(tmp_path / "m.txt")


def test_features_lists_every_registry_feature(capsys):
    assert main(["features"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines if line.strip() and not line[0].isdigit()]
    expected = [f.name for f in registry.builtin_features()]
    assert names[: len(expected)] == expected and names[len(expected)] == "{k}mer_{KMER}"
    row = next(line for line in lines if line.startswith("gene_length "))
    assert "genomic" in row and "int64" in row
    assert main(["features", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed][:-1] == expected
    assert {r["name"]: r["dtype"] for r in listed}["donor_is_local_peak"] == "int64"


def test_every_run_option_is_explained():
    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    for option in ("--positions", "--manifest", "--track", "--genome", "--annotation", "--cache",
                   "--out", "--missing", "--resume", "--overwrite", "--scheduler", "--workers",
                   "--threads-per-worker", "--memory-limit", "--partition-rows", "--keep-columns",
                   "--select", "--coordinates", "--debug"):
        assert option in run._option_string_actions
    text = " ".join(run.format_help().split())
    assert "exit codes: 0 success, 2 bad input" in text and "LOW <= max(donor, acceptor) < HIGH" in text


def test_run_on_a_scheduler_address_prints_a_summary(client, tmp_path, capsys):
    positions, manifest = _inputs(tmp_path)
    out = str(tmp_path / "out")
    code = main(["run", "--positions", positions, "--manifest", manifest, "--out", out,
                 "--scheduler", client.scheduler.address, "--partition-rows", "150",
                 "--keep-columns", "row_id"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "rows written  500" in captured.out and "dashboard" in captured.err
    bins = int(captured.err.split("plan: ")[1].split()[0])
    assert bins == 3 and "partitions 3/3" in captured.err
    written = pd.concat(pd.read_parquet(f) for f in writer.part_files(out))
    assert sorted(written["row_id"]) == list(range(500))
    assert list(written.columns) == ["gene_id", "position", "row_id", *SCORES]
    # the same again: refused (3); with --resume: nothing to redo (0); both flags: usage error (2)
    args = ["run", "--positions", positions, "--manifest", manifest, "--out", out,
            "--scheduler", client.scheduler.address, "--partition-rows", "150", "--keep-columns", "row_id"]
    assert main(args) == ConfigError.exit_code == 3
    err = capsys.readouterr().err
    assert "not empty" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--resume", "--quiet"]) == 0
    assert "3 resumed" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        main([*args, "--resume", "--overwrite"])
    assert caught.value.code == 2


@pytest.mark.parametrize("case", ["missing_column", "bad_manifest", "missing_features", "genome_only",
                                  "no_input", "bad_cache"])
def test_failures_exit_with_their_code_and_one_line(case, tmp_path, capsys):
    positions, manifest = _inputs(tmp_path, 50)
    args = ["run", "--positions", positions, "--manifest", manifest, "--out", str(tmp_path / "o"),
            "--workers", "1"]
    if case == "missing_column":
        pd.read_parquet(positions).rename(columns={"acceptor_score": "acceptor_prob"}).to_parquet(positions)
        expected, words = InputError.exit_code, ["p.parquet", "'acceptor_score'", "acceptor_prob"]
    elif case == "bad_manifest":
        Path(manifest).write_text("donor_score\ndonor_scor\n")
        expected, words = ManifestError.exit_code, ["donor_scor", "unknown"]
    elif case == "missing_features":
        args[args.index(manifest)] = str(MODEL_DIR)
        expected, words = MissingFeatureError.exit_code, ["--genome", "--missing impute", "64 k-mers"]
    elif case == "genome_only":
        args += ["--genome", positions]
        expected, words = ConfigError.exit_code, ["--annotation"]
    elif case == "no_input":
        args = ["run", "--manifest", manifest, "--out", str(tmp_path / "o")]
        expected, words = ConfigError.exit_code, ["--positions", "--track"]
    else:
        args += ["--cache", str(tmp_path / "nowhere")]
        expected, words = InputError.exit_code, ["nowhere", "build-cache"]
    assert main(args) == expected
    err = capsys.readouterr().err
    assert err.startswith("dask-enrich: error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "o").exists()  # refused before any work
    if case == "missing_column":
        with pytest.raises(InputError):
            main([*args, "--debug"])


def test_exit_codes_of_the_error_classes():
    assert (InputError.exit_code, ManifestError.exit_code, ConfigError.exit_code,
            MissingFeatureError.exit_code, RunFailure.exit_code) == (2, 2, 3, 3, 4)


def test_the_workers_forkserver_starts_early_only_for_commands_on_a_local_cluster():
    """The command line starts the LocalCluster's forkserver before parsing, judged from the words
    alone: run/score/demo/predict-base without a scheduler option or --help."""
    from dask_enrich.cli import starts_local_cluster

    assert starts_local_cluster(["run", "--track", "t", "--manifest", "m", "--out", "o"])
    assert starts_local_cluster(["--log-level", "debug", "score", "--positions", "p"])
    assert starts_local_cluster(["-v", "demo", "--out", "o"])
    for argv in (["features"], ["--log-level", "run"], ["run", "--scheduler", "tcp://h:1"],
                 ["run", "--scheduler-file=s.json"], ["run", "--help"], ["-h"], [], ["verify", "run"]):
        assert not starts_local_cluster(argv), argv


def test_a_scoring_command_lines_workers_start_with_the_model_library_imported():
    """score and --score start the forkserver with xgboost imported (each worker would import it
    at its first bin); other commands do not."""
    import subprocess
    import sys

    from dask_enrich.cli import scores

    assert scores(["score", "--track", "t"]) and scores(["run", "--score", "--positions", "p"])
    assert scores(["--log-level", "info", "demo", "--score"])
    assert not scores(["run", "--track", "t"]) and not scores(["--log-level", "score", "run"])
    code = ("import sys\n"
            "if __name__ == '__main__':\n"
            "    from distributed import Client\n"
            "    from dask_enrich.engine import cluster\n"
            "    assert cluster.start_forkserver(scoring=sys.argv[1] == 'yes')\n"
            "    with cluster.make_local_cluster(workers=1) as c, Client(c) as client:\n"
            "        print(list(client.run(lambda: 'xgboost' in sys.modules).values()))\n")
    for flag, expected in (("yes", "[True]"), ("no", "[False]")):
        done = subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True,
                              timeout=120)
        assert done.stdout.strip().splitlines()[-1:] == [expected], done.stderr[-2000:]


def test_the_package_and_the_command_line_import_no_pandas_before_the_command_runs():
    """`import dask_enrich` and the cluster module (what the command line needs to start the
    workers' forkserver) import neither pandas nor distributed."""
    import os

    code = ("import sys, dask_enrich, dask_enrich.cli, dask_enrich.engine.cluster; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'distributed', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_closed_stdout_pipe_exits_quietly():
    """`dask-enrich features | head -1`: the reader closes the pipe; no BrokenPipeError shown."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line (as `head` after its lines)
    proc = subprocess.Popen([sys.executable, "-m", "dask_enrich.cli", "features"],
                            stdout=write, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    os.close(write)
    stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert stderr == ""


@pytest.mark.slow
def test_console_script_local_cluster_and_resume_after_kill(tmp_path):
    """The real command in a subprocess (its own LocalCluster), killed mid-run, then resumed: the
    output equals an uninterrupted run's."""
    genes = pd.DataFrame({"gene_start": np.arange(40) * 20_000 + 1, "gene_end": np.arange(40) * 20_000 + 15_000},
                         index=pd.Index([f"g{i:02d}" for i in range(40)], name="gene_id"))
    positions_in_genes(genes, 400_000, seed=3).to_parquet(tmp_path / "p.parquet", row_group_size=50_000)
    (tmp_path / "m.txt").write_text("\n".join(SCORES + ["context_max", "donor_signal_strength"]) + "\n")
    base = [sys.executable, "-m", "dask_enrich.cli", "run", "--positions", str(tmp_path / "p.parquet"),
            "--manifest", str(tmp_path / "m.txt"), "--workers", "2", "--partition-rows", "10000",
            "--keep-columns", "row_id"]
    full = subprocess.run([*base, "--out", str(tmp_path / "full")], capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    process = subprocess.Popen([*base, "--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "cut").glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "cut" / writer.SUCCESS_FILE).exists()
    resumed = subprocess.run([*base, "--out", str(tmp_path / "cut"), "--resume"], capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    full_parts = writer.part_files(str(tmp_path / "full"))
    cut_parts = writer.part_files(str(tmp_path / "cut"))
    assert [Path(p).name for p in full_parts] == [Path(p).name for p in cut_parts]
    for a, b in zip(full_parts, cut_parts):
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), check_exact=True)


def test_genome_and_annotation_build_the_cache_beside_out_then_reuse_it(client, tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    genes = pd.DataFrame({"gene_start": [3631, 6788], "gene_end": [5899, 9130]},
                         index=pd.Index(["AT1G01010", "AT1G01020"], name="gene_id"))  # + and - strand
    positions = positions_in_genes(genes, 300, seed=4)
    positions.to_csv(tmp_path / "p.csv", index=False)
    args = ["run", "--positions", str(tmp_path / "p.csv"), "--manifest", str(MODEL_DIR),
            "--genome", str(SLICE_FASTA), "--annotation", str(SLICE_GTF),
            "--out", str(tmp_path / "runs" / "out"), "--scheduler", client.scheduler.address,
            "--keep-columns", "row_id"]
    assert main(args) == 0, capsys.readouterr().err
    caches = list((tmp_path / "runs" / ".dask-enrich-cache").glob("*/cache.json"))
    assert len(caches) == 1
    assert main([*args, "--overwrite"]) == 0
    assert "reusing the genomic cache" in capsys.readouterr().err
    written = pd.concat(pd.read_parquet(f) for f in writer.part_files(str(tmp_path / "runs" / "out")))
    reference, _ = enrich(positions, load_manifest(MODEL_DIR), genomic=load_cached(caches[0].parent),
                          config=EnrichConfig(keep_columns=("row_id",)))
    pd.testing.assert_frame_equal(written.sort_values("row_id").reset_index(drop=True),
                                  reference.sort_values("row_id").reset_index(drop=True))
    assert main([*args, "--overwrite", "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    assert len(list((tmp_path / "elsewhere").glob("*/cache.json"))) == 1

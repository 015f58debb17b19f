"""``dask enrich ...`` through Dask's ``dask_cli`` entry-point group.

The installed metadata of this environment may come from another checkout (an editable install),
so the test writes this tree's entry points, exactly as ``pyproject.toml`` declares them, into a
throwaway ``.dist-info`` first on ``PYTHONPATH`` (the standard ``entry_points.txt`` format that
pip would install; nothing is installed): ``python -m dask`` then discovers and loads the
``enrich`` command with Dask's own loader, as it would after ``pip install``."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dask_enrich._version import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist_info(tmp_path_factory) -> Path:
    """A directory holding this tree's ``dask_enrich-*.dist-info`` (name, version, entry points)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    assert groups.get("dask_cli") == {"enrich": "dask_enrich.dask_cli:enrich"}
    root = tmp_path_factory.mktemp("site")
    version = __version__  # pyproject reads it from dask_enrich/_version.py
    info = root / f"dask_enrich-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {version}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
        for group, entries in groups.items()))
    return root


def dask(dist_info: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(dist_info), str(ROOT)]),
           "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "dask", *args], capture_output=True, text=True,
                          env=env, timeout=180, cwd=dist_info)


def test_dask_lists_enrich_beside_scheduler_and_worker(dist_info):
    done = dask(dist_info, "--help")
    assert done.returncode == 0, done.stderr
    commands = {line.split()[0] for line in done.stdout.split("Commands:", 1)[1].splitlines()
                if line.strip()}
    assert {"enrich", "scheduler", "worker"} <= commands


def test_dask_enrich_help_is_the_dask_enrich_command(dist_info):
    done = dask(dist_info, "enrich", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: dask enrich ")
    for command in ("run", "score", "build-cache", "predict-base", "skew", "features", "demo"):
        assert command in done.stdout
    run_help = dask(dist_info, "enrich", "run", "--help")
    assert run_help.returncode == 0 and "--partition-rows" in run_help.stdout
    assert run_help.stdout.startswith("usage: dask enrich run ")


def test_dask_enrich_passes_arguments_and_exit_codes_through(dist_info):
    features = dask(dist_info, "enrich", "features")
    assert features.returncode == 0, features.stderr
    assert "donor_score" in features.stdout
    bad = dask(dist_info, "enrich", "run", "--manifest", "m", "--out", str(dist_info / "o"))
    assert bad.returncode == 3  # bad configuration (no --positions or --track), not click's 2
    assert "give --positions" in bad.stderr


def test_dask_config_shows_the_enrich_section(dist_info):
    """Loading the entry point imports the package, which adds its config defaults."""
    done = dask(dist_info, "config", "get", "enrich.partition-rows")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200000"

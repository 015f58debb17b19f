"""The ``enrich`` section of Dask's configuration: shipped defaults, a user's YAML file and
environment variables (checked in fresh interpreters, as Dask reads both at import), explicit
values first, bad values named."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest

from dask_enrich import settings
from dask_enrich.engine.partition import DEFAULT_PARTITION_ROWS
from dask_enrich.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {"partition-rows": 200_000, "cache-dir": None, "workers": None, "threads-per-worker": 1,
            "memory-limit": "auto", "missing": "error", "host": "127.0.0.1", "worker-start": "forkserver"}


def enrich_config_in_fresh_process(**env: str) -> dict:
    code = ("import json, sys, dask, dask_enrich; print(json.dumps({k: dask.config.get('enrich.' + k)"
            " for k in json.loads(sys.argv[1])}))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(DEFAULTS))], capture_output=True, text=True, timeout=60,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_shipped_defaults_are_in_dask_config():
    assert dask.config.get("enrich") == DEFAULTS
    assert settings.get("partition-rows") == DEFAULT_PARTITION_ROWS  # one value, two names


def test_user_yaml_and_environment_override_the_defaults(tmp_path):
    (tmp_path / "enrich.yaml").write_text("enrich:\n  workers: 3\n  missing: impute\n"
                                          "  partition-rows: 50000\n")
    seen = enrich_config_in_fresh_process(DASK_CONFIG=str(tmp_path))
    assert seen == {**DEFAULTS, "workers": 3, "missing": "impute", "partition-rows": 50_000}
    seen = enrich_config_in_fresh_process(DASK_CONFIG=str(tmp_path),
                                          DASK_ENRICH__PARTITION_ROWS="1234",
                                          DASK_ENRICH__MEMORY_LIMIT="3GiB")
    assert seen == {**DEFAULTS, "workers": 3, "missing": "impute", "partition-rows": 1234,
                    "memory-limit": "3GiB"}


def test_explicit_values_win_and_bad_values_are_named():
    with dask.config.set({"enrich.partition-rows": 777}):
        assert settings.get("partition-rows") == 777
        assert settings.get("partition-rows", 5) == 5
    for key, bad in (("partition-rows", "lots"), ("partition-rows", 0), ("workers", 2.5),
                     ("missing", "guess"), ("memory-limit", "4 lightyears"), ("host", "")):
        with dask.config.set({f"enrich.{key}": bad}), pytest.raises(ConfigError) as caught:
            settings.get(key)
        message = str(caught.value)
        assert f"enrich.{key}" in message and repr(bad) in message
        assert "DASK_ENRICH__" + key.upper().replace("-", "_") in message


def test_cli_options_default_to_dask_config(monkeypatch):
    """The command line leaves the defaults to Dask's config (None), so a config value applies
    unless the option is given."""
    from dask_enrich.cli import build_parser

    args = build_parser().parse_args(["run", "--positions", "p", "--manifest", "m", "--out", "o"])
    assert (args.partition_rows, args.workers, args.threads_per_worker, args.memory_limit,
            args.missing, args.cache_dir, args.scheduler, args.scheduler_file) == (None,) * 8
    args = build_parser().parse_args(["run", "--positions", "p", "--manifest", "m", "--out", "o",
                                      "--partition-rows", "9", "--missing", "impute"])
    with dask.config.set({"enrich.partition-rows": 777, "enrich.missing": "error"}):
        assert settings.get("partition-rows", args.partition_rows) == 9
        assert settings.get("missing", args.missing) == "impute"


def test_cache_dir_from_the_config_is_made_absolute(tmp_path, monkeypatch):
    """enrich.cache-dir (relative here) decides where a run builds its cache, as an absolute path
    (the workers open it by path from other working directories)."""
    from dask_enrich.engine.run import resolve_cache
    from tests.conftest import SLICE_FASTA, SLICE_GTF

    monkeypatch.chdir(tmp_path)
    with dask.config.set({"enrich.cache-dir": "caches"}):
        built = Path(resolve_cache(None, str(SLICE_FASTA), str(SLICE_GTF), str(tmp_path / "out")))
    assert built.is_absolute() and built.parent == tmp_path / "caches"
    assert (built / "genes.parquet").is_file()

"""options.py: every choice and default declared once, and the CLI, Dask's config (enrich.yaml),
the dataclasses and the engine agreeing with it."""
from __future__ import annotations

import inspect
import typing

import dask
import pytest
import yaml

from dask_enrich import options, settings
from dask_enrich.cli import build_parser
from dask_enrich.config import EnrichConfig
from dask_enrich.errors import ConfigError
from dask_enrich.selection import Selection


def _actions(command: str) -> dict[str, object]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {a.dest: a for a in sub._actions}


#: (command, option dest) -> the options default; None for the options Dask's config decides
CLI_DEFAULTS = {
    ("run", "missing"): None, ("run", "on_bad_rows"): "error", ("run", "coordinates"): "genomic",
    ("run", "context_track"): "larger", ("run", "select"): "band", ("run", "band_low"): 0.02,
    ("run", "band_high"): 0.80, ("run", "max_below"): 0.80, ("run", "entropy_above"): 0.9,
    ("run", "spread_below"): 0.1, ("run", "exchange"): "auto", ("run", "partition_rows"): None,
    ("run", "workers"): None, ("run", "threads_per_worker"): None, ("run", "memory_limit"): None,
    ("run", "cache_dir"): None,
    ("skew", "coordinates"): "genomic", ("skew", "context_track"): "larger", ("skew", "workers"): None,
    ("predict-base", "workers"): None, ("predict-base", "partition_rows"): None,
    ("demo", "workers"): 2,
}
#: CLI options left to Dask's config -> their enrich.* key
CONFIG_BACKED = {"missing": "missing", "partition_rows": "partition-rows", "workers": "workers",
                 "threads_per_worker": "threads-per-worker", "memory_limit": "memory-limit",
                 "cache_dir": "cache-dir"}
#: CLI option -> the options default it reads
OPTION_DEFAULT = {
    "on_bad_rows": options.DEFAULT_ON_BAD_ROWS, "coordinates": options.DEFAULT_COORDINATES,
    "context_track": options.DEFAULT_CONTEXT_TRACK, "select": options.DEFAULT_SELECT_RULE,
    "band_low": options.SELECTION.low, "band_high": options.SELECTION.high,
    "max_below": options.SELECTION.max_below, "entropy_above": options.SELECTION.entropy_above,
    "spread_below": options.SELECTION.spread_below, "exchange": options.DEFAULT_EXCHANGE,
}


@pytest.mark.parametrize("command,dest", sorted(CLI_DEFAULTS))
def test_every_cli_default_is_the_options_default_and_the_config_default(command, dest):
    action = _actions(command)[dest]
    assert action.default == CLI_DEFAULTS[command, dest]  # the value written down by hand
    if command == "demo":
        assert action.default == options.DEFAULT_DEMO_WORKERS
    elif dest in CONFIG_BACKED:  # None on the command line: Dask's config (enrich.yaml) decides
        assert action.default is None
        key = CONFIG_BACKED[dest]
        assert dask.config.get(f"enrich.{key}") == options.CONFIG_KEYS[key]
        assert settings.get(key) == options.CONFIG_KEYS[key]
    else:
        assert action.default == OPTION_DEFAULT[dest]


def test_workers_default_is_one_default():
    """The issue's bug: --workers defaulted to the CPU count in `run` but 2 elsewhere. `run`,
    `score`, `skew` and `predict-base` now all leave it to enrich.workers (null: the CPU count)."""
    for command in ("run", "score", "skew", "predict-base"):
        assert _actions(command)["workers"].default is options.DEFAULT_WORKERS is None
    assert options.CONFIG_KEYS["workers"] is None and dask.config.get("enrich.workers") is None
    from dask_enrich.engine.run import run_enrichment

    assert inspect.signature(run_enrichment).parameters["workers"].default is None


def test_cli_choices_come_from_the_literals():
    want = {"missing": ("error", "impute"), "on_bad_rows": ("error", "quarantine"),
            "coordinates": ("genomic", "gene_relative"), "context_track": ("larger", "donor", "acceptor"),
            "select": ("band", "entropy"), "exchange": ("auto", "staged", "p2p"),
            "log_level": ("debug", "info", "warning", "error")}
    run = _actions("run")
    for dest, choices in want.items():
        assert tuple(run[dest].choices) == choices, dest
    skew = _actions("skew")
    assert tuple(skew["coordinates"].choices) == want["coordinates"]
    assert tuple(skew["context_track"].choices) == want["context_track"]
    assert options.MISSING == typing.get_args(typing.get_type_hints(EnrichConfig)["missing"])
    assert options.SELECT_RULES == typing.get_args(typing.get_type_hints(Selection)["rule"])


def test_shipped_yaml_holds_exactly_the_options_defaults():
    with open(settings.DEFAULTS_FILE) as handle:
        shipped = yaml.safe_load(handle)["enrich"]
    assert shipped == options.CONFIG_KEYS
    assert shipped == {"partition-rows": 200_000, "cache-dir": None, "workers": None,
                       "threads-per-worker": 1, "memory-limit": "auto", "missing": "error",
                       "host": "127.0.0.1", "worker-start": "forkserver"}


def test_dataclass_defaults_are_the_options_defaults():
    config = EnrichConfig()
    assert (config.missing, config.context_track, config.coordinates) == (
        options.DEFAULT_MISSING, options.DEFAULT_CONTEXT_TRACK, options.DEFAULT_COORDINATES)
    assert (config.missing, config.context_track, config.coordinates) == ("error", "larger", "genomic")
    assert Selection() == options.SELECTION
    assert (Selection().rule, Selection().low, Selection().high) == ("band", 0.02, 0.80)


def test_engine_and_logging_agree_with_the_options():
    from dask_enrich.engine import quarantine as rejects, writer
    from dask_enrich.engine.partition import DEFAULT_PARTITION_ROWS
    from dask_enrich.engine.run import run_enrichment
    from dask_enrich.logs import LEVELS

    assert DEFAULT_PARTITION_ROWS == options.DEFAULT_PARTITION_ROWS == 200_000
    assert tuple(rejects.ON_BAD_ROWS) == options.ON_BAD_ROWS
    assert typing.get_args(writer.Mode) == options.OUTPUT_MODES
    assert tuple(LEVELS) == options.LOG_LEVELS
    params = inspect.signature(run_enrichment).parameters
    assert params["exchange_method"].default == options.DEFAULT_EXCHANGE
    assert params["on_bad_rows"].default == options.DEFAULT_ON_BAD_ROWS
    assert params["mode"].default in options.OUTPUT_MODES


@pytest.mark.parametrize("make,message", [
    (lambda: EnrichConfig(missing="skip"), "missing must be 'error' or 'impute', not 'skip'"),
    (lambda: EnrichConfig(context_track="x"),
     "context_track must be 'larger', 'donor' or 'acceptor', not 'x'"),
    (lambda: EnrichConfig(coordinates="x"), "coordinates must be 'genomic' or 'gene_relative', not 'x'"),
    (lambda: Selection(rule="x"), "selection rule must be 'band' or 'entropy', not 'x'"),
])
def test_bad_choices_name_the_choices(make, message):
    with pytest.raises(ConfigError) as caught:
        make()
    assert str(caught.value) == message

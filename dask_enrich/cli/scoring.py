"""The meta-model scoring options of ``run`` (``--score``) and ``score``."""
from __future__ import annotations

from typing import Any

from ..engine.models import ScoreOptions
from ..errors import ConfigError


SCORE_HELP = "enrich and apply each model's meta-model: donor/acceptor/neither meta scores"
SCORE_DESCRIPTION = (
    "Enrich positions (as `run`) and apply the meta-model of each --manifest model directory\n"
    "(model.json + model file) in the same pass: writes the identifying columns and donor_meta,\n"
    "acceptor_meta, neither_meta (--keep-features adds the features). With --track and no\n"
    "--positions, --selective writes every track position once: meta scores where uncertain,\n"
    "base scores elsewhere, and a 'rescored' flag. Same as `dask-enrich run --score`.")


def add_score_arguments(parser: Any, command: str) -> None:
    """The scoring options of ``run`` (``--score`` switches them on) and ``score``."""
    s = parser.add_argument_group("meta-model scoring" + (" (with --score)" if command == "run" else ""))
    if command == "run":
        s.add_argument("--score", action="store_true",
                       help="apply each --manifest model directory's meta-model (model.json) in the "
                            "same pass: write donor_meta, acceptor_meta, neither_meta (as `score`)")
    s.add_argument("--keep-features", action="store_true",
                   help="write the features too (default: identifying columns and meta scores)")
    s.add_argument("--selective", action="store_true",
                   help="with --track and no --positions: every track position once, meta scores "
                        "where uncertain (--select), base scores elsewhere, and a 'rescored' flag")
    s.add_argument("--trust-model", action="store_true",
                   help="allow model formats that run code when loaded (pickle, joblib, skops types "
                        "off the allow-list, entry points named by the model directory)")


def score_options(args: Any) -> ScoreOptions | None:
    """The ScoreOptions of parsed ``run``/``score`` arguments (None: no scoring)."""
    scoring = getattr(args, "command", None) == "score" or bool(getattr(args, "score", False))
    flags = [f for f in ("keep_features", "selective", "trust_model") if getattr(args, f, False)]
    if not scoring:
        if flags:
            raise ConfigError(f"--{flags[0].replace('_', '-')} needs --score (or `dask-enrich score`)")
        return None
    return ScoreOptions(trust_model=bool(getattr(args, "trust_model", False)),
                        keep_features=bool(getattr(args, "keep_features", False)),
                        selective=bool(getattr(args, "selective", False)))

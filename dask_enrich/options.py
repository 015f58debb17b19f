"""Choices and defaults, declared once: the run's settings, the selection rule, the run options.

Each set of choices is a ``Literal`` type and its values are read with ``typing.get_args`` (as
xarray's ``_VALIDATORS``), so the dataclasses' annotations, their checks, the command line's
``choices=`` and ``default=`` and the messages all come from here. The defaults that Dask's
configuration may override (``enrich.*``, shipped as ``enrich.yaml``) are listed in
:data:`CONFIG_KEYS`; a test checks that the YAML, these defaults and the CLI agree.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from .errors import ConfigError

# --- choices -------------------------------------------------------------------------------------
MissingPolicy = Literal["error", "impute"]
ContextTrackRule = Literal["larger", "donor", "acceptor"]
PositionCoordinates = Literal["genomic", "gene_relative"]
SelectRule = Literal["band", "entropy"]
ExchangeMethod = Literal["auto", "staged", "p2p"]
OnBadRows = Literal["error", "quarantine"]
OutputMode = Literal["new", "resume", "overwrite"]
LogLevel = Literal["debug", "info", "warning", "error"]
#: How a LocalCluster starts its workers: forked from a forkserver that imported the engine once,
#: or spawned (distributed's own way).
WorkerStart = Literal["forkserver", "spawn"]

MISSING: tuple[str, ...] = get_args(MissingPolicy)
CONTEXT_TRACK: tuple[str, ...] = get_args(ContextTrackRule)
COORDINATES: tuple[str, ...] = get_args(PositionCoordinates)
SELECT_RULES: tuple[str, ...] = get_args(SelectRule)
EXCHANGE: tuple[str, ...] = get_args(ExchangeMethod)
ON_BAD_ROWS: tuple[str, ...] = get_args(OnBadRows)
OUTPUT_MODES: tuple[str, ...] = get_args(OutputMode)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
WORKER_STARTS: tuple[str, ...] = get_args(WorkerStart)


def one_of(choices: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``: the choices as a message names them."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    """ConfigError ``"<what> must be 'a' or 'b', not 'x'"`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{what} must be {one_of(choices)}, not {value!r}")


# --- defaults ------------------------------------------------------------------------------------
#: Half-width of the sequence window, in nucleotides (seq[i - 250 : i + 250] in gene coordinates).
SEQUENCE_FLANK = 250
DEFAULT_MISSING: MissingPolicy = "error"
DEFAULT_CONTEXT_TRACK: ContextTrackRule = "larger"
DEFAULT_COORDINATES: PositionCoordinates = "genomic"
DEFAULT_SELECT_RULE: SelectRule = "band"
#: Target rows per gene partition (positions plus their genes' track rows).
DEFAULT_PARTITION_ROWS = 200_000
#: LocalCluster worker processes: None is Dask's CPU count (``dask.system.CPU_COUNT``), for
#: ``run``, ``score``, ``skew`` and ``predict-base`` alike.
DEFAULT_WORKERS: int | None = None
#: The demo's own small cluster (the bundled 1 Mb slice needs no more).
DEFAULT_DEMO_WORKERS = 2
DEFAULT_THREADS_PER_WORKER = 1
#: Per LocalCluster worker: ``auto`` is the memory divided among the workers; 0 none.
DEFAULT_MEMORY_LIMIT = "auto"
#: Interface of the LocalCluster's scheduler, workers and dashboard (nothing reachable from
#: other machines).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_EXCHANGE: ExchangeMethod = "auto"
DEFAULT_ON_BAD_ROWS: OnBadRows = "error"
DEFAULT_LOG_LEVEL: LogLevel = "info"
DEFAULT_WORKER_START: WorkerStart = "forkserver"

#: Settings that Dask's configuration may set (``enrich.<key>``), with their defaults: the shipped
#: ``enrich.yaml`` holds exactly these values.
CONFIG_KEYS: dict[str, Any] = {
    "partition-rows": DEFAULT_PARTITION_ROWS,
    "cache-dir": None,
    "workers": DEFAULT_WORKERS,
    "threads-per-worker": DEFAULT_THREADS_PER_WORKER,
    "memory-limit": DEFAULT_MEMORY_LIMIT,
    "missing": DEFAULT_MISSING,
    "host": DEFAULT_HOST,
    "worker-start": DEFAULT_WORKER_START,
}


# --- the settings of one enrichment ------------------------------------------------------------
@dataclass(frozen=True)
class EnrichConfig:
    """Settings of one enrichment run.

    missing: ``error`` stops when a manifest feature cannot be computed; ``impute`` fills it with the
        training median (from ``feature_stats.json``) or the documented constant, and reports it.
    context_track: which base-model track supplies context neighbours for a row when they come from
        a full track: ``larger`` (donor if donor_score >= acceptor_score, else acceptor), or a fixed
        ``donor``/``acceptor``.
    coordinates: ``genomic`` (1-based, as GTF) or ``gene_relative`` (MetaSpliceAI training rows:
        0-based offset from the gene's 5' end in transcript orientation), converted with the annotation.
    sequence_flank: half-width of the sequence window.
    """

    missing: MissingPolicy = DEFAULT_MISSING
    context_track: ContextTrackRule = DEFAULT_CONTEXT_TRACK
    coordinates: PositionCoordinates = DEFAULT_COORDINATES
    sequence_flank: int = SEQUENCE_FLANK
    keep_columns: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_choice("missing", self.missing, MISSING)
        check_choice("context_track", self.context_track, CONTEXT_TRACK)
        check_choice("coordinates", self.coordinates, COORDINATES)
        if self.sequence_flank < 1:
            raise ConfigError(f"sequence_flank must be positive, not {self.sequence_flank}")

    def with_(self, **changes: object) -> "EnrichConfig":
        """A copy with some settings changed."""
        return replace(self, **changes)


# --- the selection rule (see dask_enrich.selection) ----------------------------------------------
@dataclass(frozen=True)
class Selection:
    """A selection rule and its thresholds (see :mod:`dask_enrich.selection`)."""

    rule: SelectRule = DEFAULT_SELECT_RULE
    low: float = 0.02
    high: float = 0.80
    max_below: float = 0.80
    entropy_above: float = 0.9
    spread_below: float = 0.1

    def __post_init__(self) -> None:
        check_choice("selection rule", self.rule, SELECT_RULES)
        if self.rule == "band" and not (0.0 <= self.low < self.high):
            raise ConfigError(f"band selection needs 0 <= low < high, not low={self.low}, high={self.high}")
        if not 0.0 <= self.entropy_above <= 1.0:
            raise ConfigError(f"entropy threshold must lie in [0, 1], not {self.entropy_above}")
        if self.spread_below < 0 or self.max_below < 0:
            raise ConfigError("selection thresholds must not be negative")

    @property
    def needs_neither(self) -> bool:
        """True when the rule reads ``neither_score``."""
        return self.rule == "entropy"

    def to_dict(self) -> dict[str, Any]:
        keys = ("rule", "low", "high") if self.rule == "band" else (
            "rule", "max_below", "entropy_above", "spread_below")
        data = asdict(self)
        return {k: data[k] for k in keys}

    def describe(self) -> str:
        """One line for messages and summaries."""
        if self.rule == "band":
            return f"band: {self.low} <= max(donor, acceptor) < {self.high}"
        return (f"entropy: max score < {self.max_below} or normalised entropy > {self.entropy_above}"
                f" or top-two spread < {self.spread_below}")


#: The defaults of the selection thresholds (the dataclass's fields).
SELECTION = Selection()

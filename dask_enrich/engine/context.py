"""The typed objects of a run: its options (what the caller asked for) and its context (what each
worker task needs, built once on the client and shipped as one small graph key).

``run_enrichment(...)`` takes loose keywords for the CLI and the tests; they become the options
dataclasses here (:class:`InputOptions`, :class:`OutputOptions`, :class:`ClusterOptions`), checked
once. :class:`RunContext` is frozen: it is built in one place (``run._prepare``), never patched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import EnrichConfig
from ..errors import ConfigError
from ..manifest import Manifest
from ..selection import Selection
from .models import ScoreOptions, Target
from .partition import PartitionPlan
from .quarantine import ON_BAD_ROWS, BinChecks

from ..options import ExchangeMethod, OutputMode as Mode  # noqa: F401 (the engine's names)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class InputOptions:
    """The run's inputs: positions (or None: the uncertain rows of ``track``), the track, and the
    genomic cache (``cache``, or built from ``genome``/``annotation`` under ``cache_dir``)."""

    positions: str | None = None
    track: str | None = None
    cache: str | None = None
    genome: str | None = None
    annotation: str | None = None
    cache_dir: str | None = None
    gene_key: str | None = None
    seq_aliases: str | None = None
    selection: Selection = Selection()
    storage_options: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def track_only(self) -> bool:
        return self.positions is None

    def check(self) -> None:
        if self.positions is None and self.track is None:
            raise ConfigError("give --positions, or a --track to select uncertain positions from")


@dataclass(frozen=True)
class OutputOptions:
    """Where and how the run writes: OUT, ``mode`` (new, resume, overwrite), the bin size, the row
    policy and how rows reach their bin (``exchange_method``)."""

    out: str
    mode: Mode = "new"
    partition_rows: int | None = None  # None: the ``enrich`` Dask setting
    on_bad_rows: str = "error"
    exchange_method: ExchangeMethod = "auto"

    def check(self) -> None:
        if self.mode not in ("new", "resume", "overwrite"):
            raise ConfigError(f"mode must be new, resume or overwrite, not {self.mode!r}")
        if self.partition_rows is not None and self.partition_rows < 1:
            raise ConfigError(f"--partition-rows must be at least 1, not {self.partition_rows}")
        if self.on_bad_rows not in ON_BAD_ROWS:
            raise ConfigError(f"--on-bad-rows must be 'error' or 'quarantine', not {self.on_bad_rows!r}")
        if self.exchange_method not in ("auto", "staged", "p2p"):
            raise ConfigError(f"exchange must be 'auto', 'staged' or 'p2p', not {self.exchange_method!r}")


@dataclass(frozen=True)
class ClusterOptions:
    """The cluster of a run (``engine/cluster.py``): ``client``, else ``scheduler`` or
    ``scheduler_file``, else a LocalCluster of ``workers`` x ``threads_per_worker``."""

    client: Any = field(default=None, compare=False)
    scheduler: str | None = None
    scheduler_file: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | int | None = None
    processes: bool = True

    def make_client_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`.cluster.make_client`."""
        return {"scheduler": self.scheduler, "scheduler_file": self.scheduler_file,
                "workers": self.workers, "threads_per_worker": self.threads_per_worker,
                "memory_limit": self.memory_limit, "processes": self.processes}


@dataclass(frozen=True)
class RunContext:
    """Everything a worker task needs, shipped once as one small graph key."""

    manifest: Manifest
    config: EnrichConfig
    plan: PartitionPlan
    position_columns: tuple[str, ...]
    selection: Selection | None = None  # set when the positions are selected from the track
    out: str = ""
    storage_options: dict[str, Any] | None = None
    fingerprint: str = ""
    cache_path: str | None = None
    done: frozenset[int] = frozenset()
    targets: tuple[Target, ...] = ()  # the output datasets (one per manifest)
    score: ScoreOptions | None = None  # meta-model scoring
    checks: BinChecks = BinChecks()  # row checks before enrich (validate)
    track_checks: BinChecks = BinChecks()  # of track rows read for context
    gene_aliases: tuple[tuple[str, str], ...] = ()  # (input id, annotation id): version matching
    track_scanned: bool = False  # the track's rows were checked by the scan (``inputs.scanned_inputs``)

    def genomic(self):
        """The run's genomic cache, opened on this worker (once per process), or None."""
        if self.cache_path is None:
            return None
        from ..genome.cache import load_cached

        return load_cached(self.cache_path).with_gene_aliases(self.gene_aliases)

    @property
    def selective(self) -> bool:
        """Track only with ``--selective``: every track row is written or rejected."""
        return self.score is not None and self.score.selective

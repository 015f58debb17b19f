"""``run_enrichment``: positions (and/or a track) in, a Parquet dataset of features out, on Dask.

The client reads only small things: the input columns (footers/headers), the rows per gene (one
pass over ``gene_id``), and one small record per bin at the end. The plan packs genes (in order of
first appearance) into bins of about ``partition_rows`` rows, never splitting a gene. Everything
else happens on the workers. When the input is grouped by gene (every gene's rows in one input
partition, as a per-gene or per-chromosome writer leaves them, in partitions not much smaller
than the target), bins are packed within input partitions and one task per input partition reads
it, enriches each of its bins and writes each bin's file: no rows move between tasks. Otherwise
the rows reach their bin through the staged exchange (``exchange.py``: each input partition is
written once, grouped by bin, as an Arrow file under ``OUT/_staging``; each
bin reads its slices back, memory-mapped), or, with ``exchange_method="p2p"``, through Dask's
``set_index`` shuffle on the bin id with explicit integer divisions; positions and track go through
the same plan, so bin i of both is partition i. ``map_partitions`` runs the pure core on each bin
with an explicit ``meta`` (``core.output_meta``), and the writer writes the bin's Parquet file on the
worker. The manifest, config and plan travel as one small graph key; the genomic cache is opened on
each worker by path (``genome.cache.load_cached``, once per process), never shipped in the graph.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from .._version import __version__
from .. import settings as dask_settings
from ..config import EnrichConfig
from ..core import EnrichReport, check_inputs, enrich, output_meta, output_schema
from ..errors import (AllRowsRejected, ConfigError, EnrichError, InputError, PluginError, RunFailure,
                      SchedulerLost)
from ..features.registry import parse_kmer
from ..logs import LOGGER
from ..io import (POSITION_COLUMNS, TRACK_COLUMNS, InputSource, fingerprint, input_pieces,
                  inspect_input, read_dask, wanted_columns)
from ..manifest import Manifest
from ..selection import Selection, select_mask
from . import exchange, rejects, models, writer
from .cluster import WORKER_MALLOC_ENV, make_client, make_local_cluster  # noqa: F401 (re-exported)
from .partition import PartitionPlan, plan_partitions

BIN = "_bin"
#: Input grouped by gene is enriched where it is read when that gives at most this many times the
#: bins of packing genes across the input partitions (else small partitions go through the exchange)
LOCAL_BINS_FACTOR = 1.5
#: ... and when it is in at least this many input partitions (or bins): one partition of many bins
#: goes through the exchange. A constant, not the cluster's thread count: the plan must not change
#: with the cluster (a run resumed on another number of workers keeps its parts).
MIN_WHERE_READ_PARTS = 2
Progress = Callable[[int, int], None]

#: The small per-bin record the write step returns (the only data that reaches the client).
SUMMARY_META = pd.DataFrame({
    "bin": pd.Series([], dtype="int64"),
    "rows_in": pd.Series([], dtype="int64"),
    "rows_written": pd.Series([], dtype="int64"),
    "rows_rejected": pd.Series([], dtype="int64"),
    "resumed": pd.Series([], dtype="bool"),
    "report": pd.Series([], dtype="object"),
    "seconds": pd.Series([], dtype="float64"),
})
_REPORT_ATTR = "dask_enrich_report"
_ROWS_IN_ATTR = "dask_enrich_rows_in"
_REJECTED_ATTR = "dask_enrich_rows_rejected"


@dataclass
class RunSummary:
    """What a run did (also written, with more detail, to ``OUT/_SUCCESS.json``)."""

    out: str
    rows_in: int
    rows_written: int
    rows_rejected: int
    partitions: int
    partitions_resumed: int
    partitions_redone: dict[str, str]  # kept parts that failed verification: {path: why}
    imputed: dict[str, int]
    imputed_reasons: dict[str, str]
    seconds: float
    positions_per_second: float
    fingerprint: str
    success_file: str
    dashboard: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    track_rows: int | None = None
    warnings: dict[str, Any] = field(default_factory=dict)  # of the row checks (score sums, ...)
    track_rows_rejected: int = 0  # bad rows of a track read for context (quarantined)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _track_note(self) -> str:
        if self.track_rows is None:
            return ""
        if self.track_rows == self.rows_in:
            return "  (every track row)"
        return f"  (selected from {self.track_rows:,} track rows)"

    def lines(self) -> list[str]:
        """A one-screen human summary."""
        out = [
            f"output        {self.out}",
            f"rows in       {self.rows_in:,}" + self._track_note(),
            f"rows written  {self.rows_written:,}",
            f"rows rejected {self.rows_rejected:,}",
            *([f"track rows rejected {self.track_rows_rejected:,} (in {rejects.TRACK_REJECTED_DIR}/)"]
              if self.track_rows_rejected else []),
            f"partitions    {self.partitions} ({self.partitions_resumed} resumed"
            + (f", {len(self.partitions_redone)} redone: failed verification" if self.partitions_redone
               else "") + ")",
            f"time          {self.seconds:.1f} s  ({self.positions_per_second:,.0f} positions/s)",
        ]
        if self.imputed:
            out.append(f"imputed       {len(self.imputed)} feature(s) (all listed in the summary file):")
            groups: dict[tuple[str, int], list[str]] = {}
            for name, count in self.imputed.items():
                groups.setdefault((self.imputed_reasons.get(name, ""), count), []).append(name)
            for (reason, count), names in groups.items():
                kmers = [n for n in names if parse_kmer(n) is not None]
                named = [n for n in names if n not in kmers]
                listed = named[:6] + (["..."] if len(named) > 6 else [])
                listed += [f"{len(kmers)} k-mers"] if kmers else []
                out.append(f"  {', '.join(listed)}: {count:,} rows ({reason})")
        else:
            out.append("imputed       none")
        out += rejects.warning_lines({"warnings": self.warnings})
        out.append(f"summary       {self.success_file}")
        return out


@dataclass(frozen=True)
class _Context:
    """Everything a worker task needs, shipped once as one small graph key."""

    manifest: Manifest
    config: EnrichConfig
    selection: Selection | None  # set when the positions are selected from the track
    plan: PartitionPlan
    meta: pd.DataFrame
    schema: pa.Schema
    out: str
    storage_options: dict[str, Any] | None
    fingerprint: str
    cache_path: str | None
    done: frozenset[int]
    position_columns: tuple[str, ...]
    targets: tuple[models.Target, ...] = ()  # the output datasets (one per manifest)
    score: models.ScoreOptions | None = None  # meta-model scoring
    checks: rejects.BinChecks = rejects.BinChecks()  # row checks before enrich (validate)
    track_checks: rejects.BinChecks = rejects.BinChecks()  # of track rows read for context
    gene_aliases: tuple[tuple[str, str], ...] = ()  # (input id, annotation id): version matching

    def genomic(self):
        """The run's genomic cache, opened on this worker (once per process), or None."""
        if self.cache_path is None:
            return None
        from ..genome.cache import load_cached

        return load_cached(self.cache_path).with_gene_aliases(self.gene_aliases)


# --- worker-side functions ----------------------------------------------------------------------
def _assign_bins(frame: pd.DataFrame, ctx: _Context) -> pd.DataFrame:
    """Add the bin id of each row; drop rows of genes outside the plan or of complete bins."""
    bins = ctx.plan.bin_of(frame["gene_id"])
    keep = bins >= 0
    if ctx.done:
        keep &= ~np.isin(bins, np.fromiter(ctx.done, dtype=np.int64))
    out = frame[keep] if not keep.all() else frame.copy()
    out[BIN] = bins[keep]
    return out


def _sorted_bin(frame: pd.DataFrame, plan: PartitionPlan) -> pd.DataFrame:
    """The bin's rows in plan order of their genes (the input's first-appearance order), then by
    position (stable), with a fresh RangeIndex: the same deterministic order whatever the exchange
    delivered. Rows already in that order (input grouped by gene, sorted) are not copied."""
    frame = frame.reset_index(drop=True)
    if BIN in frame.columns:
        frame = frame.drop(columns=BIN)
    if _in_plan_order(frame, plan):
        return frame
    codes, uniques = pd.factorize(frame["gene_id"])
    rank = plan.genes.get_indexer(pd.Index(uniques, dtype=plan.genes.dtype))
    rank = np.where(rank < 0, len(plan.genes) + np.arange(len(uniques)), rank)  # genes outside
    position = frame["position"].to_numpy(np.int64)
    return frame.take(np.lexsort((position, rank[codes]))).reset_index(drop=True)


def _in_plan_order(frame: pd.DataFrame, plan: PartitionPlan) -> bool:
    """Whether the rows are already in :func:`_sorted_bin`'s order, found without factorising
    every row: each gene one run of rows, the runs in plan order, positions rising in each run."""
    if len(frame) < 2:
        return True
    if frame["gene_id"].hasnans:
        return False
    gene = frame["gene_id"].array
    change = np.asarray(gene[1:] != gene[:-1], dtype=bool)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    rank = plan.genes.get_indexer(pd.Index(gene[starts], dtype=plan.genes.dtype))
    if (rank < 0).any() or (len(rank) > 1 and bool((rank[1:] <= rank[:-1]).any())):
        return False  # a gene outside the plan, or in several runs, or runs out of plan order
    position = frame["position"].to_numpy(np.int64)
    return bool((change | (position[1:] >= position[:-1])).all())


def _enrich_bin(positions: pd.DataFrame | None, track: pd.DataFrame | None, ctx: _Context,
                partition_info: dict | None = None) -> pd.DataFrame:
    """Enrich one bin (one partition) with the pure core; the report rides in ``attrs``."""
    bin_id = partition_info["number"] if partition_info else -1
    if bin_id in ctx.done:
        return ctx.meta.copy()
    # exactly the rows of the bin's genes, gene by gene (what the plan counted): nothing lost or mixed
    ctx.plan.check_bin_rows(bin_id, (track if positions is None else positions)["gene_id"])
    selective = positions is None and ctx.score is not None and ctx.score.selective
    track_info: dict[str, Any] = {}
    if track is not None:
        track = track.drop(columns=BIN, errors="ignore").reset_index(drop=True)
    if selective:  # every track row is written (base or meta scores) or rejected: check them all
        rows_in = len(track)
        track, rejected, checks = _check_rows(track, ctx, bin_id)
    elif track is not None:  # the track's rows give context: bad ones are refused or set aside
        track, _, track_info = rejects.check_bin(
            track, ctx.track_checks, bin_id=bin_id, config=ctx.config, genomic=None, out=ctx.out,
            fingerprint=ctx.fingerprint, storage_options=ctx.storage_options,
            rejected_dir=rejects.TRACK_REJECTED_DIR)
    track = _sorted_bin(track, ctx.plan) if track is not None else None
    if positions is None:  # track only: the positions are the track's uncertain rows
        positions = track[select_mask(track, ctx.selection)][list(ctx.position_columns)]
    positions = positions.reset_index(drop=True)
    if BIN in positions.columns:
        positions = positions.drop(columns=BIN)
    if not selective:
        rows_in = len(positions)
        # bad rows split off with a reason (error: the run fails; quarantine: OUT/_rejected/)
        positions, rejected, checks = _check_rows(positions, ctx, bin_id)
    positions = _sorted_bin(positions, ctx.plan)
    out, report = enrich(positions, ctx.manifest, genomic=ctx.genomic(), track=track, config=ctx.config)
    checks = rejects.with_track_info(checks, track_info)
    out.attrs[_REPORT_ATTR] = {**report.to_dict(), rejects.CHECKS_KEY: checks}
    out.attrs[_ROWS_IN_ATTR] = rows_in
    out.attrs[_REJECTED_ATTR] = rejected
    return models.finish_bin(out, positions, track, ctx)  # scoring; one frame per model


def _enrich_positions(positions: pd.DataFrame, track: pd.DataFrame, ctx: _Context,
                      partition_info: dict | None = None) -> pd.DataFrame:
    return _enrich_bin(positions, track, ctx, partition_info)


def _enrich_positions_only(positions: pd.DataFrame, ctx: _Context,
                           partition_info: dict | None = None) -> pd.DataFrame:
    return _enrich_bin(positions, None, ctx, partition_info)


def _check_rows(rows: pd.DataFrame, ctx: _Context, bin_id: int
                ) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    return rejects.check_bin(rows, ctx.checks, bin_id=bin_id, config=ctx.config, genomic=ctx.genomic(),
                             out=ctx.out, fingerprint=ctx.fingerprint,
                             storage_options=ctx.storage_options)


def _enrich_track_only(track: pd.DataFrame, ctx: _Context, partition_info: dict | None = None
                       ) -> pd.DataFrame:
    return _enrich_bin(None, track, ctx, partition_info)


def _write_bin(frame: pd.DataFrame, ctx: _Context, partition_info: dict | None = None) -> pd.DataFrame:
    """Write one enriched bin to its Parquet file; return its one-row record."""
    start = time.perf_counter()
    bin_id = partition_info["number"] if partition_info else -1
    if bin_id in ctx.done:
        row = {"bin": bin_id, "rows_in": -1, "rows_written": -1, "rows_rejected": -1, "resumed": True,
               "report": "{}"}
    else:
        report = frame.attrs.get(_REPORT_ATTR)
        if report is None and len(frame) == 0:  # an empty bin: nothing was imputed
            report = EnrichReport().to_dict()
        if report is None:
            raise RunFailure(f"bin {bin_id}: the enrichment report was lost between tasks")
        rows_in = int(frame.attrs.get(_ROWS_IN_ATTR, len(frame)))
        rejected = int(frame.attrs.get(_REJECTED_ATTR, 0))
        record = models.write_part(frame, ctx, bin_id, report, rows_in=rows_in,
                                   rows_rejected=rejected)
        check_row_counts(rows_in, record["rows"], rejected, f"bin {bin_id}: ")
        row = {"bin": bin_id, "rows_in": rows_in, "rows_written": record["rows"],
               "rows_rejected": rejected, "resumed": False, "report": json.dumps(report)}
    row["seconds"] = time.perf_counter() - start
    return pd.DataFrame({k: [v] for k, v in row.items()}).astype(SUMMARY_META.dtypes.to_dict())


def _enrich_write_part(read: Callable[[Any], pd.DataFrame], piece: Any, part: int, ctx: _Context,
                       track_only: bool) -> pd.DataFrame:
    """Read one input partition, then enrich and write each of its bins (input grouped by gene,
    ``plan.follows_input``): no exchange, and one task, so the partition is in memory only while
    its own bins are worked on, one bin at a time. Returns the bins' records (bins already complete
    are left out)."""
    frame = read(piece)
    bins = ctx.plan.bin_of(frame["gene_id"])
    if len(bins) > 1 and bool((bins[1:] < bins[:-1]).any()):  # genes not contiguous: group rows
        order = np.argsort(bins, kind="stable")
        frame, bins = frame.take(order), bins[order]
    records = [SUMMARY_META]
    for bin_id in ctx.plan.bins_of_part(part):  # one iteration per bin
        if bin_id in ctx.done:
            continue
        start, end = np.searchsorted(bins, [bin_id, bin_id + 1])
        rows = frame.iloc[start:end]
        info = {"number": int(bin_id)}
        enriched = (_enrich_bin(None, rows, ctx, info) if track_only
                    else _enrich_bin(rows, None, ctx, info))
        records.append(_write_bin(enriched, ctx, info))
    return pd.concat(records, ignore_index=True)


# --- client side ---------------------------------------------------------------------------------
def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _count_genes(frame: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    """Rows per gene id of one partition, in order of first appearance (missing ids included),
    with the partition's number."""
    codes, uniques = pd.factorize(frame["gene_id"], use_na_sentinel=False)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    part = partition_info["number"] if partition_info else -1
    return pd.DataFrame({"gene_id": pd.Series(uniques, dtype="str"), "rows": counts,
                         "part": np.full(len(uniques), part, dtype=np.int64)})


def _gene_counts(source: InputSource) -> tuple[pd.Series, pd.Series | None]:
    """Rows per gene id, in order of first appearance in the input, from one pass over the
    ``gene_id`` column only; and, when the input is grouped by gene (every gene's rows in one input
    partition), the input partition of each gene (else None)."""
    genes = read_dask(source, ["gene_id"])
    meta = pd.DataFrame({"gene_id": pd.Series([], dtype="str"), "rows": pd.Series([], dtype="int64"),
                         "part": pd.Series([], dtype="int64")})
    per_part = genes.map_partitions(_count_genes, meta=meta).compute()
    counts = per_part.groupby("gene_id", sort=False, dropna=False)["rows"].sum()
    if counts.index.hasnans:
        missing = int(counts[counts.index.isna()].sum())
        raise InputError(f"{source.label} {source.path}: {missing} row(s) have no gene_id")
    counts.index = pd.Index(counts.index, dtype="str")
    gene_parts = None
    if len(counts) == len(per_part) and (per_part["part"] >= 0).all():  # no gene in two partitions
        gene_parts = pd.Series(per_part["part"].to_numpy(), index=counts.index)
    return counts.astype(np.int64), gene_parts


def choose_plan(weights: pd.Series, partition_rows: int, exchange_method: str,
                gene_parts: pd.Series | None, say: Callable[[str], None]) -> PartitionPlan:
    """The partition plan: a pure function of the rows per gene, ``--partition-rows``, the
    exchange setting and the input's partitioning (never of the live cluster, so that a resumed
    run on another number of workers has the same bins).

    Genes are packed in order of first appearance. With ``auto``, an input grouped by gene (each
    gene's rows in one input partition, as a per-gene or per-chromosome writer leaves them) is
    instead enriched where it is read, bins packed within input partitions, with no exchange at
    all, unless its partitions are so small that small genes would no longer be packed together
    (more than :data:`LOCAL_BINS_FACTOR` times the bins) or it is one partition of several bins
    (one task would do all the work)."""
    plan = plan_partitions(weights, partition_rows, keep_order=True)
    if exchange_method != "auto" or gene_parts is None or not len(weights):
        return plan
    where_read = plan_partitions(weights, partition_rows, gene_parts=gene_parts)
    parts = len(np.unique(where_read.bin_parts))
    if where_read.n_bins > LOCAL_BINS_FACTOR * plan.n_bins + 1:
        say(f"input grouped by gene, but in partitions much smaller than --partition-rows "
            f"({where_read.n_bins:,} bins where read, {plan.n_bins:,} packed): exchanging rows")
        return plan
    if parts < min(MIN_WHERE_READ_PARTS, plan.n_bins):
        say(f"input grouped by gene, but in {parts} partition(s) for {plan.n_bins} bins: exchanging "
            "rows so that the bins are enriched in parallel")
        return plan
    return where_read


def check_row_counts(rows_in: int, written: int, rejected: int, where: str = "") -> None:
    """The run's invariant: every row read is written or rejected, exactly once."""
    if rows_in != written + rejected:
        raise RunFailure(f"{where}row count invariant failed: rows in {rows_in} != written {written} "
                         f"+ rejected {rejected}")


def resolve_cache(cache: str | None, genome: str | None, annotation: str | None, out: str,
                  cache_dir: str | None = None, log: Callable[[str], None] | None = None,
                  gene_key: str | None = None, seq_aliases: str | None = None) -> str | None:
    """The genomic cache directory of a run: ``cache`` as given, or built (or reused) from
    ``genome`` and ``annotation`` (with ``gene_key`` and ``seq_aliases``, see
    :func:`~dask_enrich.genome.cache.build_cache`) under ``cache_dir`` (default:
    ``.dask-enrich-cache`` beside OUT)."""
    if cache is not None:
        if genome is not None or annotation is not None:
            raise ConfigError("give either --cache or --genome/--annotation, not both")
        if gene_key is not None or seq_aliases is not None:
            raise ConfigError("--gene-key and --seq-aliases apply when the cache is built: give them "
                              "to `dask-enrich build-cache`, or give --genome/--annotation instead of --cache")
        from ..genome.remote import is_url, local_cache_dir

        if is_url(cache):  # the workers copy it too, when they first open it
            local_cache_dir(str(cache))
            return str(cache)
        if not Path(cache).is_dir():
            raise InputError(f"genomic cache {cache}: no such directory (build it with "
                             "`dask-enrich build-cache`)")
        return str(cache)
    if genome is None and annotation is None:
        return None
    if annotation is None:
        raise ConfigError("--genome needs --annotation too (the gene spans and strands come from it); "
                          "--annotation alone gives the genomic features without sequence")
    from ..genome.cache import build_cache
    from ..genome.remote import local_file

    genome, annotation, seq_aliases = (local_file(x) for x in (genome, annotation, seq_aliases))
    cache_dir = dask_settings.get("cache-dir", cache_dir)
    if cache_dir is not None and "://" not in str(cache_dir):  # absolute: workers open it by path
        cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    if cache_dir is None:
        local_out = "://" not in str(out) or str(out).startswith("file://")
        parent = Path(str(out).removeprefix("file://")).resolve().parent if local_out else Path.home() / ".cache"
        cache_dir = str(parent / ".dask-enrich-cache")
    options = [gene_key, _file_key(seq_aliases)] if gene_key or seq_aliases else []
    key = hashlib.sha256(json.dumps(
        [_file_key(genome), _file_key(annotation), *options], default=str).encode()).hexdigest()[:16]
    target = f"{str(cache_dir).rstrip('/')}/{key}" if "://" in str(cache_dir) else Path(cache_dir) / key
    if log:
        log(f"genomic cache {target} (from {genome or '-'} and {annotation})")
    build_cache(genome, annotation, target, progress=log, gene_key=gene_key, seq_aliases=seq_aliases)
    return str(target)


def _file_key(path: str | None) -> list[Any] | None:
    if path is None:
        return None
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def run_enrichment(
    positions: str | None,
    manifest: str | Path | Manifest,
    out: str,
    *,
    track: str | None = None,
    cache: str | None = None,
    genome: str | None = None,
    annotation: str | None = None,
    cache_dir: str | None = None,
    config: EnrichConfig = EnrichConfig(),
    selection: Selection = Selection(),
    mode: writer.Mode = "new",
    partition_rows: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    processes: bool = True,
    storage_options: dict[str, Any] | None = None,
    exchange_method: str = "auto",
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    on_bad_rows: str = "error",
    score: models.ScoreOptions | None = None,
    gene_key: str | None = None,
    seq_aliases: str | None = None,
    scheduler_file: str | None = None,
) -> RunSummary:
    """Enrich ``positions`` (or the uncertain rows of ``track`` when positions is None) with the
    features of ``manifest`` and write a Parquet dataset to ``out``. Returns the run summary.

    Cluster (``engine/cluster.py``): ``client`` (an existing ``distributed.Client``), else
    ``scheduler`` (an address) or ``scheduler_file`` (Dask's JSON scheduler file), else Dask's
    ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``), else a LocalCluster on 127.0.0.1 of
    ``workers`` x ``threads_per_worker`` with ``memory_limit`` per worker (0: none).
    ``partition_rows``, ``workers``, ``threads_per_worker``, ``memory_limit`` and ``cache_dir``
    left None come from the ``enrich`` section of Dask's configuration (``dask_enrich/enrich.yaml``:
    200,000 rows, Dask's CPU count, 1, auto, beside OUT).
    ``mode``: ``new`` (refuse a non-empty OUT), ``resume`` or ``overwrite``.
    ``on_bad_rows``: ``error`` (a bad row fails the run, naming the file, reasons and example
    rows) or ``quarantine`` (bad rows go to ``OUT/_rejected/`` with their reason).
    ``exchange_method``: how rows reach their bin: ``auto`` (the default: when one input is grouped
    by gene, i.e. every gene's rows lie in one input partition, each bin is enriched and written
    where it is read, with no exchange, unless that would make more than
    :data:`LOCAL_BINS_FACTOR` times the bins of packing across partitions or the input is one
    partition of several bins (:func:`choose_plan`); otherwise ``staged``),
    ``staged`` (Arrow files under
    OUT/_staging) or ``p2p`` (Dask's ``set_index`` shuffle on the bin id).
    ``gene_key``/``seq_aliases``: the annotation attribute the positions' gene ids are, and a
    sequence-name alias file, for the cache built from ``genome``/``annotation``. Gene ids that
    differ from the annotation's only by a version suffix (``.N``) are matched when one-to-one.
    """
    say = log or LOGGER.info  # the dask_enrich logger (silent unless logging is configured)
    # local paths absolute on the client: the workers have other working directories
    positions, track, out, cache, genome, annotation, cache_dir, seq_aliases = map(
        rejects.absolute, (positions, track, out, cache, genome, annotation, cache_dir, seq_aliases))
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    partition_rows = dask_settings.get("partition-rows", partition_rows)
    if positions is None and track is None:
        raise ConfigError("give --positions, or a --track to select uncertain positions from")
    if mode not in ("new", "resume", "overwrite"):
        raise ConfigError(f"mode must be new, resume or overwrite, not {mode!r}")
    if partition_rows < 1:
        raise ConfigError(f"--partition-rows must be at least 1, not {partition_rows}")
    if on_bad_rows not in rejects.ON_BAD_ROWS:
        raise ConfigError(f"--on-bad-rows must be 'error' or 'quarantine', not {on_bad_rows!r}")
    if exchange_method not in ("auto", "staged", "p2p"):
        raise ConfigError(f"exchange must be 'auto', 'staged' or 'p2p', not {exchange_method!r}")
    # One target (output dataset) per manifest; the union manifest is what each partition computes.
    targets, manifest = models.resolve_targets(manifest, out, score, config,
                                               track_only=positions is None)

    # Inputs: resolve files and check columns before anything runs.
    track_only = positions is None
    pos_source = None if track_only else inspect_input(positions, label="positions",
                                                       storage_options=storage_options)
    track_source = None if track is None else inspect_input(track, label="track",
                                                            storage_options=storage_options)
    rejects.check_sources(pos_source, track_source)  # names, dtypes (footers / first rows)
    if track_only:
        track_columns = wanted_columns(track_source, POSITION_COLUMNS, config.keep_columns)
        position_columns = tuple(track_columns)
    else:
        position_columns = tuple(wanted_columns(pos_source, POSITION_COLUMNS, config.keep_columns))
        if track_source is not None:
            track_columns = wanted_columns(track_source, TRACK_COLUMNS)
            track_columns = [c for c in track_columns if c in (*TRACK_COLUMNS, "strand")]
    rejects.check_files_have(pos_source if not track_only else track_source, position_columns)
    if not track_only and track_source is not None:
        rejects.check_files_have(track_source, track_columns)
    cache_path = resolve_cache(cache, genome, annotation, out, cache_dir, say, gene_key, seq_aliases)
    has_context = (pos_source.has_context_columns if pos_source is not None
                   else track_source.has_context_columns)
    has_genome = has_annotation = cache_path is not None
    if cache_path is not None:
        from ..genome.cache import load_cached

        genomic = load_cached(cache_path)
        has_genome = bool(genomic.has_sequence)
        cache_fingerprint = getattr(genomic, "fingerprint", None)
    else:
        cache_fingerprint = None
    expected_imputed = check_inputs(manifest, config, has_context_columns=has_context,
                                    has_track=track_source is not None, has_genome=has_genome,
                                    has_annotation=has_annotation)
    if expected_imputed:
        say(f"will impute {len(expected_imputed)} feature(s) (--missing impute)")

    inputs = {"positions": fingerprint(pos_source) if pos_source else None,
              "track": fingerprint(track_source) if track_source else None,
              "cache": {"path": cache_path, "fingerprint": cache_fingerprint} if cache_path else None,
              "manifest": models.manifest_record(manifest)}
    for source, key in ((pos_source, "positions"), (track_source, "track")):
        if (source is not None and source.format == "csv" and source.compression
                and inputs[key]["bytes"] / inputs[key]["files"] > 64e6):
            say(f"note: {source.label} {source.path} is compressed CSV: each file is read as one "
                "partition (gzip cannot be split), so a worker holds a whole file at once; "
                "Parquet or several smaller files keep memory bounded")
    settings = {"config": asdict(config), "partition_rows": partition_rows,
                "on_bad_rows": on_bad_rows,
                "selection": selection.to_dict() if track_only else None,
                # the plan differs (bins within input partitions when grouped): resume needs the same
                "bins": "within input partitions if grouped" if exchange_method == "auto" else "packed"}
    run_record = {"version": __version__, "inputs": inputs, "settings": settings,
                  "manifest_names": list(manifest.names)}
    run_record, run_fingerprint, targets = models.fingerprint_targets(targets, run_record, score,
                                                                      _fingerprint, out)

    # OUT locked for the whole run (a second run into it is refused), then OUT's own refusals
    lock = writer.OutputLock(out, storage_options, say).acquire()
    try:
        models.precheck(targets, mode, storage_options)
        with _quiet_client_logs():  # until the client is closed
            return _on_cluster(client, say, dict(
                scheduler=scheduler, scheduler_file=scheduler_file, workers=workers,
                threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                processes=processes), _run, dict(
                manifest=manifest, config=config, selection=selection if track_only else None,
                pos_source=pos_source, track_source=track_source,
                position_columns=position_columns,
                track_columns=track_columns if track_source is not None else None,
                cache_path=cache_path, out=out, mode=mode, partition_rows=partition_rows,
                storage_options=storage_options, exchange_method=exchange_method,
                run_fingerprint=run_fingerprint, run_record=run_record, progress=progress,
                say=say, t0=t0, started=started, targets=tuple(targets), score=score))
    except (InputError, PluginError) as exc:
        # bad input found by the row checks: what this run wrote cannot be resumed (the corrected
        # input is another run), so it goes, and the corrected rerun needs no --overwrite
        if mode != "resume" and not isinstance(exc, AllRowsRejected):  # those rows are kept to see
            _discard(out, targets, storage_options)
        raise
    finally:
        lock.release()


def _discard(out: str, targets: list[models.Target], storage_options: dict[str, Any] | None) -> None:
    """Delete what this run wrote into OUT (only when its run record is there: this run got as
    far as preparing OUT), best effort."""
    try:
        if not any((writer.read_json(t.out, writer.RUN_FILE, storage_options) or {}).get("fingerprint")
                   == t.fingerprint for t in targets):
            return
        fs, root = writer._fs(out, storage_options)
        writer.remove_own(fs, root)
    except Exception:
        pass


def _on_cluster(client: Any, say: Callable[[str], None], cluster: dict[str, Any],
                work: Callable[..., RunSummary], kwargs: dict[str, Any]) -> RunSummary:
    """``work(client, dashboard=..., timings=..., **kwargs)`` on ``client``, or on a client of a
    cluster started here (``cluster``: :func:`.cluster.make_client`'s arguments) and closed at the end;
    a lost scheduler or a worker killed repeatedly become RunFailures."""
    own_cluster = None
    own_client = client is None
    if own_client:
        t = time.perf_counter()
        client, own_cluster = make_client(**cluster)
        run_record_timings = {"cluster_start": time.perf_counter() - t}
    else:
        run_record_timings = {}
    dashboard = getattr(client, "dashboard_link", None)
    import importlib.util

    hint = "" if importlib.util.find_spec("bokeh") else "  (pip install bokeh to view it)"
    say(f"dask dashboard: {dashboard}{hint}")
    try:
        from .reach import check_workers_reach

        check_workers_reach(client, kwargs["out"], kwargs["storage_options"])
        return work(client, dashboard=dashboard, timings=run_record_timings, **kwargs)
    except EnrichError:
        raise
    except Exception as exc:
        from distributed import KilledWorker

        if rejects.scheduler_lost(client, exc):
            raise rejects.lost_scheduler_failure(exc) from exc
        if isinstance(exc, OSError) and getattr(exc, "filename", None):  # a file of the run
            raise writer.os_failure(exc, exc.filename, "I/O error on") from exc
        if isinstance(exc, KilledWorker):
            raise RunFailure(f"a worker died repeatedly while running a task ({exc}); it may have "
                             "run out of memory: lower --partition-rows or raise --memory-limit") from exc
        raise
    finally:
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()


@contextlib.contextmanager
def _quiet_client_logs():
    """The client's own error logs silenced during the run and while it closes: a lost
    scheduler is reported once, as a RunFailure, not also as the reconnect task's traceback."""
    import distributed  # noqa: F401 - its import sets the level of its loggers: first

    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    except SchedulerLost:  # the client's reconnect task ends later, at exit: stay quiet
        raise
    except BaseException:
        logger.setLevel(level)
        raise
    logger.setLevel(level)


def _run(client, manifest: Manifest, config: EnrichConfig, selection: Selection | None,
         pos_source: InputSource | None, track_source: InputSource | None,
         position_columns: tuple[str, ...], track_columns: list[str] | None, cache_path: str | None,
         out: str, mode: writer.Mode, partition_rows: int, storage_options: dict[str, Any] | None,
         exchange_method: str, run_fingerprint: str, run_record: dict[str, Any], progress: Progress | None,
         say: Callable[[str], None], dashboard: str | None, t0: float, started: str,
         timings: dict[str, float], targets: tuple[models.Target, ...] = (),
         score: models.ScoreOptions | None = None) -> RunSummary:
    import dask
    import dask.dataframe as dd
    from distributed import as_completed

    pos_frame = read_dask(pos_source, position_columns, **rejects.read_options(pos_source)) \
        if pos_source else None
    # a track read for the context of given positions is checked row by row too: read leniently
    track_options = rejects.read_options(track_source) if track_source and pos_source else {}
    track_frame = read_dask(track_source, track_columns, **track_options) if track_source else None

    # Plan: rows per gene (positions and track rows alike), packed into bins.
    t = time.perf_counter()
    pos_counts, pos_parts = _gene_counts(pos_source) if pos_frame is not None else (None, None)
    track_counts, track_parts = (_gene_counts(track_source) if track_frame is not None
                                 else (None, None))
    rejects.check_counts(pos_source, pos_counts, track_source, track_counts)  # empty input
    if pos_counts is None:
        weights = track_counts
    elif track_counts is None:
        weights = pos_counts
    else:  # genes of the positions, weighted by all the rows their partition will hold
        weights = pos_counts + track_counts.reindex(pos_counts.index).fillna(0).astype(np.int64)
    plan = choose_plan(weights.astype(np.int64), partition_rows, exchange_method,
                       pos_parts if track_frame is None else track_parts if pos_frame is None else None,
                       say)
    # the rows each gene must arrive with in its bin (checked gene by gene on the workers)
    plan = plan.with_rows(pos_counts if pos_counts is not None else track_counts)
    timings["plan"] = time.perf_counter() - t
    track_rows = int(track_counts.sum()) if track_counts is not None else None
    say(f"plan: {plan.n_bins} partition(s) of <= {partition_rows:,} rows for {len(plan.genes):,} genes"
        + (" (input grouped by gene: each enriched where it is read)" if plan.follows_input else ""))

    input_meta = (pos_frame._meta if pos_frame is not None
                  else track_frame._meta[list(position_columns)])
    meta = output_meta(manifest, input_meta.dtypes.to_dict(), config)
    schema = output_schema(manifest, input_meta.dtypes.to_dict(), config)
    run_record = {**run_record, "plan": plan.summary()}
    redone: dict[str, str] = {}
    targets, meta, schema, done = models.prepare(
        list(targets), score, mode=mode, plan=plan, input_meta=input_meta,
        track_meta=track_frame._meta if track_frame is not None else None, config=config,
        storage_options=storage_options, failed=redone)
    exchange.remove_staging(out, storage_options)
    for b, why in rejects.kept_without_rejects(out, done, storage_options).items():
        done.pop(b)  # redone: its part is written again, with its rejected rows
        redone[f"{str(out).rstrip('/')}/{writer.part_name(b)}"] = why
    if done:
        say(f"resume: {len(done)} of {plan.n_bins} partition(s) already complete (verified)")
    for line in redone_lines(redone):
        say(line)
    ctx = _Context(manifest, config, selection, plan, meta, schema, out, storage_options,
                   run_fingerprint, cache_path, frozenset(done), position_columns,
                   targets=tuple(targets), score=score)
    ctx = replace(ctx, checks=rejects.bin_checks(run_record, manifest, pos_source or track_source,
                                                 cache_path),
                  track_checks=rejects.track_checks(run_record, track_source))
    if cache_path is not None:  # ids matched with a version suffix ignored; none matching: stop
        from ..genome.cache import load_cached
        from ..genome.geneids import reconcile_gene_ids

        ctx = replace(ctx, gene_aliases=reconcile_gene_ids(
            load_cached(cache_path), weights.index, label="positions" if pos_frame is not None else "track",
            need=ctx.checks.need_annotation, log=say))
    rejects.prepare_rejected(out, done, storage_options)
    ctx_key = dask.delayed(ctx, pure=True, traverse=False)
    staging = exchange.staging_path(out, run_fingerprint)

    def by_bin(frame, label: str):
        """The frame regrouped so that partition i holds exactly the rows of bin i."""
        divisions = list(plan.divisions)
        if exchange_method == "p2p":
            with_bins = frame.map_partitions(_assign_bins, ctx_key,
                                             meta=frame._meta.assign(**{BIN: np.int64(0)}))
            return with_bins.set_index(BIN, divisions=divisions, shuffle_method="p2p")
        split = dask.delayed(exchange.split_part, pure=True)
        gather = dask.delayed(exchange.gather_bin, pure=True)
        splits = [split(part, i, label, plan_key, ctx.done, staging, storage_options,
                        dask_key_name=f"split-{label}-{i}-{run_fingerprint[:8]}")
                  for i, part in enumerate(frame.to_delayed())]
        bins = [gather(b, splits, frame._meta, label, storage_options,
                       dask_key_name=f"gather-{label}-{b}-{run_fingerprint[:8]}")
                for b in range(plan.n_bins)]
        return dd.from_delayed(bins, meta=frame._meta, divisions=divisions, verify_meta=False)

    plan_key = dask.delayed(plan, pure=True, traverse=False)
    if plan.follows_input:  # the same pieces as the plan's pass over gene_id, read inside the task
        reader, pieces, _ = (input_pieces(track_source, track_columns, **track_options)
                             if pos_frame is None else
                             input_pieces(pos_source, position_columns,
                                          **rejects.read_options(pos_source)))
        label = "track" if pos_frame is None else "positions"
        process = dask.delayed(_enrich_write_part, pure=True)
        reader_key = dask.delayed(reader, pure=True, traverse=False)
        record_parts = [process(reader_key, piece, p, ctx_key, pos_frame is None,
                                dask_key_name=rejects.local_part_key(label, p, run_fingerprint))
                        for p, piece in enumerate(pieces)
                        if not set(plan.bins_of_part(p).tolist()) <= set(done)]
    else:  # the exchange regroups the rows by bin; one task per bin enriches, one writes
        if pos_frame is not None and track_frame is not None:
            enriched = dd.map_partitions(_enrich_positions, by_bin(pos_frame, "positions"),
                                         by_bin(track_frame, "track"), ctx_key, meta=meta,
                                         align_dataframes=False, enforce_metadata=False)
        elif pos_frame is not None:
            enriched = by_bin(pos_frame, "positions").map_partitions(
                _enrich_positions_only, ctx_key, meta=meta, enforce_metadata=False)
        else:
            enriched = by_bin(track_frame, "track").map_partitions(
                _enrich_track_only, ctx_key, meta=meta, enforce_metadata=False)
        record_parts = enriched.map_partitions(_write_bin, ctx_key, meta=SUMMARY_META).to_delayed()

    inputs = (pos_frame.npartitions if pos_frame is not None else 0) + (
        track_frame.npartitions if track_frame is not None else 0)
    say(f"enriching: {inputs} input partition(s) -> {plan.n_bins} gene partition(s)"
        + (f" ({len(done)} already complete)" if done else ""))
    t = time.perf_counter()
    rejects.check_workers_running(client)
    futures = client.compute(record_parts)
    results: list[pd.DataFrame] = []
    # progress in bins: a task enriching where it reads finishes all bins of its input partition
    bins_total = plan.n_bins - len(done) if plan.follows_input else len(futures)
    bins_finished = 0
    if progress:
        progress(0, bins_total)
    for future in as_completed(futures):
        # a KilledWorker names the bin's genes; any failure cancels the rest, drops OUT/_staging
        results.append(rejects.result(future, client, plan, futures, out, storage_options))
        bins_finished += len(results[-1])
        if progress:
            progress(bins_finished, bins_total)
    timings["enrich_and_write"] = time.perf_counter() - t
    exchange.remove_staging(out, storage_options)

    table = pd.concat([SUMMARY_META, *results], ignore_index=True).sort_values("bin")
    fresh = table[~table["resumed"]]
    report = EnrichReport()
    checks: dict[str, Any] = {}
    for text in fresh["report"]:
        part_report, checks = rejects.pop_checks(json.loads(text), checks)
        report = report.merge(EnrichReport(**part_report))
    rows_in = int(fresh["rows_in"].sum())
    written = int(fresh["rows_written"].sum())
    rejected = int(fresh["rows_rejected"].sum())
    for record in done.values():
        part_report, checks = rejects.pop_checks(record["report"], checks)
        report = report.merge(EnrichReport(**part_report))
        rows_in += int(record.get("rows_in", record["rows"]))
        written += int(record["rows"])
        rejected += int(record.get("rows_rejected", 0))
    if pos_counts is not None and rows_in != int(pos_counts.sum()):
        raise RunFailure(f"rows lost or duplicated: {int(pos_counts.sum()):,} positions read but "
                         f"{rows_in:,} reached the partitions")
    check_row_counts(rows_in, written, rejected)
    # per bin: each exactly once, with its plan's genes and rows; the files as recorded
    exact_rows = pos_counts is not None or (score is not None and score.selective)
    files = check_bins(plan, fresh, done, targets, exact_rows, storage_options)
    total = time.perf_counter() - t0
    timings["total"] = total
    summary = RunSummary(
        out=str(out), rows_in=rows_in, rows_written=written, rows_rejected=rejected,
        partitions=plan.n_bins, partitions_resumed=len(done), partitions_redone=redone,
        imputed=dict(report.imputed),
        imputed_reasons=dict(report.reasons), seconds=total,
        positions_per_second=rows_in / total if total > 0 else 0.0, fingerprint=run_fingerprint,
        success_file="", dashboard=dashboard, timings={k: round(v, 3) for k, v in timings.items()},
        track_rows=track_rows if pos_source is None else None)
    rejects.check_outputs_visible(ctx)  # every part file is in OUT (a filesystem shared with the workers)
    checks["warnings"] = {**rejects.cache_warnings(cache_path), **checks.get("warnings", {})}
    summary.warnings = checks["warnings"]
    track_rejected = checks.get(rejects.TRACK_REJECTED_KEY, {})
    summary.track_rows_rejected = int(sum(track_rejected.values()))
    for line in rejects.warning_lines(checks):
        say(line)
    if rows_in and not written and rejected == rows_in:
        reasons = ", ".join(f"{code} ({count:,})" for code, count in checks.get("rejected", {}).items())
        raise AllRowsRejected(f"every row ({rejected:,}) failed the input checks and was set aside in "
                         f"{out}/{rejects.REJECTED_DIR}/ ({reasons}): nothing was enriched, so the run "
                         "did not succeed")
    success = {
        "version": __version__,
        "fingerprint": run_fingerprint,
        "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": {"in": rows_in, "written": written, "rejected": rejected,
                 **({"track": track_rows} if track_rows is not None else {})},
        "imputed": dict(sorted(report.imputed.items())),
        "imputed_reasons": dict(sorted(report.reasons.items())),
        "partitions": {"count": plan.n_bins, "written": int(len(fresh)), "resumed": len(done),
                       "redone": {Path(k).name: v for k, v in redone.items()},
                       "files": files[targets[0].out] if targets else [],
                       "plan": plan.summary()},
        "inputs": run_record["inputs"],
        "settings": run_record["settings"],
        "manifest": {"source": manifest.source, "name": manifest.name,
                     "features": len(manifest.names)},
        "timings_s": summary.timings,
        "positions_per_second": round(summary.positions_per_second, 1),
        "warnings": checks.get("warnings", {}),
        "rejected": {"on_bad_rows": ctx.checks.on_bad_rows, "rows": rejected,
                     "reasons": checks.get("rejected", {}),
                     **({"dir": rejects.REJECTED_DIR} if rejected else {}),
                     **({"track_rows": summary.track_rows_rejected, "track_reasons": track_rejected,
                         "track_dir": rejects.TRACK_REJECTED_DIR} if track_rejected else {})},
    }
    summary.success_file = models.write_successes(targets, success, storage_options, files)
    return summary


def redone_lines(redone: dict[str, str]) -> list[str]:
    """The lines saying which kept parts failed verification (they are written again)."""
    if not redone:
        return []
    shown = [f"  {Path(path).name}: {why}" for path, why in list(redone.items())[:8]]
    more = [f"  and {len(redone) - 8} more"] if len(redone) > 8 else []
    return [f"resume: {len(redone)} part(s) failed verification and are redone:", *shown, *more]


def check_bins(plan: PartitionPlan, fresh: pd.DataFrame, done: dict[int, dict[str, Any]],
               targets: Any, exact_rows: bool, storage_options: dict[str, Any] | None
               ) -> dict[str, list[dict[str, Any]]]:
    """The run's final check, per bin and per gene: every bin of the plan written (or kept) exactly
    once; with ``exact_rows``, each bin's input rows those the plan counted for its genes; and
    every target's part records (``_parts/``) those of this plan's bins (gene list and rows per
    gene, fingerprint), with the rows written. Returns each target's files ({out: [entry]}) for
    ``_SUCCESS.json``."""
    bins = fresh["bin"].to_numpy(np.int64)
    seen = np.bincount(np.concatenate([bins, np.fromiter(done, np.int64, len(done))]),
                       minlength=plan.n_bins)
    if len(seen) > plan.n_bins or (seen != 1).any():
        wrong = np.flatnonzero(seen != 1)
        b = int(wrong[0])
        raise RunFailure(f"partition {b} was written {int(seen[b])} times (a partition must be written "
                         f"exactly once; {len(wrong)} partition(s) wrong)")
    rows_in = np.zeros(plan.n_bins, np.int64)
    written = np.zeros(plan.n_bins, np.int64)
    rows_in[bins] = fresh["rows_in"].to_numpy(np.int64)
    written[bins] = fresh["rows_written"].to_numpy(np.int64)
    for b, record in done.items():
        rows_in[b] = int(record.get("rows_in", record["rows"]))
        written[b] = int(record["rows"])
    if exact_rows and plan.rows is not None:
        expected = np.bincount(plan.bins, weights=plan.rows, minlength=plan.n_bins).astype(np.int64)
        wrong = np.flatnonzero(expected != rows_in)
        if len(wrong):
            b = int(wrong[0])
            raise RunFailure(f"partition {b}: {rows_in[b]:,} input row(s) reached it but its genes "
                             f"have {expected[b]:,} (rows lost or duplicated)")
    digests = [plan.bin_digest(b) for b in range(plan.n_bins)]
    files: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        entries = writer.part_records(t.out, plan.n_bins, storage_options)
        for b, entry in enumerate(entries):
            problem = ("no record" if entry is None
                       else "another run" if entry.get("fingerprint") != t.fingerprint
                       else "other genes" if entry.get("genes") != digests[b]
                       else "other rows" if entry.get("rows") != written[b] else "")
            if problem:
                raise RunFailure(f"{t.out}/{writer.part_name(b)}: its record ({writer.PARTS_DIR}/) "
                                 f"does not match partition {b} of this run ({problem})")
        files[t.out] = [{k: e[k] for k in ("file", "bin", "rows", "bytes", writer.HASH_KEY, "gene_rows")}
                        for e in entries]
    return files

"""``run_enrichment``: positions (and/or a track) in, a Parquet dataset of features out, on Dask.

The steps, top to bottom (each in its own module):

1. options (``context.py``): the keywords become :class:`~.context.InputOptions`,
   :class:`~.context.OutputOptions` and :class:`~.context.ClusterOptions`, checked once;
2. inputs (``inputs.py``): the files inspected and their columns checked on the client; the
   genomic cache resolved (or built); the run record and its fingerprint; OUT locked;
3. on the cluster: :func:`~.inputs.read_inputs` (the inputs as Dask collections, with the rows per
   gene from one pass over ``gene_id``), the plan (``partition.py``: genes packed into bins of
   about ``partition_rows`` rows, a gene never split), OUT prepared (resume: complete bins kept),
   one frozen :class:`~.context.RunContext` (shipped once as one small graph key; the genomic
   cache is opened on each worker by path, once per process);
4. the exchange (``exchange.py``: where read, staged or p2p) maps :func:`~.tasks.process_bin` over
   the bins: check -> order -> enrich -> each model's finish -> write, one task per bin; only the
   bins' small :class:`~.tasks.BinResult` records come back;
5. the summary (``summary.py``): every bin exactly once, every row written or rejected, the
   outputs visible, ``_SUCCESS.json`` written last.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import settings as dask_settings
from .. import storage
from .._version import __version__
from ..config import EnrichConfig
from ..core import check_inputs
from ..errors import (
    AllRowsRejected,
    EnrichError,
    InputError,
    PluginError,
    SchedulerLost,
)
from ..io import fingerprint
from ..logs import LOGGER
from ..manifest import Manifest
from ..selection import Selection
from . import diagnose, exchange, models, quarantine, writer
from . import summary as summaries
from .cluster import WORKER_MALLOC_ENV, make_client, make_local_cluster  # noqa: F401 (re-exported)
from .context import ClusterOptions, InputOptions, OutputOptions, Progress, RunContext
from .inputs import (  # noqa: F401
    InputSources,
    RunInputs,
    _count_genes,
    _file_key,
    absolute,
    context_inputs,
    read_inputs,
    scan_applies,
    scanned_inputs,
    selective_inputs,
    resolve_cache,
    resolve_sources,
)
from .partition import PartitionPlan, make_plan
from .selective import SelectiveScan
from .summary import RunSummary, Totals, check_bins
from .tasks import BinResult, check_row_counts, process_bin  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class _Job:
    """A run resolved on the client before any cluster: what every later step reads."""

    manifest: Manifest  # the union of the targets' manifests: what each bin computes
    config: EnrichConfig
    score: models.ScoreOptions | None
    selection: Selection | None
    sources: InputSources
    cache_path: str | None
    output: OutputOptions
    storage_options: dict[str, Any] | None
    targets: tuple[models.Target, ...]
    record: dict[str, Any]
    fingerprint: str
    say: Callable[[str], None]
    progress: Progress | None
    t0: float
    started: str


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


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
    options = (InputOptions(positions, track, cache, genome, annotation, cache_dir, gene_key,
                            seq_aliases, selection, storage_options),
               OutputOptions(out, mode, partition_rows, on_bad_rows, exchange_method),
               ClusterOptions(client, scheduler, scheduler_file, workers, threads_per_worker,
                              memory_limit, processes))
    return run_enrichment_with(manifest, *options, config=config, score=score, progress=progress,
                               log=log)


def run_enrichment_with(manifest: str | Path | Manifest, inputs: InputOptions, output: OutputOptions,
                        cluster: ClusterOptions = ClusterOptions(), *,
                        config: EnrichConfig = EnrichConfig(),
                        score: models.ScoreOptions | None = None, progress: Progress | None = None,
                        log: Callable[[str], None] | None = None) -> RunSummary:
    """:func:`run_enrichment` with its options as objects."""
    say = log or LOGGER.info  # the dask_enrich logger (silent unless logging is configured)
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    inputs, output = _absolute(inputs, output)
    output = replace(output, partition_rows=dask_settings.get("partition-rows", output.partition_rows))
    inputs.check()
    output.check()
    # One target (output dataset) per manifest; the union manifest is what each partition computes.
    targets, manifest = models.resolve_targets(manifest, output.out, score, config,
                                               track_only=inputs.track_only)
    sources = resolve_sources(inputs.positions, inputs.track, config.keep_columns,
                              inputs.storage_options)
    cache_path = resolve_cache(inputs.cache, inputs.genome, inputs.annotation, output.out,
                               inputs.cache_dir, say, inputs.gene_key, inputs.seq_aliases)
    record = _run_record(manifest, config, sources, cache_path, output,
                         inputs.selection if inputs.track_only else None, say)
    record, run_fingerprint, targets = models.fingerprint_targets(targets, record, score,
                                                                  _fingerprint, output.out)
    job = _Job(manifest, config, score, inputs.selection if inputs.track_only else None, sources,
               cache_path, output, inputs.storage_options, tuple(targets), record, run_fingerprint,
               say, progress, t0, started)
    # OUT locked for the whole run (a second run into it is refused), then OUT's own refusals
    lock = writer.OutputLock(output.out, inputs.storage_options, say).acquire()
    try:
        models.precheck(targets, output.mode, inputs.storage_options)
        with _quiet_client_logs():  # until the client is closed
            return _on_cluster(cluster, job)
    except (InputError, PluginError) as exc:
        # bad input found by the row checks: what this run wrote cannot be resumed (the corrected
        # input is another run), so it goes, and the corrected rerun needs no --overwrite
        if output.mode != "resume" and not isinstance(exc, AllRowsRejected):  # those rows are kept
            _discard(output.out, targets, inputs.storage_options)
        raise
    finally:
        lock.release()


def _absolute(inputs: InputOptions, output: OutputOptions) -> tuple[InputOptions, OutputOptions]:
    """Local paths made absolute on the client: the workers have other working directories."""
    paths = {k: absolute(getattr(inputs, k)) for k in ("positions", "track", "cache", "genome",
                                                       "annotation", "cache_dir", "seq_aliases")}
    return replace(inputs, **paths), replace(output, out=absolute(output.out))


def _run_record(manifest: Manifest, config: EnrichConfig, sources: InputSources,
                cache_path: str | None, output: OutputOptions, selection: Selection | None,
                say: Callable[[str], None]) -> dict[str, Any]:
    """What the run fingerprint records: the inputs (files, cache, manifest) and the settings;
    the features that will be imputed checked (and said) first."""
    pos_source, track_source = sources.positions, sources.track
    has_genome = has_annotation = cache_path is not None
    cache_fingerprint = None
    if cache_path is not None:
        from ..genome.cache import load_cached

        genomic = load_cached(cache_path)
        has_genome = bool(genomic.has_sequence)
        cache_fingerprint = getattr(genomic, "fingerprint", None)
    expected_imputed = check_inputs(manifest, config, has_context_columns=sources.main.has_context_columns,
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
    settings = {"config": asdict(config), "partition_rows": output.partition_rows,
                "on_bad_rows": output.on_bad_rows,
                "selection": selection.to_dict() if selection is not None else None,
                # the plan differs (bins within input partitions when grouped): resume needs the same
                "bins": "within input partitions if grouped" if output.exchange_method == "auto"
                else "packed"}
    return {"version": __version__, "inputs": inputs, "settings": settings,
            "manifest_names": list(manifest.names)}


def _discard(out: str, targets: list[models.Target], storage_options: dict[str, Any] | None) -> None:
    """Delete what this run wrote into OUT (only when its run record is there: this run got as
    far as preparing OUT), best effort."""
    try:
        if not any((writer.read_json(t.out, writer.RUN_FILE, storage_options) or {}).get("fingerprint")
                   == t.fingerprint for t in targets):
            return
        fs, root = storage.url_to_fs(out, storage_options)
        writer.remove_own(fs, root)
    except Exception:
        pass


def _on_cluster(cluster: ClusterOptions, job: _Job) -> RunSummary:
    """:func:`_execute` on ``cluster.client``, or on a client of a cluster started here (and closed
    at the end); a lost scheduler or a worker killed repeatedly become RunFailures."""
    client, own_cluster, timings = cluster.client, None, {}
    own_client = client is None
    if own_client:
        t = time.perf_counter()
        client, own_cluster = make_client(**cluster.make_client_kwargs())
        timings["cluster_start"] = time.perf_counter() - t
    dashboard = getattr(client, "dashboard_link", None)
    import importlib.util

    hint = "" if importlib.util.find_spec("bokeh") else "  (pip install bokeh to view it)"
    job.say(f"dask dashboard: {dashboard}{hint}")
    try:
        from .reach import check_workers_reach

        check_workers_reach(client, job.output.out, job.storage_options)
        return _execute(client, job, dashboard, timings)
    except EnrichError:
        raise
    except Exception as exc:
        failure = diagnose.cluster_failure(client, exc)
        if failure is exc:
            raise
        raise failure from exc
    finally:
        close_quietly(client if own_client else None, own_cluster)


def close_quietly(client: Any, cluster: Any) -> None:
    """Close ``client`` and then ``cluster`` (either may be None) with distributed's loggers
    silenced: a LocalCluster restores its log handlers' levels while it closes, so the comms of
    workers that died with this process's group (a SIGTERM to a batch job) would otherwise print
    their INFO tracebacks ("Batched Comm Closed") beside the run's one line."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    finally:
        logger.setLevel(level)


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


def _execute(client: Any, job: _Job, dashboard: str | None, timings: dict[str, float]) -> RunSummary:
    """The run on ``client``: inputs read, plan, OUT prepared, the bins processed, the summary."""
    t = time.perf_counter()
    inputs = _read(client, job)
    plan = make_plan(inputs, job.output.partition_rows, job.output.exchange_method, job.say)
    timings["plan"] = time.perf_counter() - t
    job.say(f"plan: {plan.n_bins} partition(s) of <= {job.output.partition_rows:,} rows for "
            f"{len(plan.genes):,} genes" + (" (input grouped by gene: each enriched where it is read)"
                                            if plan.follows_input else ""))
    ctx, done, redone = _prepare(job, inputs, plan)
    strategy = (SelectiveScan(job.fingerprint) if inputs.selective
                else exchange.choose_exchange(plan, job.output.exchange_method, job.fingerprint,
                                              scanned=inputs.scan is not None and job.sources.track_only,
                                              slots=sum(client.nthreads().values())))
    tasks = strategy.graph(inputs, ctx, process_bin)
    job.say(f"enriching: {inputs.partitions} input partition(s) -> {plan.n_bins} gene partition(s)"
            + (f" ({len(done)} already complete)" if done else ""))
    t = time.perf_counter()
    results = _compute(client, tasks, strategy, ctx, job)
    timings["enrich_and_write"] = time.perf_counter() - t
    exchange.remove_staging(job.output.out, job.storage_options)
    results += [BinResult.kept(b, record) for b, record in done.items()]
    return _finish(job, inputs, ctx, results, redone, dashboard, timings)


def _read(client: Any, job: _Job) -> RunInputs:
    """The inputs as Dask collections: a track-only selection (or ``--selective``) from a Parquet
    track scanned at the floor (``inputs.scanned_inputs``, ``inputs.selective_inputs``),
    everything else read in full (``inputs.read_inputs``)."""
    selective = job.score is not None and job.score.selective
    if not scan_applies(job.sources, selective):
        return read_inputs(job.sources)
    from ..trackscan import ScanSpec

    track = job.sources.track
    spec = ScanSpec(tuple(job.sources.track_columns), selection=job.selection, config=job.config,
                    lenient=not job.sources.track_only, source=quarantine.source_name(track),
                    name_files=not job.sources.track_only and len(track.files) > 1)
    if selective:
        inputs = selective_inputs(job.sources, client, spec, job.output.on_bad_rows)
        if inputs is None:
            job.say("track not in gene runs across its pieces (shuffled across files): read in full")
            return read_inputs(job.sources)
        scan = inputs.scan
        job.say(f"track scanned: {scan.rows:,} rows in {scan.pieces} piece(s), "
                f"{int(scan.genes['selected'].sum()):,} to re-score"
                + (f", {sum(scan.rejected_counts.values()):,} bad" if scan.rejected_counts else ""))
        return inputs
    if not job.sources.track_only:
        inputs = context_inputs(job.sources, client, spec, job.output.on_bad_rows)
        job.say(f"track read where the positions' genes lie: {inputs.scan.pieces_read} of "
                f"{inputs.scan.pieces} piece(s)")
        return inputs
    inputs = scanned_inputs(job.sources, client, spec, job.output.on_bad_rows)
    scan = inputs.scan
    job.say(f"track scanned: {scan.rows:,} rows in {scan.pieces} piece(s), "
            f"{int(inputs.pos_counts.sum()):,} selected"
            + (f", {sum(scan.rejected_counts.values()):,} bad" if scan.rejected_counts else ""))
    return inputs


def _prepare(job: _Job, inputs: RunInputs, plan: PartitionPlan
             ) -> tuple[RunContext, dict[int, dict[str, Any]], dict[str, str]]:
    """OUT made ready (``models.prepare``; resume: the complete bins kept, those whose rejected rows
    are not all kept redone) and the run's one :class:`RunContext`. Returns it, the kept bins'
    records and the redone parts ({path: why})."""
    out, storage_options = job.output.out, job.storage_options
    input_meta = (inputs.meta("positions") if inputs.positions is not None
                  else inputs.meta("track")[list(job.sources.position_columns)])
    redone: dict[str, str] = {}
    targets, done = models.prepare(
        list(job.targets), job.score, mode=job.output.mode, plan=plan, input_meta=input_meta,
        track_meta=inputs.meta("track") if job.sources.track is not None else None, config=job.config,
        storage_options=storage_options, failed=redone)
    exchange.remove_staging(out, storage_options)
    for b, why in quarantine.kept_without_rejects(out, done, storage_options).items():
        done.pop(b)  # redone: its part is written again, with its rejected rows
        redone[f"{str(out).rstrip('/')}/{writer.part_name(b)}"] = why
    if done:
        job.say(f"resume: {len(done)} of {plan.n_bins} partition(s) already complete (verified)")
    for line in summaries.redone_lines(redone):
        job.say(line)
    checks = quarantine.bin_checks(job.record, job.manifest, job.sources.main, job.cache_path)
    aliases: tuple[tuple[str, str], ...] = ()
    if job.cache_path is not None:  # ids matched with a version suffix ignored; none matching: stop
        from ..genome.cache import load_cached
        from ..genome.geneids import reconcile_gene_ids

        aliases = reconcile_gene_ids(
            load_cached(job.cache_path), inputs.weights.index,
            label="positions" if inputs.positions is not None else "track",
            need=checks.need_annotation, log=job.say)
    ctx = RunContext(job.manifest, job.config, plan, job.sources.position_columns,
                     selection=job.selection, out=out, storage_options=storage_options,
                     fingerprint=job.fingerprint, cache_path=job.cache_path, done=frozenset(done),
                     targets=tuple(targets), score=job.score, checks=checks,
                     track_checks=quarantine.track_checks(job.record, job.sources.track),
                     gene_aliases=aliases, track_scanned=inputs.scan is not None)
    quarantine.prepare_rejected(out, done, storage_options)
    return ctx, done, redone


def _compute(client: Any, tasks: list[Any], strategy: exchange.Exchange, ctx: RunContext,
             job: _Job) -> list[BinResult]:
    """The tasks computed on the cluster; their bins' results in bin order. A KilledWorker names
    the task's bins and genes; any failure cancels the rest and drops OUT/_staging."""
    from distributed import as_completed

    diagnose.check_workers_running(client)
    futures = client.compute(tasks)
    results: list[BinResult] = []
    total = ctx.plan.n_bins - len(ctx.done)
    if job.progress:
        job.progress(0, total)
    for future in as_completed(futures):
        results += diagnose.result(future, client, ctx.plan, strategy, futures, job.output.out,
                                   job.storage_options)
        if job.progress:
            job.progress(len(results), total)
    return sorted(results, key=lambda r: r.bin)


def _finish(job: _Job, inputs: RunInputs, ctx: RunContext, results: list[BinResult],
            redone: dict[str, str], dashboard: str | None, timings: dict[str, float]) -> RunSummary:
    """The bins' results checked and added up, the outputs checked, ``_SUCCESS.json`` written."""
    totals = Totals.of(results)
    summaries.check_totals(totals, int(inputs.pos_counts.sum()) if inputs.pos_counts is not None
                           else None)
    # per bin: each exactly once, with its plan's genes and rows; the files as recorded
    exact_rows = inputs.pos_counts is not None or ctx.selective
    files = check_bins(ctx.plan, results, ctx.targets, exact_rows, job.storage_options)
    total = time.perf_counter() - job.t0
    timings["total"] = total
    track_rows = (inputs.track_rows if inputs.track_rows is not None
                  else int(inputs.track_counts.sum()) if inputs.track_counts is not None else None)
    summaries.check_outputs_visible(ctx)  # every part file is in OUT (shared with the workers)
    checks = totals.checks
    if inputs.scan is not None and not inputs.selective:  # the track's warnings (the scan's)
        checks = quarantine.merge_info(
            checks, quarantine.with_track_info({}, {"warnings": inputs.scan.warnings}))
    checks["warnings"] = {**summaries.cache_warnings(job.cache_path), **checks.get("warnings", {})}
    track_rejected = checks.get(quarantine.TRACK_REJECTED_KEY, {})
    summary = RunSummary(
        out=str(job.output.out), rows_in=totals.rows_in, rows_written=totals.written,
        rows_rejected=totals.rejected, partitions=ctx.plan.n_bins, partitions_resumed=len(ctx.done),
        partitions_redone=redone, imputed=dict(totals.report.imputed),
        imputed_reasons=dict(totals.report.reasons), seconds=total,
        positions_per_second=totals.rows_in / total if total > 0 else 0.0,
        fingerprint=job.fingerprint, success_file="", dashboard=dashboard,
        timings={k: round(v, 3) for k, v in timings.items()},
        track_rows=track_rows if job.sources.track_only else None,
        warnings=checks["warnings"], track_rows_rejected=int(sum(track_rejected.values())))
    for line in summaries.warning_lines(checks):
        job.say(line)
    summaries.check_not_all_rejected(totals, job.output.out)
    success = summaries.success_record(job, ctx, totals, summary, files, redone, track_rows)
    summary.success_file = models.write_successes(list(ctx.targets), success, job.storage_options,
                                                  files)
    return summary

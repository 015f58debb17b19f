"""The engine's input checks and failure diagnoses (validation wired into a run).

* :func:`check_source` runs :func:`dask_enrich.validate.check_columns` on the client from an input's
  columns and dtypes (Parquet footer, or the first CSV rows), before any heavy work.
* :func:`check_bin` runs :func:`dask_enrich.validate.split_bad_rows` on one bin on the worker, before
  ``core.enrich``: with ``--on-bad-rows error`` a bad row fails the run
  (:func:`dask_enrich.validate.raise_for_bad_rows`); with ``quarantine`` the bad rows (input
  columns + ``reason`` + ``source``) go to ``OUT/_rejected/part-NNNNN.parquet`` (temporary name, then
  rename, written before the bin's part file, so a complete part always has its rejected file).
* :func:`check_parts_visible` and :func:`killed_worker_failure` turn two silent or cryptic cluster
  failures into :class:`~dask_enrich.errors.RunFailure` messages (OUT not shared with the workers;
  a bin that kills its worker, named by its genes and rows).
"""
from __future__ import annotations

import gzip
import io as _io
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import validate
from ..config import EnrichConfig
from ..errors import InputError, RunFailure
from ..io import InputSource, _fs as _input_fs
from . import writer

OnBadRows = Literal["error", "quarantine"]
#: The int32 column of each row's input file (index into the input's files), carried from the read
#: to the row checks when the positions come from several files.
FILE_COLUMN = "_source_file"
ON_BAD_ROWS = ("error", "quarantine")
#: Bad rows (``--on-bad-rows quarantine``), one file per bin; the underscore makes Parquet dataset
#: readers of OUT skip it, so OUT reads as exactly the written rows.
REJECTED_DIR = writer.REJECTED_DIR
#: Bad rows of a track read for context (``--on-bad-rows quarantine``), one file per bin.
TRACK_REJECTED_DIR = writer.TRACK_REJECTED_DIR
#: The key of a bin's check info that counts its track's rejected rows by reason.
TRACK_REJECTED_KEY = "track_rejected"


# --- client side: schema --------------------------------------------------------------------------
def source_name(source: InputSource) -> str:
    """The file a message names: the file itself for one-file inputs, else the input path."""
    return source.files[0] if len(source.files) == 1 else source.path


def source_dtypes(source: InputSource) -> dict[str, Any]:
    """The input's columns and their raw dtypes, read cheaply (Parquet footer of the first file, or
    the first 100 rows of the first CSV file, types inferred)."""
    fs, path = _input_fs(source.files[0], source.storage_options)
    try:
        if source.format == "parquet":
            with fs.open(path, "rb") as handle:
                empty = pq.ParquetFile(handle).schema_arrow.empty_table()
            return empty.to_pandas().dtypes.to_dict()
        with fs.open(path, "rb") as raw:
            handle = gzip.GzipFile(fileobj=raw) if source.compression == "gzip" else raw
            head = b"".join(line for _, line in zip(range(101), handle))
        frame = pd.read_csv(_io.BytesIO(head), sep=source.sep, nrows=100)
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame.dtypes.to_dict()
    except Exception as exc:  # unreadable or corrupt: one clean message naming the file
        raise InputError(f"{source.label} file {source.files[0]}: cannot be read "
                         f"({type(exc).__name__}: {exc})") from None


def check_source(source: InputSource, kind: str = "positions") -> None:
    """InputError naming the file and every missing (with a close-name suggestion) or mistyped
    required column of ``source`` (``kind``: ``positions`` or ``track``)."""
    validate.check_columns(source_dtypes(source), source=source_name(source), kind=kind)


def _file_columns(source: InputSource, file: str) -> list[str]:
    """The column names of one file of ``source`` (Parquet footer, or the CSV header line)."""
    fs, path = _input_fs(file, source.storage_options)
    with fs.open(path, "rb") as raw:
        if source.format == "parquet":
            return list(pq.ParquetFile(raw).schema_arrow.names)
        handle = gzip.GzipFile(fileobj=raw) if source.compression == "gzip" else raw
        header = handle.readline().decode("utf-8-sig").rstrip("\r\n")
    return [c.strip() for c in header.split(source.sep)]


def check_files_have(source: InputSource | None, columns: Any) -> None:
    """InputError naming the first file of a multi-file input that lacks a column the run reads
    (the checks so far saw only the first file's columns). Footers or header lines only, read
    in parallel."""
    if source is None or len(source.files) < 2:
        return
    from concurrent.futures import ThreadPoolExecutor

    wanted = list(dict.fromkeys(columns))

    def missing(file: str) -> list[str]:
        try:
            have = set(_file_columns(source, file))
        except Exception as exc:
            raise InputError(f"{source.label} file {file}: cannot be read "
                             f"({type(exc).__name__}: {exc})") from None
        return [c for c in wanted if c not in have]

    with ThreadPoolExecutor(max_workers=min(16, len(source.files) - 1)) as pool:
        for file, absent in zip(source.files[1:], pool.map(missing, source.files[1:])):
            if absent:
                raise InputError(f"{source.label} file {file}: lacks column(s) "
                                 f"{', '.join(map(repr, absent))} (the first file of {source.path}, "
                                 f"{source.files[0]}, has them)")


def check_rows_present(rows: int, source: InputSource) -> None:
    """InputError when the input holds no rows."""
    validate.check_not_empty(int(rows), source=source_name(source), kind=source.label)


# --- worker side: rows ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BinChecks:
    """What the per-bin row checks need (shipped in the run's context)."""

    on_bad_rows: str = "error"
    source: str = ""
    need_sequence: bool = False  # reject genes whose chromosome the FASTA lacks
    #: check rows against the annotation (gene present, position inside its span): only when a
    #: feature reads the gene's annotation, sequence or neighbours, or positions are gene-relative
    need_annotation: bool = True
    files: tuple[str, ...] = ()  # the input's files when rows carry FILE_COLUMN (several files)


def check_bin(positions: pd.DataFrame, checks: BinChecks, *, bin_id: int, config: EnrichConfig,
              genomic: Any, out: str, fingerprint: str,
              storage_options: dict[str, Any] | None = None, rejected_dir: str = REJECTED_DIR
              ) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """Split the bad rows off one bin: (good rows with int64 positions, rows rejected, info).

    ``info`` is JSON-able: ``{"warnings": {...}, "rejected": {reason code: rows}}``. With
    ``on_bad_rows == "error"`` a bad row raises InputError (file, reason codes, example rows); with
    ``quarantine`` the bad rows are written to ``OUT/<rejected_dir>/part-NNNNN.parquet``.
    """
    file_of_row = None
    if FILE_COLUMN in positions.columns:
        file_of_row = positions[FILE_COLUMN].to_numpy()
        positions = positions.drop(columns=FILE_COLUMN)
    use_annotation = checks.need_annotation or config.coordinates == "gene_relative"
    gene_table = genomic.gene_table if genomic is not None and use_annotation else None
    has_sequence = bool(checks.need_sequence and gene_table is not None
                        and getattr(genomic, "has_sequence", False))
    good, rejected, warnings = validate.split_bad_rows(
        positions, source=checks.source, gene_table=gene_table,
        has_sequence_for=True if has_sequence else None, config=config,
        genome_names=(getattr(genomic, "report", None) or {}).get("seq_names_mapped"),
        missing_sequences=(getattr(genomic, "report", None) or {}).get("missing_sequences")
        if has_sequence else None)
    info: dict[str, Any] = {"warnings": warnings, "rejected": {}}
    if len(rejected):
        source = checks.source
        if file_of_row is not None and checks.files:  # name the file of each bad row
            names = np.asarray(checks.files, dtype=object)[
                file_of_row[positions.index.get_indexer(rejected.index)]]
            rejected[validate.SOURCE] = pd.Series(names, index=rejected.index, dtype="str")
            shown = list(dict.fromkeys(names.tolist()))
            source = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more file(s)"
                                              if len(shown) > 3 else "")
        if checks.on_bad_rows != "quarantine":
            validate.raise_for_bad_rows(rejected, source)
        codes = validate.reason_code(rejected[validate.REASON]).value_counts()
        info["rejected"] = {str(k): int(v) for k, v in codes.items()}
        write_rejected(rejected, out, bin_id, fingerprint, storage_options, rejected_dir)
    if good["position"].dtype != np.int64:  # every kept position is a whole number
        good = good.assign(position=good["position"].to_numpy().astype(np.int64))
    return good, int(len(rejected)), info


def write_rejected(rejected: pd.DataFrame, out: str, bin_id: int, fingerprint: str,
                   storage_options: dict[str, Any] | None = None,
                   rejected_dir: str = REJECTED_DIR) -> str:
    """Write one bin's rejected rows to ``OUT/_rejected/part-NNNNN.parquet`` (temporary name, then
    rename); the footer records the run fingerprint, the bin and the row count. Returns the path."""
    fs, root = writer._fs(out, storage_options)
    directory = f"{root}/{rejected_dir}"
    fs.makedirs(directory, exist_ok=True)
    table = pa.Table.from_pandas(rejected.reset_index(drop=True), preserve_index=False)
    record = {"fingerprint": fingerprint, "bin": int(bin_id), "rows": int(table.num_rows)}
    table = table.replace_schema_metadata({writer.META_KEY: json.dumps(record).encode()})
    return writer.write_table_atomic(fs, table, directory, bin_id, compression="snappy",
                                     write_page_checksum=True)


def prepare_rejected(out: str, done: Mapping[int, Any],
                     storage_options: dict[str, Any] | None = None) -> None:
    """Before a (resumed) run: keep the rejected files of complete bins only; delete temporary
    files and the files of bins that will be redone (they are written again)."""
    fs, root = writer._fs(out, storage_options)
    for directory in (f"{root}/{REJECTED_DIR}", f"{root}/{TRACK_REJECTED_DIR}"):
        if not fs.exists(directory):
            continue
        for name in writer._listing(fs, directory):
            match = writer.PART_PATTERN.match(name)
            if writer.TMP_MARKER in name or not match or int(match.group(1)) not in done:
                fs.rm(f"{directory}/{name}")


def kept_without_rejects(out: str, done: Mapping[int, Mapping[str, Any]],
                         storage_options: dict[str, Any] | None = None) -> dict[int, str]:
    """The kept (resumed) bins whose rejected rows are not all in their ``_rejected/`` (or
    ``_rejected-track/``) file: {bin: why}. Such a bin is redone, so no rejected row is lost."""
    fs, root = writer._fs(out, storage_options)
    problems: dict[int, str] = {}
    for b, record in done.items():
        checks = (record.get("report") or {}).get(CHECKS_KEY) or {}
        wanted = ((REJECTED_DIR, int(record.get("rows_rejected", 0))),
                  (TRACK_REJECTED_DIR, int(sum((checks.get(TRACK_REJECTED_KEY) or {}).values()))))
        for directory, rows in wanted:
            if rows:
                found = writer.read_part_record(fs, f"{root}/{directory}/{writer.part_name(b)}")
                if found is None or found.get("rows") != rows:
                    problems[b] = f"its {rows:,} rejected row(s) are not all in {directory}/"
    return problems


def merge_info(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two bins' check infos together (warnings merged, rejected counts added, of the rows and of
    the track's rows)."""
    merged = {"warnings": validate.merge_warnings(a.get("warnings", {}), b.get("warnings", {}))}
    for key in ("rejected", TRACK_REJECTED_KEY):
        counts = dict(a.get(key, {}))
        for code, count in b.get(key, {}).items():
            counts[code] = int(counts.get(code, 0)) + int(count)
        if counts or key == "rejected":
            merged[key] = counts
    return merged


def track_checks(run_record: Mapping[str, Any], source: InputSource | None) -> BinChecks:
    """The row checks of a track read for context: values only (gene id, position, scores, strand,
    repeats); its rows outside a gene's span are never read, so the annotation is not checked."""
    if source is None:
        return BinChecks()
    settings = run_record.get("settings", {}) or {}
    return BinChecks(on_bad_rows=str(settings.get("on_bad_rows", "error")),
                     source=source_name(source), need_annotation=False,
                     files=tuple(source.files) if len(source.files) > 1 else ())


def with_track_info(info: Mapping[str, Any], track_info: Mapping[str, Any]) -> dict[str, Any]:
    """A bin's check info with that of its track's rows: rejected counts under
    ``track_rejected``, warnings under ``track_<code>`` with messages that say so."""
    if not track_info:
        return dict(info)
    warnings = {f"track_{code}": {**item, "message": f"{item.get('message', code)} (track rows)"}
                for code, item in track_info.get("warnings", {}).items()}
    merged = merge_info(info, {"warnings": warnings})
    if track_info.get("rejected"):
        merged[TRACK_REJECTED_KEY] = dict(track_info["rejected"])
    return merged


# --- client side: failures ------------------------------------------------------------------------
def check_parts_visible(out: str, n_bins: int, storage_options: dict[str, Any] | None = None) -> None:
    """RunFailure when OUT does not hold every part file the workers reported written (the workers
    wrote to another filesystem than the one the client sees at that path)."""
    fs, root = writer._fs(out, storage_options)
    present = set(writer._listing(fs, root)) if fs.exists(root) else set()
    missing = [writer.part_name(b) for b in range(n_bins) if writer.part_name(b) not in present]
    if missing:
        raise RunFailure(
            f"OUT {out} lacks {len(missing)} of the {n_bins} part file(s) the workers wrote (e.g. "
            f"{missing[0]}): OUT is not on a filesystem shared with the workers. Give an OUT that the "
            "client and every worker see at the same path (a shared mount, or a URL such as s3://)")


_GATHER_KEY = re.compile(r"^gather-[A-Za-z_]+-(\d+)-")


def bin_of_key(key: Any, bin_names: set[str]) -> int | None:
    """The bin a task key belongs to, or None (an input-partition task, or unknown)."""
    if isinstance(key, bytes):
        key = key.decode()
    if isinstance(key, str):
        match = _GATHER_KEY.match(key)
        return int(match.group(1)) if match else None
    if isinstance(key, tuple) and len(key) >= 2 and isinstance(key[-1], (int, np.integer)):
        name = str(key[0])
        if name in bin_names or "_enrich" in name or "_write_bin" in name:
            return int(key[-1])
    return None


_SPLIT_KEY = re.compile(r"^split-([A-Za-z_]+)-(\d+)-")
_READ_NAME = re.compile(r"^read-([A-Za-z_]+)-")


def input_of_key(key: Any) -> tuple[str, int] | None:
    """(input label, input partition) of a read or staged-split task key, or None."""
    if isinstance(key, bytes):
        key = key.decode()
    if isinstance(key, str):
        match = _SPLIT_KEY.match(key)
        return (match.group(1), int(match.group(2))) if match else None
    if isinstance(key, tuple) and len(key) >= 2 and isinstance(key[-1], (int, np.integer)):
        match = _READ_NAME.match(str(key[0]))
        return (match.group(1), int(key[-1])) if match else None
    return None


def _genes_of_bins(plan: Any, bins: Any) -> str:
    """'(genes A (n rows), ...; N rows in all)': the largest genes of these bins first."""
    in_bins = np.flatnonzero(np.isin(np.asarray(plan.bins), np.asarray(bins)))
    sizes = np.asarray(plan.sizes)[in_bins]
    order = in_bins[np.argsort(-sizes, kind="stable")]
    shown = ", ".join(f"{plan.genes[i]} ({int(plan.sizes[i]):,} rows)" for i in order[:5])
    more = f" and {len(order) - 5} more" if len(order) > 5 else ""
    return f"(gene{'s' if len(order) > 1 else ''} {shown}{more}; {int(sizes.sum()):,} rows in all)"


_LOCAL_KEY = re.compile(r"^enrich-write-([A-Za-z_]+)-(\d+)-")


def local_part_key(label: str, part: int, fingerprint: str) -> str:
    """The key of the task that enriches and writes the bins of one input partition."""
    return f"enrich-write-{label}-{part}-{fingerprint[:8]}"


def local_part_of_key(key: Any) -> tuple[str, int] | None:
    """(input label, input partition) of an enrich-where-read task key (see local_part_key)."""
    if isinstance(key, bytes):
        key = key.decode()
    match = _LOCAL_KEY.match(key) if isinstance(key, str) else None
    return (match.group(1), int(match.group(2))) if match else None


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}"
        value /= 1024
    return f"{value:,.0f} TiB"  # pragma: no cover


def worker_memory_limits(client: Any) -> list[int]:
    """The memory limit of each worker the scheduler knows (0 = none), or [] when unknown."""
    try:
        workers = client.scheduler_info()["workers"].values()
        return [int(w.get("memory_limit") or 0) for w in workers]
    except Exception:
        return []


def killed_worker_failure(exc: BaseException, plan: Any, bin_names: set[str],
                          memory_limits: list[int]) -> RunFailure:
    """A RunFailure for a task that killed its worker(s) repeatedly, naming the bin's genes and
    their rows (the usual cause: one gene too large for a worker's memory)."""
    key = getattr(exc, "task", None)
    bin_id = bin_of_key(key, bin_names)
    limits = [m for m in memory_limits if m > 0]
    limit = (f"worker memory limit {_bytes(min(limits))}" if limits
             else "worker memory limit unknown")
    input_part = input_of_key(key)
    local_part = local_part_of_key(key)
    if local_part is not None and getattr(plan, "follows_input", False):
        bins = plan.bins_of_part(local_part[1])
        where = (f"input partition {local_part[1]} of the {local_part[0]} (enriched where read) with "
                 f"partition{'s' if len(bins) > 1 else ''} {', '.join(map(str, bins))} ")
        where += _genes_of_bins(plan, bins)
    elif input_part is not None:
        where = (f"reading partition {input_part[1]} of the {input_part[0]} input (one file or block "
                 "of it; a gzip CSV file is read whole)")
    elif bin_id is None or not (0 <= bin_id < plan.n_bins):
        where = f"task {key!r}"
    else:
        where = f"partition {bin_id} " + _genes_of_bins(plan, [bin_id])
    return RunFailure(
        f"{where} killed its worker repeatedly; it most likely ran out of memory ({limit}). A gene "
        "is never split across partitions, so --partition-rows cannot make it smaller: raise "
        "--memory-limit (or start the workers with more memory), or leave the gene out "
        f"[{type(exc).__name__}: {exc}]")


# --- thin helpers for the engine's call sites ---------------------------------------------------
def absolute(path: str | None) -> str | None:
    """A local path made absolute on the client (workers resolve relative paths against their own
    working directories); URLs and None unchanged."""
    if path is None:
        return None
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return text
    import os

    if text.startswith("file://"):
        return "file://" + os.path.abspath(text.removeprefix("file://"))
    return os.path.abspath(text)


def check_sources(pos_source: InputSource | None, track_source: InputSource | None) -> None:
    """The schema checks of a run's inputs (client side, before any work)."""
    if pos_source is not None:
        check_source(pos_source, "positions")
    if track_source is not None:
        check_source(track_source, "track")


def check_counts(pos_source: InputSource | None, pos_counts: "pd.Series | None",
                 track_source: InputSource | None, track_counts: "pd.Series | None") -> None:
    """InputError when the input the positions come from holds no rows."""
    if pos_source is not None and pos_counts is not None:
        check_rows_present(int(pos_counts.sum()), pos_source)
    elif track_source is not None and track_counts is not None:
        check_rows_present(int(track_counts.sum()), track_source)


def bin_checks(run_record: Mapping[str, Any], manifest: Any, source: InputSource | None,
               cache_path: str | None) -> BinChecks:
    """The per-bin checks of a run: ``--on-bad-rows`` from the run's settings, the input's name,
    whether genes without sequence are rejected (a cache with a genome and a manifest with
    sequence features), and whether rows are checked against the annotation at all (not for a
    manifest of score-only features, which never read it)."""
    from ..features.registry import ANNOTATION, CONTEXT, SEQUENCE

    settings = run_record.get("settings", {}) or {}
    features = getattr(manifest, "features", ())
    need_sequence = cache_path is not None and any(SEQUENCE in f.requires for f in features)
    need_annotation = any(f.requires & {ANNOTATION, SEQUENCE, CONTEXT} for f in features)
    return BinChecks(on_bad_rows=str(settings.get("on_bad_rows", "error")),
                     source=source_name(source) if source is not None else "",
                     need_sequence=bool(need_sequence), need_annotation=need_annotation,
                     files=tuple(source.files) if source is not None and len(source.files) > 1
                     else ())


def read_options(source: InputSource) -> dict[str, Any]:
    """``read_dask`` options of the positions: lenient positions (checked per row), and each row's
    file when there are several (so that a bad row's message and reason name its file)."""
    return {"lenient": True, "file_column": FILE_COLUMN if len(source.files) > 1 else None}


CHECKS_KEY = "checks"


def pop_checks(report: dict[str, Any], total: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the enrichment report without the bin's check info, ``total`` merged with it)."""
    report = dict(report)
    info = report.pop(CHECKS_KEY, None) or {}
    return report, merge_info(total, info)


def output_dirs(ctx: Any) -> list[str]:
    """The directories a run writes part files to (one per target, else OUT)."""
    targets = getattr(ctx, "targets", ()) or ()
    return [t.out for t in targets] or [ctx.out]


def check_outputs_visible(ctx: Any) -> None:
    """At the end of a run, before ``_SUCCESS.json``: delete the temporary files that writers
    killed mid-write left behind (their bins were written again elsewhere), then
    :func:`check_parts_visible` for every output directory of the run."""
    for out in output_dirs(ctx):
        remove_temporaries(out, ctx.storage_options)
        check_parts_visible(out, ctx.plan.n_bins, ctx.storage_options)
    for directory in (REJECTED_DIR, TRACK_REJECTED_DIR):
        remove_temporaries(f"{str(ctx.out).rstrip('/')}/{directory}", ctx.storage_options)


def remove_temporaries(directory: str, storage_options: dict[str, Any] | None = None) -> None:
    """Delete the files of ``directory`` whose names mark them temporary (errors ignored)."""
    fs, root = writer._fs(directory, storage_options)
    try:
        names = writer._listing(fs, root) if fs.exists(root) else []
    except Exception:
        return
    for name in names:
        if writer.TMP_MARKER in name:
            try:
                fs.rm(f"{root}/{name}")
            except Exception:
                pass


def result(future: Any, client: Any, plan: Any, futures: Any = (), out: str | None = None,
           storage_options: dict[str, Any] | None = None) -> Any:
    """``future.result()``; a KilledWorker becomes a RunFailure naming the bin's genes. On any
    failure the run's other ``futures`` are cancelled and its staged rows (``OUT/_staging``)
    deleted, best effort, before the error goes up."""
    from distributed import KilledWorker

    try:
        return future.result()
    except BaseException as exc:
        lost = scheduler_lost(client, exc)
        if not lost:  # an interrupt does not wait for running tasks
            _abandon(client, futures, out, storage_options, wait=isinstance(exc, Exception))
        if isinstance(exc, KilledWorker):
            key = getattr(future, "key", None)
            names = {str(key[0])} if isinstance(key, tuple) else set()
            raise killed_worker_failure(exc, plan, names, worker_memory_limits(client)) from exc
        if lost:
            raise lost_scheduler_failure(exc) from exc
        raise


def scheduler_lost(client: Any, exc: BaseException) -> bool:
    """Whether ``exc`` means the client lost its scheduler (the connection closed, the
    futures cancelled with it), not a failure of a task."""
    import asyncio
    import concurrent.futures

    from distributed.comm.core import CommClosedError

    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return False
    if isinstance(exc, (CommClosedError, asyncio.CancelledError, concurrent.futures.CancelledError)):
        return True
    status = str(getattr(client, "status", "running"))
    return isinstance(exc, (OSError, TimeoutError)) and status not in ("running", "connecting")


def lost_scheduler_failure(exc: BaseException) -> "RunFailure":
    """The RunFailure of a run whose scheduler went away (killed, its machine lost)."""
    from ..errors import SchedulerLost

    return SchedulerLost("scheduler lost; rerun with --resume (the complete partitions are kept; the "
                      f"client lost its connection to the Dask scheduler: {type(exc).__name__})")


#: A worker process uses about 150 MiB at rest (Python, NumPy, pandas, pyarrow, distributed and
#: this package imported); below this limit it is paused (80%) or killed before any task runs.
MIN_WORKER_MEMORY = 256 * 2**20


def check_memory_limit(memory_limit: Any, workers: int) -> None:
    """RunFailure when a LocalCluster worker's memory limit is too small to start a worker
    (else the run would wait forever for paused workers)."""
    if memory_limit in (None, 0, "0", "auto"):
        return
    from dask.utils import parse_bytes

    try:
        limit = parse_bytes(memory_limit) if isinstance(memory_limit, str) else int(memory_limit)
    except (ValueError, TypeError):
        from ..errors import ConfigError

        raise ConfigError(f"--memory-limit {memory_limit!r}: expected a size such as 4GB, "
                          "'auto' or 0") from None
    if 0 < limit < MIN_WORKER_MEMORY:
        raise RunFailure(f"--memory-limit {memory_limit} ({_bytes(limit)}) is below what a worker "
                         f"process needs to start (about 150 MiB at rest; give at least "
                         f"{_bytes(MIN_WORKER_MEMORY)}, or 0 for no limit)")


def check_workers_running(client: Any) -> None:
    """RunFailure when every worker of the cluster is paused already before any task (its memory
    at rest above its pause threshold: the run would wait forever)."""
    try:
        workers = list(client.scheduler_info()["workers"].values())
    except Exception:
        return
    if workers and all(str(w.get("status", "")).endswith("paused") for w in workers):
        limits = [int(w.get("memory_limit") or 0) for w in workers]
        used = [int((w.get("metrics") or {}).get("memory") or 0) for w in workers]
        raise RunFailure(f"every worker is paused before any task: its memory at rest "
                         f"({_bytes(max(used))}) is near its memory limit ({_bytes(min(limits))}); "
                         "start the workers with a larger --memory-limit")


def _abandon(client: Any, futures: Any, out: str | None,
             storage_options: dict[str, Any] | None, wait: bool = True) -> None:
    """Cancel a failed run's remaining tasks and delete its staged rows (errors ignored)."""
    try:
        if futures:
            client.cancel(list(futures))
            if wait:
                _wait_idle(client)
    except Exception:
        pass
    if out is not None:
        from . import exchange

        try:
            exchange.remove_staging(out, storage_options)
        except Exception:
            pass


def _executing(dask_worker: Any = None) -> int:
    return len(dask_worker.state.executing) if dask_worker is not None else 0


def _wait_idle(client: Any, timeout: float = 15.0) -> None:
    """Wait (at most ``timeout`` s) until no worker still executes a task: a cancelled task that
    was running goes on to its end, and may write its part after the run has failed."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.run(_executing).values()):
            return
        time.sleep(0.1)


def cache_warnings(cache_path: str | None) -> dict[str, Any]:
    """The warnings of the genomic cache's build report that a run repeats in its summary and
    ``_SUCCESS.json`` (genes with exons outside their gene line)."""
    if cache_path is None:
        return {}
    from ..genome.cache import load_cached

    genes = (load_cached(cache_path).report or {}).get("genes_with_exons_outside_gene_line") or []
    if not genes:
        return {}
    shown = ", ".join(genes[:5]) + (", ..." if len(genes) > 5 else "")
    return {"exons_outside_gene_line": {
        "count": len(genes), "genes": genes[:50],
        "message": f"{len(genes)} gene(s) of the annotation with exons outside their gene line "
                   f"({shown}): their span is the gene line's, their splice sites the exons'"}}


def warning_lines(checks: Mapping[str, Any]) -> list[str]:
    """One ``warning: ...`` line per warning of the run's row checks."""
    return [f"warning: {item.get('message', code)}"
            for code, item in (checks.get("warnings", {}) or {}).items()]

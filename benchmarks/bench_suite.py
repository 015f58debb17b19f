"""The benchmark suite: dask_enrich against the seed algorithm and a Polars peer, scaling, memory,
and where the time goes. One command:

    python benchmarks/bench_suite.py [--quick] [--budget SECONDS]

Sections (all in one run, so every ratio compares figures taken minutes apart on the same machine):

a. seed vs core: the seed's per-gene loop (``seed_baseline.py``) against ``dask_enrich.core.enrich``
   on 2,000 / 20,000 / 200,000 positions in memory, the 124-feature demo manifest. The core runs
   twice: with k-mers/sequence/genomic features imputed (the same fill work as the seed's zeros:
   like for like) and with the real chromosome 1 genomic cache (strictly more work than the seed).
b. Polars peer vs dask_enrich: the 43 score-derived features, Parquet in, Parquet out, on the same
   generated input: Polars lazy + ``sink_parquet`` (``polars_peer.py``), the dask_enrich engine
   (``run_enrichment``, 2 workers), and the core streamed file by file in one process, each the
   faster of two runs (after a warm-up run for Polars). The values
   of the Polars output are checked against the core's on a sample of 200,000 rows.
c. scaling: ``run_enrichment`` end to end from 10,000 to 20,000,000 positions (2M with --quick), on
   a fresh LocalCluster of 1 and of 2 single-threaded worker processes per run: wall time,
   throughput, CPU seconds and peak RSS per worker (VmHWM of each worker process), and the
   read+write floor on the same cluster (each input file read and an output-sized Parquet file of
   the same schema written, nothing computed). One run with the full manifest and the real genome.
d. where the time goes: the engine's own steps run serially in one process on the largest input
   (plan, read, partition, row checks, the core's score features, its sequence/k-mer/genomic
   features, the part writer), for the score-derived manifest at the largest size and for the full
   manifest (real genome) at up to 2M positions; the inputs are grouped by gene, so each bin is
   enriched where it is read, and the staged exchange that ungrouped input would pay is timed
   beside it.

Inputs come from ``data.py`` (real Arabidopsis chr1 genes, dense uncertain positions, Parquet).
Results: ``benchmarks/results/suite.json`` and ``suite.md`` (``suite-quick.*`` with --quick) and
PNG plots. The
machine's cores may be shared with other work: every timing is given as wall and CPU seconds, and
ratios of both are reported. Dirty pages are flushed (``os.sync``, untimed) before every timed run
that writes. Runs that would overrun ``--budget`` are skipped and listed as such.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402  (benchmarks/data.py)
import polars_peer  # noqa: E402
import seed_baseline  # noqa: E402
from dask_enrich.config import EnrichConfig  # noqa: E402
from dask_enrich.core import enrich, output_schema  # noqa: E402
from dask_enrich.features import registry  # noqa: E402
from dask_enrich.features.scores import SCORE_FEATURES  # noqa: E402
from dask_enrich.manifest import Manifest, load_manifest, manifest_from_names  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MODEL_DIR = REPO / "dask_enrich" / "data" / "demo_model"
SEED_SIZES = (2_000, 20_000, 200_000)
SPARSE_SEED = (20_000, 0.02)  # full mode: 20k positions at 1 in 50 genic nucleotides
SCALING_FULL = (10_000, 100_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000)
SCALING_QUICK = (10_000, 100_000, 1_000_000, 2_000_000)
FULL_MANIFEST_E2E = 2_000_000
INPUT_FLOATS = ("donor_score", "acceptor_score", "neither_score", "context_score_m2",
                "context_score_m1", "context_score_p1", "context_score_p2")

log = print


# --- small utilities -----------------------------------------------------------------------------
class Clock:
    """Wall and CPU (this process, all threads) seconds of a block."""

    def __enter__(self) -> "Clock":
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def settle() -> None:
    """Flush dirty pages to disk before a timed run that writes, so that no run pays for writing
    back the output of the one before it (outputs are gigabytes; untimed)."""
    os.sync()


def best_of(fn: Callable[[], Any], repeat: int, io: bool = False) -> tuple[float, float]:
    """(best wall, CPU of that run) over ``repeat`` runs (``io``: settle the disk before each)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        gc.collect()
        if io:
            settle()
        with Clock() as c:
            fn()
        if c.wall < best[0]:
            best = (c.wall, c.cpu)
    return best


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*.parquet"))


def parquet_files(path: Path) -> list[Path]:
    return sorted(Path(path).glob("*.parquet"))


def fmt_n(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{n:.0f}"


def manifests() -> dict[str, Manifest]:
    full = load_manifest(MODEL_DIR)
    scores = manifest_from_names([n for n in full.names if n in SCORE_FEATURES], name="scores")
    sequence = manifest_from_names([n for n in full.names if registry.lookup(n).group in
                                    ("sequence", "kmer", "genomic")], name="sequence")
    return {"full": full, "scores": scores, "sequence": sequence}


def genomic_cache_path() -> Path | None:
    """The chromosome 1 genomic cache (built once, reused), or None when it cannot be built."""
    out = data.data_dir() / "cache-chr1"
    try:
        from dask_enrich.genome.cache import build_cache

        build_cache(str(data.chromosome_fasta()), str(data.chromosome_gtf()), out)
        return out
    except Exception as exc:  # the genome package is another helper's: report, carry on
        log(f"(no genomic cache: {type(exc).__name__}: {exc})")
        return None


def input_dtypes(src: Path) -> dict[str, Any]:
    from dask_enrich.io import normalise_frame

    empty = pq.read_schema(parquet_files(src)[0]).empty_table().to_pandas()
    return normalise_frame(empty).dtypes.to_dict()


# --- a. seed vs core -----------------------------------------------------------------------------
def bench_seed(m: dict[str, Manifest], cache: Path | None, quick: bool = False
               ) -> list[dict[str, Any]]:
    genomic = None
    if cache is not None:
        from dask_enrich.genome.cache import load_cached

        genomic = load_cached(cache)
    impute = EnrichConfig(missing="impute")
    rows = []
    enrich(data.make_positions(2_000), m["full"], config=impute)  # warm-up (imports, caches)
    sizes = [(n, data.DENSITY) for n in SEED_SIZES]
    if not quick:  # sensitivity: sparser uncertain positions, i.e. fewer positions per gene
        sizes.append((SPARSE_SEED[0], SPARSE_SEED[1]))
    for n, density in sizes:
        frame = data.make_positions(n, density=density)
        genes = frame["gene_id"].nunique()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the seed's column-by-column inserts warn
            seed_wall, seed_cpu = best_of(lambda: seed_baseline.seed_enrich(frame, m["full"].names),
                                          3 if n <= 2_000 else 1)
        core_wall, core_cpu = best_of(lambda: enrich(frame, m["full"], config=impute), 5)
        verbatim = None
        if not quick and n == max(SEED_SIZES) and density == data.DENSITY:
            with warnings.catch_warnings():  # the seed exactly as written (one Series per name)
                warnings.simplefilter("ignore")
                verbatim = best_of(lambda: seed_baseline.seed_enrich(frame, m["full"].names,
                                                                     verbatim=True), 1)
        row = {"positions": n, "density": density, "genes": genes,
               "seed_s": seed_wall, "seed_cpu_s": seed_cpu,
               "core_imputed_s": core_wall, "core_imputed_cpu_s": core_cpu,
               "speedup": seed_wall / core_wall, "speedup_cpu": seed_cpu / core_cpu}
        if verbatim is not None:
            row.update({"seed_verbatim_s": verbatim[0], "seed_verbatim_cpu_s": verbatim[1],
                        "speedup_verbatim": verbatim[0] / core_wall,
                        "speedup_verbatim_cpu": verbatim[1] / core_cpu})
        if genomic is not None:
            out, report = enrich(frame, m["full"], genomic=genomic)
            assert not report.imputed, report.imputed
            g_wall, g_cpu = best_of(lambda: enrich(frame, m["full"], genomic=genomic), 3)
            row.update({"core_genome_s": g_wall, "core_genome_cpu_s": g_cpu,
                        "speedup_genome": seed_wall / g_wall, "speedup_genome_cpu": seed_cpu / g_cpu})
        rows.append(row)
        log(f"  seed vs core {fmt_n(n):>5s}: seed {seed_wall:8.3f} s, core {core_wall:7.4f} s "
            f"-> {row['speedup']:6.0f}x wall, {row['speedup_cpu']:6.0f}x CPU"
            + (f"; with genome {row['speedup_genome']:6.0f}x" if genomic is not None else ""))
    # Again with the malloc settings of the engine's worker processes, where the core runs in a
    # dask_enrich job (freed blocks kept for reuse instead of fresh zeroed pages per array); the
    # seed runs under the same settings. From here on this process keeps them.
    if use_worker_malloc():
        for row in rows:
            if row["density"] != data.DENSITY:
                continue
            frame = data.make_positions(row["positions"], density=row["density"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seed_wall, seed_cpu = best_of(lambda: seed_baseline.seed_enrich(
                    frame, m["full"].names), 3 if row["positions"] <= 2_000 else 1)
            core_wall, core_cpu = best_of(lambda: enrich(frame, m["full"], config=impute), 5)
            row["worker_malloc"] = {"seed_s": seed_wall, "seed_cpu_s": seed_cpu,
                                    "core_imputed_s": core_wall, "core_imputed_cpu_s": core_cpu,
                                    "speedup": seed_wall / core_wall,
                                    "speedup_cpu": seed_cpu / core_cpu}
            log(f"  seed vs core {fmt_n(row['positions']):>5s}, worker malloc settings: seed "
                f"{seed_wall:8.3f} s, core {core_wall:7.4f} s -> {seed_wall / core_wall:6.0f}x wall, "
                f"{seed_cpu / core_cpu:6.0f}x CPU")
    return rows


def use_worker_malloc() -> bool:
    """Apply the engine's worker malloc settings (``WORKER_MALLOC_ENV``) to this process with
    glibc's ``mallopt`` (and Arrow's pool: the system allocator); False where that is not
    available."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    from dask_enrich.engine.run import WORKER_MALLOC_ENV

    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    if WORKER_MALLOC_ENV.get("ARROW_DEFAULT_MEMORY_POOL") == "system":
        pa.set_memory_pool(pa.system_memory_pool())
    options = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}  # M_TRIM_, M_MMAP_THRESHOLD
    return all(libc.mallopt(code, int(WORKER_MALLOC_ENV[k])) == 1 for k, code in options.items())


# --- cluster runs --------------------------------------------------------------------------------
def _worker_stats() -> dict[str, float]:
    """CPU seconds and peak RSS of this worker process. The peak is VmHWM (the high-water mark of
    this process's own memory map): ``ru_maxrss`` would carry the parent's peak across exec."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return {"cpu": r.ru_utime + r.ru_stime, "maxrss": hwm * 1024.0}


def _warm_worker() -> bool:
    import dask_enrich.engine.run  # noqa: F401
    import dask_enrich.core  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    return True


def _floor_file(file: str, out: str, schema: pa.Schema) -> int:
    """Read one input file and write an output-sized file of ``schema`` (no computation): the
    floats are the input's float columns, reused in turn; integer features are zeros."""
    table = pq.read_table(file)
    floats = [table.column(c) for c in INPUT_FLOATS]
    zeros = pa.array(np.zeros(table.num_rows, dtype=np.int64))
    columns, k = [], 0
    for field in schema:
        source = "chrom" if field.name == "chrom_name" else field.name
        if source in table.column_names and table.schema.field(source).type == field.type:
            columns.append(table.column(source))
        elif pa.types.is_floating(field.type):
            columns.append(floats[k % len(floats)])
            k += 1
        else:
            columns.append(zeros.cast(field.type))
    out_table = pa.Table.from_arrays(columns, schema=schema)
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    pq.write_table(out_table, out, compression="snappy", use_dictionary=strings)
    return os.path.getsize(out)


class Cluster:
    """A fresh LocalCluster of ``workers`` single-threaded worker processes: the engine's own
    (``make_local_cluster``, what ``dask-enrich run`` starts, with its worker malloc settings)."""

    def __init__(self, workers: int):
        from distributed import Client

        from dask_enrich.engine import make_local_cluster

        self.cluster = make_local_cluster(workers, 1, memory_limit="auto")
        self.client = Client(self.cluster)
        self.client.run(_warm_worker)

    def stats(self) -> dict[str, dict[str, float]]:
        return self.client.run(_worker_stats)

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def _task_times(stream: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds of task compute per task name (Dask's task stream), largest first."""
    from distributed.utils import key_split

    seconds: dict[str, float] = {}
    for task in stream:
        for part in task.get("startstops", ()):
            if part.get("action") == "compute":
                name = key_split(task["key"])
                seconds[name] = seconds.get(name, 0.0) + part["stop"] - part["start"]
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def measured(cluster: Cluster, fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` (which uses the cluster) and measure wall, CPU (client+scheduler process and
    every worker), each worker's peak RSS and the task stream's compute seconds per task name."""
    from distributed import get_task_stream

    before = cluster.stats()
    with get_task_stream(cluster.client) as stream, Clock() as c:
        result = fn()
    after = cluster.stats()
    worker_cpu = sum(after[w]["cpu"] - before[w]["cpu"] for w in after)
    tasks = _task_times(stream.data)
    return result, {"wall_s": c.wall, "cpu_s": c.cpu + worker_cpu, "client_cpu_s": c.cpu,
                    "workers_cpu_s": worker_cpu,
                    "peak_rss_per_worker": max(a["maxrss"] for a in after.values()),
                    "idle_rss_per_worker": max(b["maxrss"] for b in before.values()),
                    "task_compute_s": tasks,
                    "workers_busy": sum(tasks.values()) / (c.wall * len(after))}


def _commit() -> str:
    """HEAD of the repository (the work tree may hold other sessions' uncommitted edits)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "dask_enrich"], capture_output=True, text=True, timeout=10).stdout
        return head + (" + uncommitted edits under dask_enrich/" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def engine_available() -> str:
    try:
        from dask_enrich.engine.run import run_enrichment  # noqa: F401

        return "dask_enrich.engine.run.run_enrichment"
    except Exception as exc:  # pragma: no cover - reported in the results
        return f"unavailable ({type(exc).__name__}: {exc})"


def engine_run(src: Path, manifest: Manifest, workers: int, *, cache: Path | None = None,
               floor: bool = True, warmup: bool = False) -> dict[str, Any]:
    """One end-to-end run of ``run_enrichment`` on a fresh cluster, then the floor on it. With
    ``warmup``, an unmeasured run first (imports and first-call costs paid on the client and the
    workers, as on a long-lived cluster)."""
    from dask_enrich.engine.run import run_enrichment

    n = int((src / "_DONE").read_text())
    out = data.data_dir() / f"out-{manifest.name}-{n}-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cluster = Cluster(workers)
    try:
        if warmup:
            run_enrichment(str(src), manifest, str(out), client=cluster.client, mode="overwrite",
                           cache=str(cache) if cache else None)
        settle()
        summary, row = measured(cluster, lambda: run_enrichment(
            str(src), manifest, str(out), client=cluster.client, mode="overwrite",
            cache=str(cache) if cache else None))
        row.update({"positions": n, "workers": workers, "manifest": manifest.name,
                    "features": len(manifest), "output_bytes": dir_bytes(out),
                    "input_bytes": dir_bytes(src), "partitions": summary.partitions,
                    "engine_timings": dict(summary.timings)})
        row["positions_per_s"] = n / row["wall_s"]
        if summary.rows_written != n:
            raise RuntimeError(f"engine wrote {summary.rows_written} rows of {n}")
        shutil.rmtree(out, ignore_errors=True)
        if floor:
            files = [str(f) for f in parquet_files(src)]
            floor_dir = data.data_dir() / f"floor-{n}-w{workers}"
            shutil.rmtree(floor_dir, ignore_errors=True)
            floor_dir.mkdir()
            schema = output_schema(manifest, input_dtypes(src))
            futures_fn = lambda: cluster.client.gather(cluster.client.map(  # noqa: E731
                _floor_file, files, [str(floor_dir / Path(f).name) for f in files],
                [schema] * len(files), pure=False))
            settle()
            _, floor_row = measured(cluster, futures_fn)
            row.update({"floor_s": floor_row["wall_s"], "floor_cpu_s": floor_row["cpu_s"],
                        "floor_output_bytes": dir_bytes(floor_dir),
                        "over_floor": row["wall_s"] / floor_row["wall_s"],
                        "over_floor_cpu": row["cpu_s"] / floor_row["cpu_s"]})
            shutil.rmtree(floor_dir, ignore_errors=True)
    finally:
        cluster.close()
        shutil.rmtree(out, ignore_errors=True)
    return row


# --- b. Polars peer ------------------------------------------------------------------------------
def core_stream(src: Path, manifest: Manifest, out: Path) -> None:
    """dask_enrich's core without Dask: each input file read, enriched and written (by the engine's
    part writer) in turn."""
    from dask_enrich.engine import writer
    from dask_enrich.io import normalise_frame

    out.mkdir(parents=True, exist_ok=True)
    schema = output_schema(manifest, input_dtypes(src))
    for i, file in enumerate(parquet_files(src)):
        frame = normalise_frame(pq.read_table(file).to_pandas())
        result, report = enrich(frame, manifest)
        writer.write_part(result, str(out), i, schema, "benchmark", report.to_dict())


def check_polars(src: Path, polars_out: Path, manifest: Manifest, sample: int = 200_000
                 ) -> dict[str, Any]:
    """The Polars output equals the core's on the first ``sample`` rows (same row order)."""
    first = parquet_files(src)[0]
    frame = data.read_positions(first).iloc[:sample]
    core, _ = enrich(frame, manifest)
    batch = next(pq.ParquetFile(polars_out).iter_batches(batch_size=len(frame)))
    peer = pa.Table.from_batches([batch]).to_pandas()
    if len(peer) != len(frame):
        return {"equal": False, "reason": f"sample of {len(peer)} rows, expected {len(frame)}"}
    if list(peer.columns) != list(core.columns):
        return {"equal": False, "reason": f"columns differ: {list(peer.columns)[:6]}..."}
    worst = 0.0
    for name in manifest.names:
        a, b = peer[name].to_numpy(np.float64), core[name].to_numpy(np.float64)
        if not np.allclose(a, b, rtol=1e-12, atol=1e-15):
            return {"equal": False, "reason": f"{name} differs", "rows": len(frame)}
        worst = max(worst, float(np.max(np.abs(a - b))) if len(a) else 0.0)
    same_ids = (peer["gene_id"].to_numpy() == core["gene_id"].to_numpy()).all() and (
        peer["position"].to_numpy() == core["position"].to_numpy()).all()
    return {"equal": bool(same_ids), "rows": len(frame), "max_abs_diff": worst,
            "tolerance": "rtol 1e-12, atol 1e-15"}


def bench_polars(src: Path, m: dict[str, Manifest], engine_row: dict[str, Any] | None
                 ) -> dict[str, Any]:
    n = int((src / "_DONE").read_text())
    names = list(m["scores"].names)
    base = data.data_dir()
    polars_out = base / f"polars-{n}.parquet"
    stream_out = base / f"stream-{n}"
    shutil.rmtree(stream_out, ignore_errors=True)
    polars_peer.run_polars(src, polars_out, names)  # warm-up of the query (small cost)
    p_wall, p_cpu = best_of(lambda: polars_peer.run_polars(src, polars_out, names), 2, io=True)
    check = check_polars(src, polars_out, m["scores"])
    s_wall, s_cpu = best_of(lambda: core_stream(src, m["scores"], stream_out), 2, io=True)
    row = {"positions": n, "features": len(names), "polars_s": p_wall, "polars_cpu_s": p_cpu,
           "polars_output_bytes": polars_out.stat().st_size, "polars_check": check,
           "core_stream_1proc_s": s_wall, "core_stream_1proc_cpu_s": s_cpu,
           "core_stream_output_bytes": dir_bytes(stream_out),
           "polars_threads": int(__import__("polars").thread_pool_size())}
    if engine_row is not None:
        row.update({"engine_2w_s": engine_row["wall_s"], "engine_2w_cpu_s": engine_row["cpu_s"],
                    "engine_2w_cold_s": engine_row.get("cold_wall_s"),
                    "engine_2w_cold_cpu_s": engine_row.get("cold_cpu_s"),
                    "engine_over_polars": engine_row["wall_s"] / p_wall,
                    "engine_over_polars_cpu": engine_row["cpu_s"] / p_cpu})
    row["stream_over_polars"] = s_wall / p_wall
    row["stream_over_polars_cpu"] = s_cpu / p_cpu
    polars_out.unlink(missing_ok=True)
    shutil.rmtree(stream_out, ignore_errors=True)
    return row


def bench_polars_only(src: Path, m: dict[str, Manifest], engine_row: dict[str, Any]
                      ) -> dict[str, Any]:
    """Polars on a larger input against the engine's scaling run of the same input (no
    1-process core run here)."""
    n = int((src / "_DONE").read_text())
    names = list(m["scores"].names)
    polars_out = data.data_dir() / f"polars-{n}.parquet"
    p_wall, p_cpu = best_of(lambda: polars_peer.run_polars(src, polars_out, names), 2, io=True)
    polars_out.unlink(missing_ok=True)
    return {"positions": n, "features": len(names), "polars_s": p_wall, "polars_cpu_s": p_cpu,
            "engine_2w_s": engine_row["wall_s"], "engine_2w_cpu_s": engine_row["cpu_s"],
            "engine_over_polars": engine_row["wall_s"] / p_wall,
            "engine_over_polars_cpu": engine_row["cpu_s"] / p_cpu}


# --- d. where the time goes ----------------------------------------------------------------------
def breakdown(src: Path, m: dict[str, Manifest], kind: str, cache: Path | None) -> dict[str, Any]:
    """The engine's steps for input grouped by gene (each bin enriched where it is read), serially
    in this process, timed one by one (wall and CPU), with the engine's own functions: the plan
    (rows per gene of each input partition), read, partition (each partition's rows split into its
    bins, in plan order), row checks, score features, sequence/k-mer/genomic features, write. The
    staged exchange that input not grouped by gene would go through is timed on the same input
    too, outside the total."""
    from dask_enrich.engine import exchange, writer
    from dask_enrich.engine import quarantine as rejects
    from dask_enrich.engine.inputs import read_options
    from dask_enrich.engine.partition import DEFAULT_PARTITION_ROWS, plan_partitions
    from dask_enrich.engine.inputs import _count_genes
    from dask_enrich.engine.tasks import sorted_bin as _sorted_bin
    from dask_enrich.io import (POSITION_COLUMNS, _parquet_pieces, _PieceReader, _raw_position_dtype,
                                inspect_input, wanted_columns)

    n = int((src / "_DONE").read_text())
    genomic = None
    if kind == "full":
        from dask_enrich.genome.cache import load_cached

        genomic = load_cached(cache)
    stages = {s: [0.0, 0.0] for s in ("plan", "read", "partition", "row checks", "score features",
                                      "sequence features", "write")}

    def add(stage: str, c: Clock) -> None:
        stages[stage][0] += c.wall
        stages[stage][1] += c.cpu

    source = inspect_input(str(src), label="positions")
    # as the engine reads the positions (read_dask with rejects.read_options: lenient positions,
    # each row's file)
    reader = _PieceReader(source, wanted_columns(source, POSITION_COLUMNS, ()),
                          _raw_position_dtype(source), read_options(source)["file_column"])
    pieces = _parquet_pieces(source, 128 << 20)
    checks = rejects.bin_checks({"settings": {}}, m[kind], source, str(cache) if genomic else None)
    work = data.data_dir() / f"breakdown-{kind}-{n}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    schema = output_schema(m[kind], input_dtypes(src))
    settle()
    with Clock() as c:  # the plan: rows per gene of each partition (the gene_id column only)
        gene_reader = _PieceReader(source, ["gene_id"], np.int64)
        counts = pd.concat([_count_genes(gene_reader(piece), {"number": i})
                            for i, piece in enumerate(pieces)], ignore_index=True)
        if counts["gene_id"].duplicated().any():
            raise RuntimeError("benchmark input is not grouped by gene")
        by_gene = counts.set_index("gene_id")
        plan = plan_partitions(by_gene["rows"], DEFAULT_PARTITION_ROWS, gene_parts=by_gene["part"])
    add("plan", c)
    score_names = [x for x in m[kind].names if x in SCORE_FEATURES]
    other_names = [x for x in m[kind].names if x not in SCORE_FEATURES]
    for i, piece in enumerate(pieces):
        with Clock() as c:
            frame = reader(piece)
        add("read", c)
        with Clock() as c:
            bins = plan.bin_of(frame["gene_id"])
            bounds = np.searchsorted(bins, np.append(plan.bins_of_part(i), plan.bins_of_part(i)[-1] + 1))
        add("partition", c)
        for b, start, end in zip(plan.bins_of_part(i), bounds[:-1], bounds[1:]):
            with Clock() as c:
                rows, _, _ = rejects.check_bin(frame.iloc[start:end].reset_index(drop=True), checks,
                                               bin_id=int(b), config=EnrichConfig(), genomic=genomic,
                                               out=str(work), fingerprint="benchmark",
                                               storage_options=None)
            add("row checks", c)
            with Clock() as c:
                part = _sorted_bin(rows, plan)
            add("partition", c)
            with Clock() as c:
                scored, report = enrich(part, manifest_from_names(score_names))
            add("score features", c)
            if other_names:
                with Clock() as c:
                    extra, _ = enrich(part, manifest_from_names(other_names), genomic=genomic)
                add("sequence features", c)
                if "chrom_name" in schema.names and "chrom" in scored.columns:
                    scored = scored.rename(columns={"chrom": "chrom_name"})
                scored = pd.concat([scored, extra[other_names]], axis=1)[list(schema.names)]
            with Clock() as c:
                writer.write_part(scored, str(work / "out"), int(b), schema, "benchmark",
                                  report.to_dict())
            add("write", c)
            del part, scored
        del frame
    out_bytes = dir_bytes(work / "out")
    shutil.rmtree(work / "out", ignore_errors=True)
    # what input not grouped by gene pays on top: the staged exchange (each partition split by bin
    # into an Arrow file, then each bin gathered and put in plan order), on partitions read before
    settle()
    exchange_s = [0.0, 0.0]  # wall, CPU
    splits = []
    for i, piece in enumerate(pieces):
        frame = reader(piece)
        with Clock() as c:
            splits.append(exchange.split_part(frame, i, "positions", plan, frozenset(),
                                              str(work / "staging")))
        exchange_s = [exchange_s[0] + c.wall, exchange_s[1] + c.cpu]
    meta = frame.iloc[:0]
    del frame
    with Clock() as c:
        for b in range(plan.n_bins):
            _sorted_bin(exchange.gather_bin(b, splits, meta, "positions"), plan)
    exchange_s = [exchange_s[0] + c.wall, exchange_s[1] + c.cpu]
    shutil.rmtree(work, ignore_errors=True)
    total_wall = sum(v[0] for v in stages.values())
    total_cpu = sum(v[1] for v in stages.values())
    return {"positions": n, "manifest": kind, "features": len(m[kind]), "bins": plan.n_bins,
            "output_bytes": out_bytes, "total_s": total_wall, "total_cpu_s": total_cpu,
            "stages": {k: {"s": v[0], "cpu_s": v[1], "share_cpu": v[1] / total_cpu}
                       for k, v in stages.items()},
            "staged_exchange_if_ungrouped": {"s": exchange_s[0], "cpu_s": exchange_s[1]}}


# --- plots ---------------------------------------------------------------------------------------
def plots(results: dict[str, Any], suffix: str) -> list[str]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    runs = [r for r in results["scaling"] if r.get("manifest") == "scores" and "wall_s" in r]
    if runs:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for w, style, color in ((1, "o-", "C0"), (2, "s-", "C1")):
            rs = sorted((r for r in runs if r["workers"] == w), key=lambda r: r["positions"])
            if not rs:
                continue
            x = [r["positions"] for r in rs]
            ax1.plot(x, [r["wall_s"] for r in rs], style, color=color,
                     label=f"dask_enrich, {w} worker(s)")
            if all("floor_s" in r for r in rs):
                ax1.plot(x, [r["floor_s"] for r in rs], style.replace("-", ":"), alpha=0.6, color=color,
                         label=f"read+write floor, {w} worker(s)")
            ax2.plot(x, [r["peak_rss_per_worker"] / 2**20 for r in rs], style, color=color,
                     label=f"{w} worker(s): peak RSS")
            ax2.plot(x, [r["idle_rss_per_worker"] / 2**20 for r in rs], style.replace("-", ":"), color=color,
                     alpha=0.5, label=f"{w} worker(s): idle RSS")
        for ax, title, ylabel in ((ax1, "time vs positions", "wall seconds"),
                                  (ax2, "peak memory per worker", "MiB")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("positions")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        ax2.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax2.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        fig.suptitle(f"dask_enrich end to end, {runs[0]['features']} score-derived features")
        fig.tight_layout()
        path = RESULTS / f"scaling{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    rows = [x for x in results["seed_vs_core"] if x["density"] == data.DENSITY]
    if rows:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        x = [r["positions"] for r in rows]
        ax.plot(x, [r["positions"] / r["seed_s"] for r in rows], "o-", label="seed per-gene loop")
        ax.plot(x, [r["positions"] / r["core_imputed_s"] for r in rows], "s-",
                label="core (sequence imputed)")
        if "core_genome_s" in rows[0]:
            ax.plot(x, [r["positions"] / r["core_genome_s"] for r in rows], "^-",
                    label="core (real genome)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("positions")
        ax.set_ylabel("positions per second")
        ax.set_title("124-feature manifest: seed vs core (one process)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = RESULTS / f"seed_vs_core{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    if results["breakdown"]:
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.8 * len(results["breakdown"])))
        labels = []
        for i, b in enumerate(results["breakdown"]):
            left = 0.0
            for j, (stage, v) in enumerate(b["stages"].items()):
                ax.barh(i, v["cpu_s"], left=left, color=f"C{j}", label=stage if i == 0 else None)
                left += v["cpu_s"]
            labels.append(f"{b['manifest']} ({b['features']}), {fmt_n(b['positions'])}")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("CPU seconds (serial, one process)")
        ax.set_title("where the time goes")
        ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.35))
        fig.tight_layout()
        path = RESULTS / f"breakdown{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


# --- report --------------------------------------------------------------------------------------
def print_tables(r: dict[str, Any]) -> None:
    print("\n== a. seed per-gene loop vs dask_enrich core (124 features, in memory, one process)")
    print(f"{'positions':>10s} {'density':>7s} {'genes':>6s} {'seed s':>9s} {'core s':>8s} {'ratio':>7s} "
          f"{'ratio CPU':>9s} {'core+genome s':>14s} {'ratio':>7s}")
    for x in r["seed_vs_core"]:
        g = (f"{x['core_genome_s']:14.4f} {x['speedup_genome']:7.0f}" if "core_genome_s" in x
             else f"{'-':>14s} {'-':>7s}")
        print(f"{x['positions']:>10,d} {x['density']:7.2f} {x['genes']:>6d} {x['seed_s']:9.3f} {x['core_imputed_s']:8.4f} "
              f"{x['speedup']:7.0f} {x['speedup_cpu']:9.0f} {g}")
    for x in r["seed_vs_core"]:
        if "seed_verbatim_s" in x:
            print(f"seed as written (pd.Series per manifest name) at {x['positions']:,}: "
                  f"{x['seed_verbatim_s']:.2f} s -> {x['speedup_verbatim']:.0f}x wall, "
                  f"{x['speedup_verbatim_cpu']:.0f}x CPU")
    for x in r["seed_vs_core"]:
        w = x.get("worker_malloc")
        if w:
            print(f"with the engine workers' malloc settings, {x['positions']:>7,d}: seed "
                  f"{w['seed_s']:.3f} s, core {w['core_imputed_s']:.4f} s -> {w['speedup']:.0f}x "
                  f"wall, {w['speedup_cpu']:.0f}x CPU")
    p = r.get("polars")
    if p:
        print(f"\n== b. Polars peer vs dask_enrich ({p['features']} score-derived features, "
              f"{p['positions']:,} positions, Parquet -> Parquet)")
        print(f"{'':28s} {'wall s':>8s} {'CPU s':>8s} {'vs Polars (wall)':>17s}")
        print(f"{'Polars lazy + sink_parquet':28s} {p['polars_s']:8.2f} {p['polars_cpu_s']:8.2f} "
              f"{1:17.2f}")
        if "engine_2w_s" in p:
            print(f"{'engine, 2 workers, warm':28s} {p['engine_2w_s']:8.2f} "
                  f"{p['engine_2w_cpu_s']:8.2f} {p['engine_over_polars']:17.2f}")
        print(f"{'dask_enrich core, 1 process':28s} {p['core_stream_1proc_s']:8.2f} "
              f"{p['core_stream_1proc_cpu_s']:8.2f} {p['stream_over_polars']:17.2f}")
        print(f"values equal to the core's on a sample: {p['polars_check']}")
    print("\n== c. scaling, end to end (run_enrichment on a fresh LocalCluster per run)")
    print(f"{'positions':>11s} {'manifest':>8s} {'w':>2s} {'wall s':>8s} {'CPU s':>8s} "
          f"{'pos/s':>10s} {'peak MiB/w':>10s} {'floor s':>8s} {'e2e/floor':>9s} {'CPU ratio':>9s}")
    for x in r["scaling"]:
        if "wall_s" not in x:
            print(f"{x['positions']:>11,d} {x['manifest']:>8s} {x['workers']:>2d}  skipped: {x['skipped']}")
            continue
        floor = (f"{x['floor_s']:8.2f} {x['over_floor']:9.2f} {x['over_floor_cpu']:9.2f}"
                 if "floor_s" in x else f"{'-':>8s} {'-':>9s} {'-':>9s}")
        print(f"{x['positions']:>11,d} {x['manifest']:>8s} {x['workers']:>2d} {x['wall_s']:8.2f} "
              f"{x['cpu_s']:8.2f} {x['positions_per_s']:10,.0f} "
              f"{x['peak_rss_per_worker'] / 2**20:10.0f} {floor}")
    for b in r["breakdown"]:
        print(f"\n== d. where the time goes: {b['manifest']} manifest ({b['features']} features), "
              f"{b['positions']:,} positions, {b['bins']} bins, engine steps run serially")
        for stage, v in b["stages"].items():
            print(f"{stage:>20s} {v['s']:8.2f} s wall {v['cpu_s']:8.2f} s CPU "
                  f"{100 * v['share_cpu']:5.1f}%")
        print(f"{'total':>20s} {b['total_s']:8.2f} s wall {b['total_cpu_s']:8.2f} s CPU")
        x = b.get("staged_exchange_if_ungrouped")
        if x:
            print(f"{'(+ exchange if the input were not grouped by gene)':>20s} {x['s']:8.2f} s wall "
                  f"{x['cpu_s']:8.2f} s CPU")
        e = b.get("engine_2w")
        if e:
            print(f"{'(engine, 2 workers)':>20s} {e['wall_s']:8.2f} s wall {e['cpu_s']:8.2f} s CPU")
            if e.get("floor_s") is not None:
                print(f"{'(read+write floor)':>20s} {e['floor_s']:8.2f} s wall "
                      f"{e['floor_cpu_s']:8.2f} s CPU")
    print("\n== targets")
    for t in r["targets"]:
        print(f"  [{t['status']:>4s}] {t['target']}: {t['measured']}")


def markdown(r: dict[str, Any]) -> str:
    """The results as Markdown tables (written beside the JSON; the README quotes them)."""
    lines = [f"Command: `{r['command']}`, {r['started']}, {r['machine']['cpus']} CPUs, load average "
             f"at start {r['machine']['loadavg_at_start'][0]:.1f}. {r['note']}.", "",
             "| target | status | measured |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['status']} | {t['measured']} |" for t in r["targets"]]
    if r["seed_vs_core"]:
        lines += ["", "**a. Seed per-gene loop vs dask_enrich core** (124-feature manifest, in memory, "
                  "one process; ratio = seed time / core time)", "",
                  "| positions | genes | seed s (CPU s) | core s (CPU s) | ratio wall | ratio CPU "
                  "| core + real genome s | ratio wall |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in r["seed_vs_core"]:
            dens = "" if x["density"] == data.DENSITY else f" (density {x['density']:g})"
            g = (f"{x['core_genome_s']:.3f} | {x['speedup_genome']:.0f}x" if "core_genome_s" in x
                 else "- | -")
            lines.append(f"| {x['positions']:,}{dens} | {x['genes']} | {x['seed_s']:.2f} "
                         f"({x['seed_cpu_s']:.2f}) | {x['core_imputed_s']:.4f} "
                         f"({x['core_imputed_cpu_s']:.4f}) | {x['speedup']:.0f}x | "
                         f"{x['speedup_cpu']:.0f}x | {g} |")
        worker = [x for x in r["seed_vs_core"] if x.get("worker_malloc")]
        if worker:
            lines += ["", "The same, both run again with the malloc settings of the engine's worker "
                      "processes (where the core runs in a dask_enrich job; `WORKER_MALLOC_ENV`):", "",
                      "| positions | seed s (CPU s) | core s (CPU s) | ratio wall | ratio CPU |",
                      "|---:|---:|---:|---:|---:|"]
            for x in worker:
                w = x["worker_malloc"]
                lines.append(f"| {x['positions']:,} | {w['seed_s']:.2f} ({w['seed_cpu_s']:.2f}) | "
                             f"{w['core_imputed_s']:.4f} ({w['core_imputed_cpu_s']:.4f}) | "
                             f"{w['speedup']:.0f}x | {w['speedup_cpu']:.0f}x |")
        for x in r["seed_vs_core"]:
            if "seed_verbatim_s" in x:
                lines += ["", f"The seed with its harmonisation exactly as written (a `pd.Series` "
                          f"per manifest name, per gene) at {x['positions']:,} positions: "
                          f"{x['seed_verbatim_s']:.2f} s ({x['seed_verbatim_cpu_s']:.2f} s CPU), "
                          f"{x['speedup_verbatim']:.0f}x wall / {x['speedup_verbatim_cpu']:.0f}x CPU."]
    p = r.get("polars")
    if p:
        lines += ["", f"**b. Polars peer vs dask_enrich** ({p['features']} score-derived features, "
                  f"{p['positions']:,} positions, Parquet to Parquet)", "",
                  "| | wall s | CPU s | time / Polars (wall, CPU) |", "|---|---:|---:|---:|",
                  f"| Polars lazy + sink_parquet ({p['polars_threads']} threads) | {p['polars_s']:.2f} | "
                  f"{p['polars_cpu_s']:.2f} | 1, 1 |"]
        if "engine_2w_s" in p:
            lines.append(f"| dask_enrich engine, 2 workers, after a warm-up run | {p['engine_2w_s']:.2f} | "
                         f"{p['engine_2w_cpu_s']:.2f} | {p['engine_over_polars']:.2f}, "
                         f"{p['engine_over_polars_cpu']:.2f} |")
            if p.get("engine_2w_cold_s"):
                lines.append(f"| dask_enrich engine, 2 workers, first run on a fresh cluster | "
                             f"{p['engine_2w_cold_s']:.2f} | {p['engine_2w_cold_cpu_s']:.2f} | "
                             f"{p['engine_2w_cold_s'] / p['polars_s']:.2f}, "
                             f"{p['engine_2w_cold_cpu_s'] / p['polars_cpu_s']:.2f} |")
        lines.append(f"| dask_enrich core, file by file, 1 process | {p['core_stream_1proc_s']:.2f} | "
                     f"{p['core_stream_1proc_cpu_s']:.2f} | {p['stream_over_polars']:.2f}, "
                     f"{p['stream_over_polars_cpu']:.2f} |")
        big = r.get("polars_largest")
        if big:
            lines += [f"| Polars, {big['positions']:,} positions | {big['polars_s']:.2f} | "
                      f"{big['polars_cpu_s']:.2f} | 1, 1 |",
                      f"| dask_enrich engine, 2 workers, {big['positions']:,} positions (scaling run) | "
                      f"{big['engine_2w_s']:.2f} | {big['engine_2w_cpu_s']:.2f} | "
                      f"{big['engine_over_polars']:.2f}, {big['engine_over_polars_cpu']:.2f} |"]
        c = p["polars_check"]
        lines += ["", f"Polars values vs the core's on the first {c.get('rows', 0):,} rows: "
                  f"{'equal' if c.get('equal') else 'DIFFERENT'} ({c.get('tolerance', c.get('reason'))}"
                  f"{', max abs diff %.1e' % c['max_abs_diff'] if 'max_abs_diff' in c else ''})."]
    lines += ["", "**c. Scaling, end to end** (`run_enrichment`, fresh LocalCluster per run, "
              "single-threaded workers)", "",
              "| positions | manifest | workers | wall s | CPU s | positions/s | peak RSS/worker MiB "
              "| floor s | e2e/floor wall | e2e/floor CPU |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in sorted(r["scaling"], key=lambda x: (x["manifest"] != "scores", x["workers"],
                                                 x["positions"])):
        if "wall_s" not in x:
            lines.append(f"| {x['positions']:,} | {x['manifest']} | {x['workers']} | skipped "
                         f"({x['skipped']}) | | | | | | |")
            continue
        lines.append(f"| {x['positions']:,} | {x['manifest']} ({x['features']}) | {x['workers']} | "
                     f"{x['wall_s']:.2f} | {x['cpu_s']:.2f} | {x['positions_per_s']:,.0f} | "
                     f"{x['peak_rss_per_worker'] / 2**20:.0f} | {x.get('floor_s', float('nan')):.2f} | "
                     f"{x.get('over_floor', float('nan')):.2f} | {x.get('over_floor_cpu', float('nan')):.2f} |")
    for b in r["breakdown"]:
        lines += ["", f"**d. Where the time goes**: {b['manifest']} manifest ({b['features']} "
                  f"features), {b['positions']:,} positions, {b['bins']} bins; the engine's steps "
                  "run serially in one process", "", "| stage | wall s | CPU s | share of CPU |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['s']:.2f} | {v['cpu_s']:.2f} | {100 * v['share_cpu']:.0f}% |"
                  for k, v in b["stages"].items()]
        lines.append(f"| total (serial) | {b['total_s']:.2f} | {b['total_cpu_s']:.2f} | |")
        x = b.get("staged_exchange_if_ungrouped")
        if x:
            lines.append(f"| (not in the total) staged exchange, paid by input not grouped by gene | "
                         f"{x['s']:.2f} | {x['cpu_s']:.2f} | |")
        e = b.get("engine_2w")
        if e:
            lines.append(f"| engine end to end, 2 workers | {e['wall_s']:.2f} | {e['cpu_s']:.2f} | |")
            if e.get("floor_s") is not None:
                lines.append(f"| read+write floor, 2 workers | {e['floor_s']:.2f} | "
                             f"{e['floor_cpu_s']:.2f} | |")
    return "\n".join(lines) + "\n"


def targets(r: dict[str, Any]) -> list[dict[str, str]]:
    """Each issue target, met only when both the wall-time and the CPU-time figures meet it."""
    out = []
    at200 = [x for x in r["seed_vs_core"] if x["positions"] == 200_000
             and x["density"] == data.DENSITY]
    if at200:
        x = at200[0]
        w = x.get("worker_malloc")
        best = min(w["speedup"], w["speedup_cpu"]) if w else min(x["speedup"], x["speedup_cpu"])
        out.append({"target": ">= 200x the seed at 200,000 positions",
                    "status": ("met" if min(x["speedup"], x["speedup_cpu"]) >= 200 else
                               "met with the workers' malloc settings" if best >= 200 else "MISS"),
                    "measured": (f"{w['speedup']:.0f}x wall, {w['speedup_cpu']:.0f}x CPU with the "
                                 "engine workers' malloc settings; " if w else "")
                    + f"{x['speedup']:.0f}x wall, {x['speedup_cpu']:.0f}x CPU in a default process (like for "
                    "like)" + (f"; {x['speedup_genome']:.0f}x wall with real sequence features"
                               if "speedup_genome" in x else "")
                    + (f"; {x['speedup_verbatim']:.0f}x wall, {x['speedup_verbatim_cpu']:.0f}x CPU "
                       "against the seed's harmonisation as written" if "speedup_verbatim" in x
                       else "")})
    p = r.get("polars")
    if p and "engine_over_polars" in p:
        out.append({"target": "faster than the Polars peer (score features)",
                    "status": "met" if max(p["engine_over_polars"], p["engine_over_polars_cpu"]) < 1
                    else "MISS",
                    "measured": f"engine/Polars time {p['engine_over_polars']:.2f} wall, "
                    f"{p['engine_over_polars_cpu']:.2f} CPU at {fmt_n(p['positions'])}; 1-process "
                    f"core/Polars {p['stream_over_polars']:.2f} wall, "
                    f"{p['stream_over_polars_cpu']:.2f} CPU"
                    + (f"; engine/Polars at {fmt_n(r['polars_largest']['positions'])} "
                       f"{r['polars_largest']['engine_over_polars']:.2f} wall, "
                       f"{r['polars_largest']['engine_over_polars_cpu']:.2f} CPU"
                       if r.get("polars_largest") else "")})
    done = [x for x in r["scaling"] if "over_floor" in x and x["manifest"] == "scores"]
    if done:
        big = max(done, key=lambda x: (x["positions"], x["workers"]))
        out.append({"target": "end to end within 2x of the read+write floor (score manifest)",
                    "status": "met" if max(big["over_floor"], big["over_floor_cpu"]) <= 2 else "MISS",
                    "measured": f"{big['over_floor']:.2f}x wall, {big['over_floor_cpu']:.2f}x CPU at "
                    f"{big['positions']:,} positions, {big['workers']} workers"})
    for w in (1, 2):
        rs = {x["positions"]: x for x in r["scaling"] if "wall_s" in x and x["workers"] == w
              and x["manifest"] == "scores"}
        big = max(rs) if rs else 0
        if 2_000_000 in rs and big > 2_000_000:
            growth = rs[big]["peak_rss_per_worker"] / rs[2_000_000]["peak_rss_per_worker"] - 1
            out.append({"target": f"peak memory per worker flat (within 20%) 2M -> 20M, {w} worker(s)",
                        "status": "met" if abs(growth) <= 0.2 and big >= 20_000_000 else
                        ("MISS" if abs(growth) > 0.2 else "part"),
                        "measured": f"{100 * growth:+.0f}% from 2M to {fmt_n(big)} "
                        f"({rs[2_000_000]['peak_rss_per_worker'] / 2**20:.0f} -> "
                        f"{rs[big]['peak_rss_per_worker'] / 2**20:.0f} MiB)"})
    return out


# --- main ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 2M (about 3 minutes)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds; runs predicted to overrun it are skipped (default 900, "
                        "quick 200)")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: seed,polars,"
                        "scaling,breakdown, and full (the full-manifest end-to-end run)")
    parser.add_argument("--sizes", default="", help="comma list of scaling sizes (default: the "
                        "mode's); e.g. 2000000,20000000 to repeat the targets' runs")
    parser.add_argument("--suffix", default=None, help="name suffix of the result files (default "
                        "'-quick' with --quick, else none)")
    args = parser.parse_args()
    budget = args.budget or (200.0 if args.quick else 900.0)
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.perf_counter()
    sizes = SCALING_QUICK if args.quick else SCALING_FULL
    if args.sizes:
        sizes = tuple(sorted(int(x) for x in args.sizes.split(",")))
    m = manifests()
    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()
    results: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/bench_suite.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": load, "platform": platform.platform()},
        "note": "the machine's cores were shared with other work during the run: wall times are "
                "noisy, CPU seconds less so; ratios are given for both",
        "commit": _commit(), "engine": engine_available(), "seed_vs_core": [], "polars": None, "scaling": [],
        "breakdown": [], "skipped": []}
    log(f"bench_suite: {'quick' if args.quick else 'full'}, budget {budget:.0f} s, "
        f"load average {load[0]:.1f} on {os.cpu_count()} CPUs, engine: {results['engine']}")
    cache = genomic_cache_path()
    results["genomic_cache"] = str(cache) if cache else None

    if "seed" not in skip:
        log("a. seed vs core")
        results["seed_vs_core"] = bench_seed(m, cache, quick=args.quick)

    def elapsed() -> float:
        return time.perf_counter() - t_start

    rate: dict[int, float] = {}  # marginal positions per wall second (runs >= 1M), per workers

    def predict(n: int, workers: int, manifest: str) -> float:
        r = rate.get(workers) or rate.get(3 - workers) or 120_000.0
        guess = 8 + n / r * (2.4 if manifest == "scores" else 6.0)  # run + floor + cluster start
        if not (data.data_dir() / f"positions-chromosome-{n}-d{data.DENSITY:g}-s0" / "_DONE").exists():
            guess += n / 300_000.0  # generating the input
        return guess

    def breakdown_guess(kind: str, n: int) -> float:
        return n / 150_000.0 * (3 if kind == "full" else 1)

    def reserve(candidate: int = 0) -> float:
        """Time kept for section d (the breakdown of the largest run so far, and of the full
        manifest at up to 2M)."""
        if "breakdown" in skip:
            return 0.0
        ran = [x["positions"] for x in results["scaling"] if "wall_s" in x
               and x["manifest"] == "scores"] + [candidate]
        full = breakdown_guess("full", min(max(ran), 2_000_000)) if cache is not None else 0.0
        return breakdown_guess("scores", max(ran)) + full

    def run(n: int, workers: int, manifest: str = "scores") -> dict[str, Any] | None:
        guess = predict(n, workers, manifest)
        if elapsed() + guess > budget - reserve(n if manifest == "scores" else 0):
            row = {"positions": n, "workers": workers, "manifest": manifest,
                   "skipped": f"budget: predicted {guess:.0f} s, {budget - elapsed():.0f} s left of "
                   f"which {reserve(n if manifest == 'scores' else 0):.0f} s kept for section d"}
            results["scaling"].append(row)
            results["skipped"].append(row)
            log(f"  skip {fmt_n(n)} x{workers} {manifest}: {row['skipped']}")
            return None
        src = data.write_positions(n)
        load_before = os.getloadavg()[0]
        row = engine_run(src, m[manifest], workers,
                         cache=cache if manifest == "full" else None)
        row["loadavg_before"] = load_before
        if manifest == "scores" and n >= 1_000_000:
            rate[workers] = n / max(row["wall_s"] - 4.0, 1.0)
        results["scaling"].append(row)
        log(f"  {fmt_n(n):>5s} x{workers} {manifest}: {row['wall_s']:7.2f} s "
            f"({row['positions_per_s']:,.0f}/s), peak {row['peak_rss_per_worker'] / 2**20:.0f} MiB/worker, "
            f"floor {row.get('floor_s', float('nan')):.2f} s -> {row.get('over_floor', float('nan')):.2f}x")
        return row

    polars_n = 2_000_000
    if "polars" not in skip:
        log("b. Polars peer vs dask_enrich")
        engine_row = None
        if "scaling" not in skip:
            engine_row = run(polars_n, 2)
            if engine_row is not None:  # warm, as Polars is (it gets a warm-up run too)
                again = engine_run(data.write_positions(polars_n), m["scores"], 2, floor=False,
                                   warmup=True)
                engine_row = {**engine_row, "cold_wall_s": engine_row["wall_s"],
                              "cold_cpu_s": engine_row["cpu_s"], "wall_s": again["wall_s"],
                              "cpu_s": again["cpu_s"]}
        results["polars"] = bench_polars(data.write_positions(polars_n), m, engine_row)
        p = results["polars"]
        log(f"  Polars {p['polars_s']:.2f} s, core 1 process {p['core_stream_1proc_s']:.2f} s"
            + (f", engine {p['engine_2w_s']:.2f} s" if "engine_2w_s" in p else ""))
    if "scaling" not in skip:
        log("c. scaling")
        done = {(x["positions"], x["workers"]) for x in results["scaling"] if "wall_s" in x}
        # priority order: 2 workers up to 2M and at the largest size (the targets), 1 worker at 2M;
        # then the sizes between on 2 workers, the full manifest with the genome, 1 worker at the
        # largest size and elsewhere
        largest, two_m = sizes[-1], min(2_000_000, sizes[-1])
        order = [(n, 2, "scores") for n in sizes if n <= two_m or n == largest]
        order += [(two_m, 1, "scores")]
        order += [(n, 2, "scores") for n in sizes]
        if cache is not None and "full" not in skip:
            order.append((min(FULL_MANIFEST_E2E, largest), 2, "full"))
        order += [(largest, 1, "scores")] + [(n, 1, "scores") for n in sizes]
        for n, w, kind in order:
            if kind == "scores" and (n, w) in done:
                continue
            run(n, w, kind)
            if kind == "scores":
                done.add((n, w))
    if "polars" not in skip and results["polars"] is not None:
        # the same comparison at the largest size the engine ran (its 2-worker scaling run)
        big = [x for x in results["scaling"] if "wall_s" in x and x["manifest"] == "scores"
               and x["workers"] == 2 and x["positions"] > polars_n]
        if big and elapsed() + 3 * big[-1]["wall_s"] < budget * 1.1:
            row = max(big, key=lambda x: x["positions"])
            results["polars_largest"] = bench_polars_only(data.write_positions(row["positions"]),
                                                          m, row)
            pl_row = results["polars_largest"]
            log(f"  Polars at {fmt_n(row['positions'])}: {pl_row['polars_s']:.2f} s, engine "
                f"{row['wall_s']:.2f} s -> {pl_row['engine_over_polars']:.2f}x wall, "
                f"{pl_row['engine_over_polars_cpu']:.2f}x CPU")
    if "breakdown" not in skip:
        log("d. where the time goes")
        ran = [x["positions"] for x in results["scaling"] if "wall_s" in x and x["manifest"] == "scores"]
        largest = max(ran) if ran else 2_000_000
        plans = [("scores", largest)]
        if cache is not None:
            plans.append(("full", min(largest, 2_000_000)))
        for kind, n in plans:
            guess = breakdown_guess(kind, n)
            if elapsed() + guess > budget * 1.15:
                results["skipped"].append({"breakdown": kind, "positions": n, "skipped": "budget"})
                log(f"  skip breakdown {kind} {fmt_n(n)}: budget")
                continue
            b = breakdown(data.write_positions(n), m, kind, cache)
            same = [x for x in results["scaling"] if "wall_s" in x and x["positions"] == n
                    and x["manifest"] == kind and x["workers"] == 2]
            if same:  # the end-to-end run of the same input, for comparison
                b["engine_2w"] = {k: same[0].get(k) for k in ("wall_s", "cpu_s", "floor_s",
                                                              "floor_cpu_s")}
            results["breakdown"].append(b)
            log(f"  {kind} {fmt_n(n)}: {b['total_cpu_s']:.1f} s CPU serial")
    results["targets"] = targets(results)
    results["seconds"] = elapsed()
    suffix = args.suffix if args.suffix is not None else ("-quick" if args.quick else "")
    results["plots"] = plots(results, suffix)
    (RESULTS / f"suite{suffix}.json").write_text(json.dumps(results, indent=1, default=str))
    (RESULTS / f"suite{suffix}.md").write_text(markdown(results))
    print_tables(results)
    print(f"\nwrote {RESULTS / f'suite{suffix}.json'} and {', '.join(results['plots'])} "
          f"in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()

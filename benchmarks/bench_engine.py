"""Benchmark of the Dask engine end to end: input Parquet -> output Parquet, on a LocalCluster.

Input: generated positions inside the real genes of the whole A. thaliana chromosome 1
(``benchmarks/data.py``: the real gene-size distribution, whole genes per file, synthetic scores and
context scores), the 124-feature 3-mer manifest (``/work/shared/data/model-3mer-124``, or the
bundled demo model) with the genomic cache of the whole chromosome (real gene table, real 3-mer
counts over the real sequence). Every size runs on a fresh LocalCluster of ``--workers`` processes x
1 thread; the cluster start is timed apart.

Reported per size: positions/s end to end (``run_enrichment``: the plan pass, the enrichment
where each input file is read (the input is grouped by gene, so no exchange), the Parquet writes
and ``_SUCCESS.json``), the phase timings, and each worker
process's peak RSS, sampled every 0.1 s from this process with psutil during the run (plus its RSS
before the run, to show the growth). Targets (issue 4): >= 500,000 positions/s on 2 cores; per-worker
peak memory flat with input size.

    python benchmarks/bench_engine.py [--sizes 2000000 20000000] [--workers 2] [--partition-rows N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import chromosome_fasta, chromosome_gtf, data_dir, write_positions  # noqa: E402
from dask_enrich.engine import DEFAULT_PARTITION_ROWS, make_local_cluster, run_enrichment  # noqa: E402
from dask_enrich.genome.cache import build_cache  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_MANIFEST = Path("/work/shared/data/model-3mer-124")
BUNDLED_MANIFEST = Path(__file__).resolve().parents[1] / "dask_enrich" / "data" / "demo_model"
TARGET_POSITIONS_PER_S = 500_000


class RssSampler:
    """Peak resident memory of each worker process, sampled from the client machine."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1):
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = {name: 0 for name in pids}
        #: peak of RSS minus its file-backed part (memory maps of the genome cache, staged files)
        self.peak_anon = {name: 0 for name in pids}
        #: the largest worker RSS of each sample, in time order (growth over the run shows here)
        self.timeline: list[int] = []
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            largest = 0
            for name, process in self.processes.items():
                try:
                    info = process.memory_info()
                    self.peak[name] = max(self.peak[name], info.rss)
                    self.peak_anon[name] = max(self.peak_anon[name], info.rss - info.shared)
                    largest = max(largest, info.rss)
                except psutil.Error:
                    pass
            self.timeline.append(largest)
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def core_baseline(manifest: Path, cache: Path, n: int = 1_000_000) -> dict:
    """CPU time of the pure core alone on one in-memory frame (no Dask, no I/O): the floor the
    engine's per-position CPU cost is compared with."""
    from dask_enrich.core import enrich
    from dask_enrich.genome.cache import load_cached
    from dask_enrich.io import normalise_frame
    from dask_enrich.manifest import load_manifest

    frame = normalise_frame(pd.read_parquet(sorted(Path(write_positions(2_000_000)).glob("*.parquet"))[0]))
    frame = frame.iloc[:n].reset_index(drop=True)
    genomic, names = load_cached(cache), load_manifest(manifest)
    enrich(frame.iloc[:1000], names, genomic=genomic)  # warm up
    t0 = time.process_time()
    enrich(frame, names, genomic=genomic)
    cpu = time.process_time() - t0
    return {"positions": len(frame), "cpu_seconds": round(cpu, 2),
            "cpu_us_per_position": round(cpu / len(frame) * 1e6, 3)}


def run_size(n: int, manifest: Path, cache: Path, workers: int, partition_rows: int,
             work: Path) -> dict:
    from distributed import Client

    t0 = time.perf_counter()
    positions = write_positions(n)
    generate_s = time.perf_counter() - t0
    out = work / f"out-{n}"
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    cluster = make_local_cluster(workers, 1, memory_limit="6GB")
    client = Client(cluster)
    cluster_s = time.perf_counter() - t0
    try:
        pids = client.run(os.getpid)
        rss_before = {w: psutil.Process(p).memory_info().rss for w, p in pids.items()}
        processes = [psutil.Process(p) for p in pids.values()] + [psutil.Process()]
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in processes)
        with RssSampler(pids) as sampler:
            t0 = time.perf_counter()
            summary = run_enrichment(str(positions), manifest, str(out), cache=str(cache),
                                     partition_rows=partition_rows, client=client)
            seconds = time.perf_counter() - t0
        cpu_seconds = sum(sum(p.cpu_times()[:2]) for p in processes) - cpu_before
    finally:
        client.close()
        cluster.close()
    output_bytes = sum(f.stat().st_size for f in out.glob("part-*.parquet"))
    input_bytes = sum(f.stat().st_size for f in Path(positions).glob("*.parquet"))
    result = {
        "positions": n,
        "rows_written": summary.rows_written,
        "partitions": summary.partitions,
        "seconds": round(seconds, 2),
        "positions_per_s": round(n / seconds),
        "meets_target": n / seconds >= TARGET_POSITIONS_PER_S,
        # CPU seconds of the workers and the client during the run: robust to other load on the
        # machine; n / cpu_seconds * workers is what the run would reach with the cores to itself
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_us_per_position": round(cpu_seconds / n * 1e6, 3),
        "projected_positions_per_s_idle_cores": round(n / cpu_seconds * workers),
        "engine_cpu_over_core_cpu": None,
        "load_average_1min_at_end": os.getloadavg()[0],
        "timings_s": summary.timings,
        "cluster_start_s": round(cluster_s, 2),
        "input_generation_s": round(generate_s, 2),
        "input_files": len(list(Path(positions).glob("*.parquet"))),
        "input_mb": round(input_bytes / 1e6, 1),
        "output_mb": round(output_bytes / 1e6, 1),
        "worker_rss_before_mb": {w: round(v / 2**20) for w, v in rss_before.items()},
        "worker_peak_rss_mb": {w: round(v / 2**20) for w, v in sampler.peak.items()},
        "max_worker_peak_rss_mb": round(max(sampler.peak.values()) / 2**20),
        "worker_peak_anonymous_rss_mb": {w: round(v / 2**20) for w, v in sampler.peak_anon.items()},
        "peak_rss_mb_by_quarter_of_run": [
            round(max(sampler.timeline[q * len(sampler.timeline) // 4:(q + 1) * len(sampler.timeline) // 4]
                      or [0]) / 2**20) for q in range(4)],
        "imputed": summary.imputed,
    }
    shutil.rmtree(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=DEFAULT_PARTITION_ROWS)
    parser.add_argument("--output", default=str(RESULTS / "bench_engine.json"))
    args = parser.parse_args()

    manifest = SHARED_MANIFEST if SHARED_MANIFEST.is_dir() else BUNDLED_MANIFEST
    work = data_dir() / "engine-bench"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = work / "cache-chr1"
    build_cache(chromosome_fasta(), chromosome_gtf(), cache)
    cache_s = time.perf_counter() - t0

    core = core_baseline(manifest, cache)
    print(f"core alone (one process, no Dask): {core['positions']:,} positions, "
          f"{core['cpu_us_per_position']} CPU us/position", flush=True)

    rows = []
    for n in args.sizes:
        result = run_size(n, manifest, cache, args.workers, args.partition_rows, work)
        result["engine_cpu_over_core_cpu"] = round(result["cpu_us_per_position"]
                                                   / core["cpu_us_per_position"], 2)
        rows.append(result)
        print(f"{n:>12,} positions  {result['seconds']:7.1f} s  {result['positions_per_s']:>10,} pos/s  "
              f"cpu {result['cpu_us_per_position']} us/position  "
              f"peak RSS/worker {result['max_worker_peak_rss_mb']:>6,} MB  "
              f"partitions {result['partitions']}  load {result['load_average_1min_at_end']:.1f}", flush=True)

    print()
    print(f"{'positions':>12}  {'seconds':>8}  {'pos/s':>10}  {'target':>7}  {'cpu us/pos':>10}  "
          f"{'pos/s idle 2 cores':>18}  {'peak RSS/worker MB':>20}  phases")
    for r in rows:
        peaks = "/".join(str(v) for v in r["worker_peak_rss_mb"].values())
        phases = ", ".join(f"{k} {v}" for k, v in r["timings_s"].items())
        print(f"{r['positions']:>12,}  {r['seconds']:>8.1f}  {r['positions_per_s']:>10,}  "
              f"{'yes' if r['meets_target'] else 'no':>7}  {r['cpu_us_per_position']:>10}  "
              f"{r['projected_positions_per_s_idle_cores']:>18,}  {peaks:>20}  {phases}")
    report = {
        "benchmark": "engine end to end (input Parquet -> output Parquet)",
        "manifest": str(manifest),
        "features": 124,
        "workers": args.workers,
        "threads_per_worker": 1,
        "partition_rows": args.partition_rows,
        "genomic_cache_s": round(cache_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "target_positions_per_s": TARGET_POSITIONS_PER_S,
        "core_alone": core,
        "runs": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))
    print(f"\nwritten {args.output}")


if __name__ == "__main__":
    main()

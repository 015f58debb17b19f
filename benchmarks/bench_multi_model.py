"""Benchmark: two models in one pass (``--manifest A --manifest B``) versus two separate runs.

Input: generated positions inside the real genes of the whole A. thaliana chromosome 1
(``benchmarks/data.py``), the genomic cache of the whole chromosome. Models: A is the 124-feature
3-mer manifest (``/work/shared/data/model-3mer-124``, else the bundled demo model); B is a 124-
feature 6-mer manifest written here: every built-in non-k-mer feature (scores, context, sequence,
gene structure) and the 64 6-mers ``6mer_GTxxxx``; A and B share 60 features. Scenario
``3mer+6mer`` is A and B; scenario ``two tissues`` is A and a second model directory with A's very
features (another model of the same manifest, e.g. per tissue): all features shared.

One LocalCluster of ``--workers`` x 1 thread serves every run (warm, so cluster start is not part of
either side). Each repeat times, in turn, run A alone, run B alone and the one-pass run of A and B
(OUT/<model>/ each), after one untimed warm-up run, and records the wall time and the CPU seconds of the workers and this process
(robust to other load on the shared machine). Reported per scenario: the ratio one pass / (the two
separate runs) by wall and by CPU time, from the best repeat of each run; the outputs of the one pass equal the separate runs' (the
row counts are checked here; tests/engine/test_multi_model.py checks the values).

    python benchmarks/bench_multi_model.py [--positions 2000000] [--repeats 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import chromosome_fasta, chromosome_gtf, data_dir, write_positions  # noqa: E402
from dask_enrich.engine import DEFAULT_PARTITION_ROWS, make_local_cluster, run_enrichment  # noqa: E402
from dask_enrich.features import registry  # noqa: E402
from dask_enrich.genome.cache import build_cache  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_MANIFEST = Path("/work/shared/data/model-3mer-124")
BUNDLED_MANIFEST = Path(__file__).resolve().parents[1] / "dask_enrich" / "data" / "demo_model"


def six_mer_model(root: Path) -> Path:
    """Model B: the built-in non-k-mer features and the 64 6-mers GTxxxx (a manifest directory)."""
    names = [f.name for f in registry.builtin_features()]
    bases = "ACGT"
    names += [f"6mer_GT{a}{b}{c}{d}" for a in bases for b in bases for c in bases for d in bases][:64]
    path = root / "model-6mer-gt"
    path.mkdir(parents=True, exist_ok=True)
    (path / "feature_manifest.csv").write_text("feature\n" + "\n".join(names) + "\n")
    return path


def tissue_model(model_a: Path, root: Path) -> Path:
    """A second model directory with model A's manifest and statistics (another tissue's model)."""
    path = root / "model-3mer-tissue2"
    path.mkdir(parents=True, exist_ok=True)
    for name in ("feature_manifest.csv", "train.features.json", "features.txt", "feature_stats.json"):
        if (model_a / name).is_file():
            shutil.copy(model_a / name, path / name)
    return path


def _cpu(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def timed(label: str, positions: Path, manifest, out: Path, cache: Path, client,
          processes: list[psutil.Process], partition_rows: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    os.sync()  # no run pays for the write-back of the previous run's output
    cpu0, t0 = _cpu(processes), time.perf_counter()
    summary = run_enrichment(str(positions), manifest, str(out), cache=str(cache),
                             partition_rows=partition_rows, client=client)
    seconds, cpu = time.perf_counter() - t0, _cpu(processes) - cpu0
    size = sum(f.stat().st_size for f in out.rglob("part-*.parquet"))
    shutil.rmtree(out)
    print(f"  {label:<10} {seconds:7.2f} s  cpu {cpu:7.2f} s  rows {summary.rows_written:,}  "
          f"output {size / 1e6:,.0f} MB  load {os.getloadavg()[0]:.1f}", flush=True)
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "rows": summary.rows_written,
            "output_mb": round(size / 1e6, 1), "timings_s": summary.timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=DEFAULT_PARTITION_ROWS)
    parser.add_argument("--output", default=str(RESULTS / "bench_multi_model.json"))
    args = parser.parse_args()

    from distributed import Client

    work = data_dir() / "multi-model-bench"
    work.mkdir(parents=True, exist_ok=True)
    cache = data_dir() / "engine-bench" / "cache-chr1"
    build_cache(chromosome_fasta(), chromosome_gtf(), cache)
    model_a = SHARED_MANIFEST if SHARED_MANIFEST.is_dir() else BUNDLED_MANIFEST
    model_b = six_mer_model(work)
    model_a2 = tissue_model(model_a, work)
    positions = write_positions(args.positions)

    cluster = make_local_cluster(args.workers, 1, memory_limit="6GB")
    client = Client(cluster)
    runs: list[dict] = []
    try:
        processes = [psutil.Process(p) for p in client.run(os.getpid).values()] + [psutil.Process()]
        print("warm-up (untimed): each worker opens the genomic cache and imports once", flush=True)
        timed("warm-up", positions, model_a, work / "out-warm", cache=cache, client=client,
              processes=processes, partition_rows=args.partition_rows)
        for r in range(args.repeats):
            print(f"repeat {r + 1}/{args.repeats} ({args.positions:,} positions)", flush=True)
            common = dict(cache=cache, client=client, processes=processes,
                          partition_rows=args.partition_rows)
            a = timed("A alone", positions, model_a, work / "out-a", **common)
            b = timed("B alone", positions, model_b, work / "out-b", **common)
            both = timed("A+B pass", positions, [model_a, model_b], work / "out-ab", **common)
            a2 = timed("A2 alone", positions, model_a2, work / "out-a2", **common)
            same = timed("A+A2 pass", positions, [model_a, model_a2], work / "out-aa2", **common)
            rows = {run["rows"] for run in (a, b, both, a2, same)}
            if rows != {args.positions}:
                raise SystemExit(f"row counts differ: {rows}")
            runs.append({"a": a, "b": b, "both": both, "a2": a2, "same": same})
    finally:
        client.close()
        cluster.close()

    def best(key: str, side: str) -> float:
        return min(run[side][key] for run in runs)

    scenarios = {}
    for label, first, second, joint in (("3mer+6mer", "a", "b", "both"), ("two tissues", "a", "a2", "same")):
        wall = best("seconds", first) + best("seconds", second)
        cpu = best("cpu_seconds", first) + best("cpu_seconds", second)
        scenarios[label] = {
            "separate_wall_s": round(wall, 2), "separate_cpu_s": round(cpu, 2),
            "one_pass_wall_s": best("seconds", joint), "one_pass_cpu_s": best("cpu_seconds", joint),
            "ratio_wall": round(best("seconds", joint) / wall, 3),
            "ratio_cpu": round(best("cpu_seconds", joint) / cpu, 3),
            # the same repeat's runs side by side (they saw about the same load)
            "median_repeat_ratio_wall": round(float(np.median(
                [r[joint]["seconds"] / (r[first]["seconds"] + r[second]["seconds"]) for r in runs])), 3),
            "median_repeat_ratio_cpu": round(float(np.median(
                [r[joint]["cpu_seconds"] / (r[first]["cpu_seconds"] + r[second]["cpu_seconds"])
                 for r in runs])), 3)}
    result = {
        "benchmark": "bench_multi_model",
        "positions": args.positions,
        "workers": args.workers,
        "partition_rows": args.partition_rows,
        "model_a": {"path": str(model_a), "features": len(
            (model_a / "feature_manifest.csv").read_text().split()) - 1},
        "model_b": {"path": "6-mer manifest written by this script", "features": len(
            (model_b / "feature_manifest.csv").read_text().split()) - 1},
        "scenarios": scenarios,
        "repeats": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_end": os.getloadavg()[0]},
    }
    print()
    print("best repeat of each run; 'median' = median over repeats of the ratio within a repeat")
    print(f"{'scenario':<13}{'separate wall s':>16}{'one pass wall s':>16}{'ratio':>7}{'median':>8}"
          f"{'separate cpu s':>16}{'one pass cpu s':>16}{'ratio':>7}{'median':>8}")
    for label, sc in scenarios.items():
        print(f"{label:<13}{sc['separate_wall_s']:>16.2f}{sc['one_pass_wall_s']:>16.2f}{sc['ratio_wall']:>7.3f}"
              f"{sc['median_repeat_ratio_wall']:>8.3f}{sc['separate_cpu_s']:>16.2f}"
              f"{sc['one_pass_cpu_s']:>16.2f}{sc['ratio_cpu']:>7.3f}{sc['median_repeat_ratio_cpu']:>8.3f}")
    RESULTS.mkdir(exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()

"""Overhead of a remote scheduler: `dask-enrich run --scheduler tcp://...` against a scheduler and
workers running as separate processes, versus `dask-enrich run` on its own LocalCluster, same input,
same worker count, threads and memory limit, alternating, a few repeats.

Input: generated positions inside the 380 real genes of the bundled 1 Mb A. thaliana slice
(``benchmarks/data.py``), the bundled 124-feature demo manifest and the slice's genomic cache.
Every mode runs the CLI as a subprocess (as a user would): ``local`` (its own LocalCluster),
``remote_cold`` (the first run on a freshly started scheduler + workers: worker processes import
the package and open the cache during the run, like the LocalCluster's) and ``remote_warm`` (the
next run on the same cluster). Reported per mode: the CLI's wall time (process start to exit; for
the LocalCluster it includes starting the cluster, for the remote modes the cluster is already up,
as on a real deployment, and its start is reported apart) and the run's own compute phase
(``timings_s.enrich_and_write`` in ``_SUCCESS.json``). Ratios are mode / local (medians).

    python benchmarks/bench_remote_scheduler.py [--positions 100000] [--repeat 3] [--partition-rows 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data import write_positions  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402

ROOT = HERE.parent
DATA = ROOT / "dask_enrich" / "data"
RESULTS = HERE / "results"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
MEMORY = "2GiB"


def enrich(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("dask-enrich")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "dask_enrich.cli", *args]


def start_cluster(root: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    root.mkdir(parents=True)
    info = root / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                              start_new_session=True)]
    while not info.exists():
        time.sleep(0.1)
    time.sleep(0.2)
    address = json.loads(info.read_text())["address"]
    for i in range(workers):
        (root / f"w{i}").mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--memory-limit",
             MEMORY, "--local-directory", str(root / f"w{i}"), "--no-dashboard", "--host",
             "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
            start_new_session=True))
    from distributed import Client

    try:
        with Client(address) as client:
            client.wait_for_workers(workers, timeout=120)
    except BaseException:
        stop_cluster(procs)
        raise
    return address, procs


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_once(cmd: list[str], out: Path) -> dict[str, float]:
    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    done = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    timings = json.loads((out / "_SUCCESS.json").read_text())["timings_s"]
    return {"wall_s": wall, "compute_s": timings["enrich_and_write"], "run_total_s": timings["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=10_000)
    args = parser.parse_args()

    positions = write_positions(args.positions, annotation="bundled")
    n_rows = sum(pq.read_metadata(p).num_rows for p in positions.glob("*.parquet"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_remote_"))
    procs: list[subprocess.Popen] = []
    try:
        cache = tmp / "cache"
        subprocess.run(enrich("build-cache", "--genome", str(DATA / "athal_chr1_1mb.fa.gz"),
                              "--annotation", str(DATA / "athal_chr1_1mb.gtf.gz"), "--out",
                              str(cache), "--quiet"), check=True, env=ENV, capture_output=True)
        base = enrich("run", "--positions", str(positions), "--manifest", str(DATA / "demo_model"),
                      "--cache", str(cache), "--partition-rows", str(args.partition_rows), "--quiet")
        local_cmd = base + ["--workers", str(args.workers), "--threads-per-worker", "1",
                            "--memory-limit", MEMORY]
        runs: dict[str, list[dict[str, float]]] = {"local": [], "remote_cold": [], "remote_warm": []}
        cluster_start: list[float] = []

        def show(mode: str, i: int) -> None:
            r = runs[mode][-1]
            print(f"  {mode:<12} #{i + 1}: wall {r['wall_s']:6.2f} s  compute {r['compute_s']:6.2f} s",
                  flush=True)

        for i in range(args.repeat):  # alternate, so load drifts hit both sides alike
            if i % 2 == 0:
                runs["local"].append(run_once(local_cmd, tmp / "out-local"))
                show("local", i)
            t = time.perf_counter()
            address, procs = start_cluster(tmp / f"cluster-{i}", args.workers)
            cluster_start.append(time.perf_counter() - t)
            remote_cmd = base + ["--scheduler", address]
            runs["remote_cold"].append(run_once(remote_cmd, tmp / "out-remote"))
            show("remote_cold", i)
            runs["remote_warm"].append(run_once(remote_cmd, tmp / "out-remote"))
            show("remote_warm", i)
            stop_cluster(procs)
            procs = []
            if i % 2 == 1:
                runs["local"].append(run_once(local_cmd, tmp / "out-local"))
                show("local", i)
    finally:
        stop_cluster(procs)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    ratio = {mode: {k: med[mode][k] / med["local"][k] for k in med["local"]}
             for mode in ("remote_cold", "remote_warm")}
    print(f"\n{n_rows:,} positions, {args.workers} workers x 1 thread, {MEMORY} each, "
          f"--partition-rows {args.partition_rows}, {args.repeat} repeats (medians)")
    print(f"{'':<14}{'wall s':>10}{'compute s':>12}{'wall ratio':>12}{'compute ratio':>15}")
    for mode in ("local", "remote_cold", "remote_warm"):
        r = ratio.get(mode, {"wall_s": 1.0, "compute_s": 1.0})
        print(f"{mode:<14}{med[mode]['wall_s']:>10.2f}{med[mode]['compute_s']:>12.2f}"
              f"{r['wall_s']:>12.2f}{r['compute_s']:>15.2f}")
    print(f"(ratios: / local; cluster start, not in remote wall: median "
          f"{statistics.median(cluster_start):.1f} s; remote_cold = first run on a fresh cluster, "
          f"remote_warm = the next run on it)")
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": "remote_scheduler_overhead", "positions": n_rows,
              "workers": args.workers, "threads_per_worker": 1, "memory_limit": MEMORY,
              "partition_rows": args.partition_rows, "repeat": args.repeat, "runs": runs,
              "median": med, "ratio_over_local": ratio,
              "cluster_start_s": cluster_start,
              "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                          "python": platform.python_version()}}
    (RESULTS / "bench_remote_scheduler.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS / 'bench_remote_scheduler.json'}")


if __name__ == "__main__":
    main()

"""The fixed cost of a CLI run (issue 19): a one-gene track through ``dask-enrich run``, as a user
runs it, with where the time goes.

    python benchmarks/bench_fixed_cost.py                      # 7 runs of this checkout
    python benchmarks/bench_fixed_cost.py --compare /work/base # and of another checkout, interleaved

The input is ``bench_track.prepare(2M)``'s ``one_gene`` track (one gene of about 15 kb, its genomic
cache, the 43 score + 14 genomic features), on the engine's own LocalCluster (``--workers 2``).
Each run is a fresh process: the ``dask-enrich`` console script with ``PYTHONPATH`` set to the
checkout measured. Wall time is the median of the runs (runs of the checkouts alternate, so a
noisy machine hits both alike); ratios are of medians from the same session.

The breakdown comes from separate traced runs (``--trace``, the same command through a small
launcher that records the time at a few calls as they happen; nothing is patched out):

* ``start``: interpreter start and the import of ``dask_enrich.cli``;
* ``cli``: argument parsing and the imports of the engine (pandas, pyarrow, dask, distributed);
* ``checks``: manifest, input footers, output checks, lock (``run_enrichment`` up to the cluster);
* ``cluster``: the LocalCluster and its client (scheduler, nannies, worker processes): the wait
  for it when the command line started it in the background;
* ``reach``: from the client to the engine's work (the workers-see-OUT probe, a round trip);
* ``plan``: the plan pass over ``gene_id`` (a round trip), the plan and the graph;
* ``tasks``: the tasks (reading, per-task set-up such as opening the cache, enriching, writing);
* ``success``: checks of the parts and ``_SUCCESS.json``/``_metadata``;
* ``close``: closing the client and the cluster;
* ``exit``: from ``main`` returning to the process being gone (interpreter shutdown).

The time is until the process is gone, as a shell sees it (stderr goes to a file). A reader of a
pipe on stderr (``2>&1 | tee``) sees its end about 0.1 s later: the forkserver, which holds the
pipe too, exits when the process that started it has gone.

Results: table printed; JSON in benchmarks/results/bench_fixed_cost.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PHASES = ("start", "cli", "checks", "cluster", "reach", "plan", "tasks", "success", "close", "exit")
#: (module, attribute path, mark on entry, mark on return) of the traced calls
TRACED = (
    ("dask_enrich.cli", "main", "main", "main_return"),
    ("dask_enrich.engine.run", "run_enrichment", "run_enrichment", None),
    # the run's own call (a LocalCluster prestarted by the command line is waited for there)
    ("dask_enrich.engine.run", "make_client", "make_client", "make_client_return"),
    ("dask_enrich.engine.run", "_run", "work", None),
    ("distributed.client", "Client.compute", "compute", None),
    ("dask_enrich.engine.models", "write_successes", "success", "success_return"),
    ("distributed.client", "Client.close", "close", None),
)

#: The launcher of a traced run: the console script's own two lines (``dask_enrich.cli`` is
#: imported at the top, as in the script pip writes), with an import hook that wraps the
#: :data:`TRACED` calls of a module when it is imported (so the import order is unchanged).
LAUNCHER = r'''
import sys, time, os, json
from dask_enrich.cli import main as _main_unused  # the console script's import
if __name__ == "__main__":
    import importlib.abc, importlib.machinery, functools, atexit
    marks = []
    TRACED = json.loads(os.environ["FIXED_COST_TRACED"])
    def wrap(func, enter, leave):
        @functools.wraps(func)
        def traced(*a, **k):
            if enter and not any(m[0] == enter for m in marks):
                marks.append((enter, time.monotonic()))
            try:
                return func(*a, **k)
            finally:
                if leave:
                    marks.append((leave, time.monotonic()))
        return traced
    def patch(module):
        for name, attr, enter, leave in TRACED:
            if name != module.__name__:
                continue
            owner, *path = [module, *attr.split(".")]
            for part in path[:-1]:
                owner = getattr(owner, part, None)
            if owner is not None and hasattr(owner, path[-1]):
                setattr(owner, path[-1], wrap(getattr(owner, path[-1]), enter, leave))
    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname not in {t[0] for t in TRACED}:
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module
            def run(module):
                exec_module(module)
                patch(module)
            spec.loader.exec_module = run
            return spec
    sys.meta_path.insert(0, Hook())
    import dask_enrich.cli
    patch(dask_enrich.cli)
    def dump():
        with open(os.environ["FIXED_COST_MARKS"], "w") as fh:
            json.dump(marks, fh)
    atexit.register(dump)
    code = dask_enrich.cli.main()
    marks.append(("main_return", time.monotonic()))
    sys.exit(code)
'''


def inputs(rows: int = 2_000_000) -> tuple[dict, Path]:
    from bench_track import manifest_57, prepare

    paths = prepare(rows)
    return paths, manifest_57(paths["root"])


def command(paths: dict, manifest: Path, out: Path) -> list[str]:
    return ["run", "--track", str(paths["one_gene"]), "--manifest", str(manifest), "--cache",
            str(paths["cache"]), "--out", str(out), "--overwrite", "--workers", "2", "--quiet"]


def one_run(root: Path, args: list[str], trace: bool) -> dict:
    """Wall seconds of one fresh process (and its marks, seconds from its start, when traced)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as tmp:
        if trace:
            launcher = Path(tmp) / "launcher.py"
            launcher.write_text(LAUNCHER)
            env.update(FIXED_COST_TRACED=json.dumps(TRACED), FIXED_COST_MARKS=str(Path(tmp) / "m.json"))
            argv = [sys.executable, str(launcher), *args]
        else:  # the console script pip wrote (its workers import dask_enrich.cli when spawned)
            script = Path(sys.executable).with_name("dask-enrich")
            argv = ([sys.executable, str(script)] if script.exists()
                    else [sys.executable, "-m", "dask_enrich.cli"]) + args
        with open(Path(tmp) / "stderr", "w+") as err:  # a file: the wait is for the process itself
            t0 = time.monotonic()
            code = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err).wait()
            t1 = time.monotonic()
            err.seek(0)
            if code != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {code}: {err.read()[-2000:]}")
        result = {"wall_s": t1 - t0}
        if trace:
            marks = {name: t - t0 for name, t in json.loads((Path(tmp) / "m.json").read_text())}
            marks["exit"] = t1 - t0
            result["phases"] = phases(marks)
    return result


def phases(marks: dict[str, float]) -> dict[str, float]:
    """Seconds per phase of :data:`PHASES` from the marks (a missing mark merges two phases)."""
    order = [("start", "main"), ("cli", "run_enrichment"), ("checks", "make_client"),
             ("cluster", "make_client_return"), ("reach", "work"), ("plan", "compute"),
             ("tasks", "success"), ("success", "success_return"), ("close", "main_return"),
             ("exit", "exit")]
    out, last = {}, 0.0
    for phase, mark in order:
        if mark in marks:
            out[phase] = max(marks[mark] - last, 0.0)
            last = marks[mark]
        else:
            out[phase] = 0.0
    return out


def measure(roots: dict[str, Path], runs: int, traced: int) -> dict:
    paths, manifest = inputs()
    results: dict = {label: {"runs": [], "traces": []} for label in roots}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {label: command(paths, manifest, Path(tmp) / f"out{i}") for i, label in enumerate(roots)}
        for label, root in roots.items():  # warm the file cache and the bytecode once
            one_run(root, outs[label], trace=False)
        for _ in range(runs):
            for label, root in roots.items():
                results[label]["runs"].append(one_run(root, outs[label], trace=False)["wall_s"])
        for _ in range(traced):
            for label, root in roots.items():
                results[label]["traces"].append(one_run(root, outs[label], trace=True)["phases"])
    for label, r in results.items():
        r["median_wall_s"] = round(statistics.median(r["runs"]), 3) if r["runs"] else float("nan")
        r["runs"] = [round(w, 3) for w in r["runs"]]
        if r["traces"]:
            r["median_phases_s"] = {p: round(statistics.median(t[p] for t in r["traces"]), 3)
                                    for p in PHASES}
        del r["traces"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="untraced runs per checkout (median)")
    parser.add_argument("--traced", type=int, default=5, help="traced runs per checkout (breakdown)")
    parser.add_argument("--compare", metavar="ROOT", action="append", default=[],
                        help="another checkout to measure in the same session (PYTHONPATH=ROOT)")
    args = parser.parse_args()
    roots = {"this": REPO, **{str(Path(r)): Path(r) for r in args.compare}}
    results = measure(roots, args.runs, args.traced)
    labels = list(results)
    print(f"{'phase':<10}" + "".join(f"{label[-18:]:>20}" for label in labels))
    if all("median_phases_s" in results[label] for label in labels):
        for phase in PHASES:
            print(f"{phase:<10}" + "".join(f"{results[label]['median_phases_s'][phase]:>20.3f}"
                                           for label in labels))
    print(f"{'wall':<10}" + "".join(f"{results[label]['median_wall_s']:>20.3f}" for label in labels))
    for label in labels[1:]:
        print(f"this / {label}: {results['this']['median_wall_s'] / results[label]['median_wall_s']:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_fixed_cost.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

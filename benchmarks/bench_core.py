"""Benchmark of the pure enrichment core on 1,000,000 positions (one process, one core).

Measures (1) the score-derived features of the 124-name manifest alone, positions per second, and
(2) the whole 124-name manifest with genomic/sequence features imputed, with the peak memory
traced during the call as a multiple of the output frame's size. A naive pandas baseline (the same
formulas written column by column on a DataFrame copy, as inference scripts often do) runs in the
same process for a ratio.

    python benchmarks/bench_core.py [--positions N] [--repeat R]
"""
from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.features.scores import SCORE_FEATURES
from dask_enrich.manifest import load_manifest, manifest_from_names

MODEL_DIR = Path(__file__).resolve().parents[1] / "dask_enrich" / "data" / "demo_model"
RESULTS = Path(__file__).resolve().parent / "results"


def make_positions(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.4, 0.4, 2.0], n)
    genes = np.sort(rng.integers(0, max(n // 300, 1), n))
    frame = pd.DataFrame({
        "gene_id": pd.Series(np.char.add("G", genes.astype(str)), dtype="str"),
        "position": np.arange(n, dtype=np.int64) * 3 + 1000,
        "donor_score": p[:, 0], "acceptor_score": p[:, 1], "neither_score": p[:, 2],
    })
    for c in ("m2", "m1", "p1", "p2"):
        frame[f"context_score_{c}"] = rng.dirichlet([0.4, 0.4, 2.0], n)[:, 0]
    return frame


def naive_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    """Baseline: the probability and context formulas as pandas column assignments on a copy."""
    eps = 1e-10
    df = frame.copy()
    d, a, n = df.donor_score, df.acceptor_score, df.neither_score
    ctx = df[[f"context_score_{c}" for c in ("m2", "m1", "p1", "p2")]]
    df["relative_donor_probability"] = d / (d + a + eps)
    df["splice_probability"] = (d + a) / (d + a + n + eps)
    df["donor_acceptor_diff"] = (d - a) / (np.maximum(d, a) + eps)
    df["splice_neither_diff"] = (np.maximum(d, a) - n) / (np.maximum(np.maximum(d, a), n) + eps)
    df["donor_acceptor_logodds"] = np.log(d + eps) - np.log(a + eps)
    df["splice_neither_logodds"] = np.log(d + a + eps) - np.log(n + eps)
    df["probability_entropy"] = -(d * np.log(d + eps) + a * np.log(a + eps) + n * np.log(n + eps))
    df["context_neighbor_mean"] = ctx.mean(axis=1)
    df["context_max"] = ctx.max(axis=1)
    df["context_asymmetry"] = (ctx.iloc[:, 0] + ctx.iloc[:, 1]) - (ctx.iloc[:, 2] + ctx.iloc[:, 3])
    for t, s in (("donor", d), ("acceptor", a)):
        m2, m1, p1, p2 = (ctx.iloc[:, i] for i in range(4))
        df[f"{t}_diff_m1"], df[f"{t}_diff_m2"] = s - m1, s - m2
        df[f"{t}_diff_p1"], df[f"{t}_diff_p2"] = s - p1, s - p2
        df[f"{t}_surge_ratio"] = s / (m1 + p1 + eps)
        df[f"{t}_is_local_peak"] = ((s > m1) & (s > p1) & (s > 1e-3)).astype(int)
        df[f"{t}_weighted_context"] = 0.1 * m2 + 0.2 * m1 + 0.4 * s + 0.2 * p1 + 0.1 * p2
        df[f"{t}_peak_height_ratio"] = s / (df.context_neighbor_mean + eps)
        df[f"{t}_second_derivative"] = (s - m1) - (p1 - s)
        df[f"{t}_signal_strength"] = s - df.context_neighbor_mean
        df[f"{t}_context_diff_ratio"] = s / (df.context_max + eps)
    df["donor_acceptor_peak_ratio"] = df.donor_peak_height_ratio / (df.acceptor_peak_height_ratio + eps)
    df["type_signal_difference"] = df.donor_signal_strength - df.acceptor_signal_strength
    df["score_difference_ratio"] = (d - a) / (d + a + eps)
    df["signal_strength_ratio"] = df.donor_signal_strength / (df.acceptor_signal_strength + eps)
    return df


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    frame = make_positions(args.positions)
    full = load_manifest(MODEL_DIR)
    scores_only = manifest_from_names([n for n in full.names if n in SCORE_FEATURES])
    impute = EnrichConfig(missing="impute")
    enrich(frame.head(1000), full, config=impute)  # warm-up

    t_scores = best_time(lambda: enrich(frame, scores_only), args.repeat)
    t_naive = best_time(lambda: naive_pandas(frame), max(1, args.repeat // 2))
    t_full = best_time(lambda: enrich(frame, full, config=impute), args.repeat)

    tracemalloc.start()
    out, report = enrich(frame, full, config=impute)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    output_bytes = int(out.memory_usage(deep=True).sum())
    del out

    n = args.positions
    result = {
        "positions": n,
        "score_features": len(scores_only),
        "score_features_positions_per_s": n / t_scores,
        "naive_pandas_positions_per_s": n / t_naive,
        "speedup_vs_naive_pandas": t_naive / t_scores,
        "full_manifest_features": len(full),
        "full_manifest_positions_per_s": n / t_full,
        "peak_traced_bytes": peak,
        "output_frame_bytes": output_bytes,
        "peak_over_output": peak / output_bytes,
        "imputed_features": len(report.imputed),
    }
    print(f"{'measure':40s} {'value':>16s}")
    for key, value in result.items():
        print(f"{key:40s} {value:>16,.2f}" if isinstance(value, float) else f"{key:40s} {value:>16,}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_core.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

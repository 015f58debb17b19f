"""The Polars peer: the score-derived features as Polars lazy expressions, Parquet scan to Parquet sink.

What a user who knows Polars would write instead of dask_enrich for the score-derived part of a
manifest: ``scan_parquet`` of the positions, one ``with_columns`` of expressions (the spec's
formulas, context from the ``context_score_*`` input columns), a ``select`` of the identifying
columns and the features in manifest order, and ``sink_parquet`` (streaming engine, snappy, like
the dask_enrich writer). Polars uses all cores of the machine (its own thread pool).

    python benchmarks/polars_peer.py POSITIONS OUT.parquet [--manifest DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import polars as pl

EPS = 1e-10
PEAK_MIN = 1e-3
ID_COLUMNS = ("gene_id", "position", "chrom", "strand")


def score_expressions() -> dict[str, pl.Expr]:
    """Every score-derived feature as a Polars expression over the input columns."""
    d, a, n = pl.col("donor_score"), pl.col("acceptor_score"), pl.col("neither_score")
    m2, m1 = pl.col("context_score_m2"), pl.col("context_score_m1")
    p1, p2 = pl.col("context_score_p1"), pl.col("context_score_p2")
    max_da = pl.max_horizontal(d, a)
    mean4 = (m2 + m1 + p1 + p2) / 4.0
    max4 = pl.max_horizontal(pl.max_horizontal(m2, m1), pl.max_horizontal(p1, p2))
    e: dict[str, pl.Expr] = {
        "donor_score": d, "acceptor_score": a, "neither_score": n,
        "relative_donor_probability": d / (d + a + EPS),
        "splice_probability": (d + a) / (d + a + n + EPS),
        "donor_acceptor_diff": (d - a) / (max_da + EPS),
        "splice_neither_diff": (max_da - n) / (pl.max_horizontal(max_da, n) + EPS),
        "donor_acceptor_logodds": (d + EPS).log() - (a + EPS).log(),
        "splice_neither_logodds": (d + a + EPS).log() - (n + EPS).log(),
        "probability_entropy": -(d * (d + EPS).log() + a * (a + EPS).log() + n * (n + EPS).log()),
        "context_score_m2": m2, "context_score_m1": m1,
        "context_score_p1": p1, "context_score_p2": p2,
        "context_neighbor_mean": mean4,
        "context_asymmetry": (m1 + m2) - (p1 + p2),
        "context_max": max4,
        "score_difference_ratio": (d - a) / (d + a + EPS),
    }
    for kind, s in (("donor", d), ("acceptor", a)):
        e[f"{kind}_diff_m1"] = s - m1
        e[f"{kind}_diff_m2"] = s - m2
        e[f"{kind}_diff_p1"] = s - p1
        e[f"{kind}_diff_p2"] = s - p2
        e[f"{kind}_surge_ratio"] = s / (m1 + p1 + EPS)
        e[f"{kind}_is_local_peak"] = ((s > m1) & (s > p1) & (s > PEAK_MIN)).cast(pl.Int64)
        e[f"{kind}_weighted_context"] = 0.1 * m2 + 0.2 * m1 + 0.4 * s + 0.2 * p1 + 0.1 * p2
        e[f"{kind}_peak_height_ratio"] = s / (mean4 + EPS)
        e[f"{kind}_second_derivative"] = (s - m1) - (p1 - s)
        e[f"{kind}_signal_strength"] = s - mean4
        e[f"{kind}_context_diff_ratio"] = s / (max4 + EPS)
    e["donor_acceptor_peak_ratio"] = e["donor_peak_height_ratio"] / (
        e["acceptor_peak_height_ratio"] + EPS)
    e["type_signal_difference"] = e["donor_signal_strength"] - e["acceptor_signal_strength"]
    e["signal_strength_ratio"] = e["donor_signal_strength"] / (e["acceptor_signal_strength"] + EPS)
    return e


def score_query(source: str | Path, names: Sequence[str]) -> pl.LazyFrame:
    """The lazy query: identifying columns present in the input, then ``names`` in that order."""
    exprs = score_expressions()
    unknown = [n for n in names if n not in exprs]
    if unknown:
        raise KeyError(f"not score-derived features: {unknown}")
    scan = pl.scan_parquet(str(Path(source) / "*.parquet") if Path(source).is_dir() else str(source))
    present = scan.collect_schema().names()
    ids = [pl.col(c) for c in ID_COLUMNS if c in present]
    return scan.select(*ids, *[exprs[name].alias(name) for name in names])


def run_polars(source: str | Path, out: str | Path, names: Sequence[str]) -> Path:
    """Stream the score-derived features of ``source`` (Parquet file or directory) to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    score_query(source, names).sink_parquet(out, compression="snappy")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("positions")
    parser.add_argument("out")
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parents[1]
                                                  / "dask_enrich" / "data" / "demo_model"))
    args = parser.parse_args()
    from dask_enrich.features.scores import SCORE_FEATURES
    from dask_enrich.manifest import load_manifest

    names = [n for n in load_manifest(args.manifest).names if n in SCORE_FEATURES]
    print(run_polars(args.positions, args.out, names))


if __name__ == "__main__":
    main()

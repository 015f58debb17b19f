"""Train the bundled demo meta-model: dask_enrich/data/demo_model/{model.ubj, model.json, feature_stats.json}.

How the committed files were made (real data, nothing edited by hand)::

    pip install -e '.[models]'            # xgboost (CPU wheel), scikit-learn, skops
    python examples/train_demo_model.py    # well under a minute on 2 cores

1. Data: the bundled demo SpliceAI track (dask_enrich/data/demo_track.parquet: 24 real Arabidopsis
   genes, one row per nucleotide, made by examples/make_demo_track.py) and a genomic cache built
   from the bundled slice (athal_chr1_1mb.fa.gz / .gtf.gz) with dask_enrich.genome.cache.build_cache.
2. Labels: the annotation's splice sites (cache.splice_sites). The cache lists the intronic boundary
   nucleotide (plus strand: donor = exon_end + 1, acceptor = exon_start - 1); SpliceAI scores the
   exonic one, so each site is moved 1 nt into the exon (as benchmarks/bench_spliceai_accuracy.py
   does): donor, acceptor or neither for every nucleotide of the track. A nucleotide annotated as
   both (alternative transcripts) is left out of training and counted.
3. Split by gene: per strand, a seeded permutation puts 1/3 of the genes in the held-out set
   (listed in model.json as ``held_out_genes``; benchmarks/bench_meta_accuracy.py scores them).
4. Training rows, training genes only: every uncertain position (band rule 0.02 <= max(donor,
   acceptor) < 0.80, the default of dask_enrich.selection), every annotated site, and a seeded sample
   of the other positions, weighted by the inverse of their sampling fraction so that the model sees
   their real prevalence. Features: dask_enrich.core.enrich with the demo manifest (124 features,
   context from the track itself, sequence and genomic features from the cache); nothing imputed.
5. Model: one XGBoost multi:softprob booster (3 classes in the order neither, donor, acceptor; 60
   rounds of depth-3 trees), saved in XGBoost's UBJ format with the descriptor model.json;
   feature_stats.json holds each feature's median, mean, std, min and max over the training rows
   (the ``impute`` missing-value policy fills with the medians).

The functions here are also used by benchmarks/bench_meta_accuracy.py.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dask_enrich.basemodel.sites import site_flags, sites_on_scored_nucleotide
from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.manifest import Manifest, load_manifest
from dask_enrich.scoring import DEFAULT_CLASSES
from dask_enrich.selection import Selection, select_mask

DATA = Path(__file__).resolve().parents[1] / "dask_enrich" / "data"
FASTA = DATA / "athal_chr1_1mb.fa.gz"
GTF = DATA / "athal_chr1_1mb.gtf.gz"
TRACK = DATA / "demo_track.parquet"
MODEL_DIR = DATA / "demo_model"
BAND = (0.02, 0.80)
SEED = 0
BACKGROUND_ROWS = 4000
HELD_OUT_FRACTION = 1 / 3
PARAMS = dict(n_estimators=60, max_depth=3, learning_rate=0.15, subsample=0.8, colsample_bynode=0.5,
              min_child_weight=1.0, reg_lambda=1.0, tree_method="hist", objective="multi:softprob")
CLASS_CODE = {c: i for i, c in enumerate(DEFAULT_CLASSES)}  # neither 0, donor 1, acceptor 2


def open_cache(cache_dir: str | Path | None = None):
    """The genomic cache of the bundled slice (built in ``cache_dir`` or a temporary folder; the
    FASTA is linked there so that no index is written into the package)."""
    from dask_enrich.genome.cache import build_cache

    work = Path(cache_dir or tempfile.mkdtemp(prefix="demo_cache_"))
    work.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".fai", ".gzi"):
        src, dst = Path(str(FASTA) + suffix), work / (FASTA.name + suffix)
        if src.exists() and not dst.exists():
            os.symlink(src, dst)
    return build_cache(work / FASTA.name, GTF, work / "cache")


def uncertain_mask(track: pd.DataFrame, band: tuple[float, float] = BAND) -> np.ndarray:
    """The band rule of dask_enrich.selection: low <= max(donor_score, acceptor_score) < high."""
    return select_mask(track, Selection(rule="band", low=band[0], high=band[1]))


def label_track(track: pd.DataFrame, cache) -> pd.DataFrame:
    """``is_donor``/``is_acceptor`` (annotated sites moved 1 nt into the exon) and ``label``
    (class code; -1 where a nucleotide is annotated as both) for each track row (index kept)."""
    sites = sites_on_scored_nucleotide(cache.splice_sites, cache.gene_table["strand"])
    flags = site_flags(track, sites)
    out = pd.DataFrame({"is_donor": flags["donor"], "is_acceptor": flags["acceptor"]}, index=track.index)
    label = np.where(out["is_donor"], CLASS_CODE["donor"],
                     np.where(out["is_acceptor"], CLASS_CODE["acceptor"], CLASS_CODE["neither"]))
    out["label"] = np.where(out["is_donor"] & out["is_acceptor"], -1, label)
    return out


def split_genes(track: pd.DataFrame, seed: int = SEED, held_out: float = HELD_OUT_FRACTION
                ) -> tuple[list[str], list[str]]:
    """(training genes, held-out genes): per strand, a seeded permutation, 1/3 held out."""
    rng = np.random.default_rng(seed)
    genes = track.drop_duplicates("gene_id")[["gene_id", "strand"]].sort_values("gene_id")
    train, test = [], []
    for strand in ("+", "-"):
        ids = genes.loc[genes["strand"] == strand, "gene_id"].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n_test = int(round(len(ids) * held_out))
        test += sorted(ids[:n_test].tolist())
        train += sorted(ids[n_test:].tolist())
    return sorted(train), sorted(test)


def training_rows(track: pd.DataFrame, labels: pd.DataFrame, genes: list[str], seed: int = SEED,
                  background: int = BACKGROUND_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(row positions into ``track``, sample weights): uncertain rows, annotated sites, and a
    weighted sample of the other rows of ``genes``."""
    in_genes = track["gene_id"].isin(genes).to_numpy()
    site = (labels["is_donor"] | labels["is_acceptor"]).to_numpy()
    core = in_genes & (uncertain_mask(track) | site) & (labels["label"].to_numpy() >= 0)
    others = np.flatnonzero(in_genes & ~core & (labels["label"].to_numpy() >= 0))
    rng = np.random.default_rng(seed)
    n = min(background, len(others))
    sampled = np.sort(rng.choice(others, size=n, replace=False))
    rows = np.concatenate([np.flatnonzero(core), sampled])
    weights = np.concatenate([np.ones(int(core.sum())), np.full(n, len(others) / max(n, 1))])
    order = np.argsort(rows, kind="stable")
    return rows[order], weights[order]


def features_for(track: pd.DataFrame, rows: np.ndarray, manifest: Manifest, cache) -> pd.DataFrame:
    """The manifest's features of ``track.iloc[rows]`` (context from the whole track); nothing imputed."""
    out, report = enrich(track.iloc[rows], manifest, genomic=cache, track=track, config=EnrichConfig())
    if report.imputed:
        raise SystemExit(f"features were imputed: {report.imputed}")
    return out


def fit(X: pd.DataFrame, y: np.ndarray, weights: np.ndarray, seed: int = SEED, n_jobs: int = 2):
    """The demo XGBoost classifier (see PARAMS)."""
    import xgboost as xgb

    clf = xgb.XGBClassifier(**PARAMS, num_class=3, random_state=seed, n_jobs=n_jobs)
    return clf.fit(X, y, sample_weight=weights)


def feature_stats(X: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-feature median, mean, std, min, max over the rows of X."""
    values = X.to_numpy(dtype=np.float64)
    stats = {"median": np.median(values, axis=0), "mean": values.mean(axis=0),
             "std": values.std(axis=0), "min": values.min(axis=0), "max": values.max(axis=0)}
    return {name: {k: float(v[j]) for k, v in stats.items()} for j, name in enumerate(X.columns)}


def load_demo(cache_dir: str | Path | None = None):
    """(track, labels, cache, manifest) of the demo data."""
    track = pd.read_parquet(TRACK)
    cache = open_cache(cache_dir)
    manifest = load_manifest(MODEL_DIR / "feature_manifest.csv")
    return track, label_track(track, cache), cache, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=str(MODEL_DIR), help="model directory to write into")
    ap.add_argument("--cache-dir", default=None, help="where to build the genomic cache (default: temp)")
    ap.add_argument("--extra-track", default=None,
                    help="a further SpliceAI track of other genes of the slice (dask-enrich predict-base); "
                         "its genes join the training genes, the held-out demo genes stay the same")
    args = ap.parse_args()
    out = Path(args.out_dir)
    t0 = time.perf_counter()
    track, labels, cache, manifest = load_demo(args.cache_dir)
    train_genes, test_genes = split_genes(track)
    if args.extra_track:
        extra = pd.read_parquet(args.extra_track)
        extra = extra[~extra["gene_id"].isin(set(track["gene_id"]))]
        track = pd.concat([track, extra[track.columns]], ignore_index=True)
        labels = label_track(track, cache)
        train_genes = sorted(set(train_genes) | set(extra["gene_id"]))
    rows, weights = training_rows(track, labels, train_genes)
    X = features_for(track, rows, manifest, cache)[list(manifest.names)]
    y = labels["label"].to_numpy()[rows]
    clf = fit(X, y, weights)

    out.mkdir(parents=True, exist_ok=True)
    clf.get_booster().save_model(str(out / "model.ubj"))
    counts = {c: int((y == k).sum()) for c, k in CLASS_CODE.items()}
    descriptor = {
        "format": "xgboost", "path": "model.ubj", "classes": list(DEFAULT_CLASSES),
        "made_by": "examples/train_demo_model.py",
        "training": {
            "track": "dask_enrich/data/demo_track.parquet", "band": list(BAND), "seed": SEED,
            "extra_track": Path(args.extra_track).name if args.extra_track else None,
            "rows": int(len(rows)), "rows_by_class": counts,
            "uncertain_rows": int(uncertain_mask(track.iloc[rows]).sum()),
            "background_sample": BACKGROUND_ROWS, "both_donor_and_acceptor_left_out":
                int((labels["label"] < 0).sum()),
            "params": PARAMS, "xgboost": __import__("xgboost").__version__,
            "training_genes": train_genes, "held_out_genes": test_genes,
        },
    }
    (out / "model.json").write_text(json.dumps(descriptor, indent=1) + "\n")
    (out / "feature_stats.json").write_text(json.dumps(feature_stats(X), indent=1) + "\n")
    size = (out / "model.ubj").stat().st_size
    print(f"trained on {len(rows):,} rows of {len(train_genes)} genes {counts}; held out "
          f"{len(test_genes)} genes; model.ubj {size / 1e3:.1f} kB; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

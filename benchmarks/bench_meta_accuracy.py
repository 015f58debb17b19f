"""Base (SpliceAI) versus meta-model scores on held-out genes of the demo data.

    python benchmarks/bench_meta_accuracy.py          # ~1 minute on 2 cores

Data: the bundled demo track (24 real Arabidopsis genes, SpliceAI scores per nucleotide) with labels
from the annotation's splice sites moved 1 nt into the exon (see examples/train_demo_model.py).
Two evaluations, each at two levels:

* ``committed``: the bundled model dask_enrich/data/demo_model (loaded with
  dask_enrich.scoring.load_model) on its held-out genes (model.json ``held_out_genes``).
* ``cv``: the same training recipe in 3-fold cross-validation by gene (strand-balanced folds); every
  gene's uncertain positions are scored by the model that did not see that gene, so all 24 genes count.

Levels: ``uncertain`` (only the band-rule uncertain positions: base scores vs meta scores) and
``whole genes`` (every nucleotide of the genes: the base track vs the selective output, i.e. base
scores where certain and meta scores where uncertain, dask_enrich.scoring.selective_scores).
Metrics per site type: average precision (sklearn) and pooled top-k accuracy (k = number of annotated
sites in the set; ties at the k-th score counted by their expected share). Table printed; JSON in
benchmarks/results/bench_meta_accuracy.json. Figures are whatever they are: the data is small.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import train_demo_model as demo  # noqa: E402

from dask_enrich.basemodel.sites import topk_accuracy
from dask_enrich.scoring import load_model, selective_scores  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_meta_accuracy.json"
FOLDS = 3


def metrics(scores: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    out = {}
    for t in ("donor", "acceptor"):
        y = truth[t]
        out[f"{t}_sites"] = int(y.sum())
        out[f"{t}_ap"] = float(average_precision_score(y, scores[t])) if y.any() else float("nan")
        out[f"{t}_topk"] = topk_accuracy(scores[t], y)
    out["positions"] = int(len(truth["donor"]))
    return out


def evaluate(track: pd.DataFrame, labels: pd.DataFrame, mask: np.ndarray, meta: pd.DataFrame
             ) -> dict[str, dict[str, dict[str, float]]]:
    """Base vs meta at the uncertain rows, and base track vs selective output over whole genes."""
    truth = {t: labels[f"is_{t}"].to_numpy() for t in ("donor", "acceptor")}
    base = {t: track[f"{t}_score"].to_numpy(np.float64) for t in ("donor", "acceptor")}
    sel = selective_scores(track, mask, meta)
    assert len(sel) == len(track) and int(sel["rescored"].sum()) == int(mask.sum())
    return {
        "uncertain": {
            "base": metrics({t: base[t][mask] for t in base}, {t: truth[t][mask] for t in truth}),
            "meta": metrics({t: meta[f"{t}_meta"].to_numpy() for t in base}, {t: truth[t][mask] for t in truth}),
        },
        "whole_genes": {
            "base": metrics(base, truth),
            "meta": metrics({t: sel[f"{t}_meta"].to_numpy() for t in base}, truth),
        },
    }


def committed(track, labels, cache, manifest, model_dir: Path) -> dict:
    model = load_model(model_dir)
    held_out = json.loads((model_dir / "model.json").read_text())["training"]["held_out_genes"]
    part = track[track["gene_id"].isin(held_out)]
    mask = demo.uncertain_mask(part)
    enriched = demo.features_for(track, np.flatnonzero(track["gene_id"].isin(held_out).to_numpy())[mask],
                                 manifest, cache)
    meta = model.predict(enriched)
    result = evaluate(part, labels.loc[part.index], mask, meta)
    result["genes"] = held_out
    return result


def cross_validated(track, labels, cache, manifest) -> dict:
    rng = np.random.default_rng(demo.SEED)
    genes = track.drop_duplicates("gene_id")[["gene_id", "strand"]].sort_values("gene_id")
    fold_of = {}
    for strand in ("+", "-"):
        ids = genes.loc[genes["strand"] == strand, "gene_id"].to_numpy()
        for i, g in enumerate(ids[rng.permutation(len(ids))]):
            fold_of[g] = i % FOLDS
    fold = track["gene_id"].map(fold_of).to_numpy()
    mask = demo.uncertain_mask(track)
    meta = pd.DataFrame(np.nan, index=track.index[mask], columns=["donor_meta", "acceptor_meta", "neither_meta"])
    for f in range(FOLDS):
        train_genes = sorted(g for g, k in fold_of.items() if k != f)
        rows, weights = demo.training_rows(track, labels, train_genes)
        X = demo.features_for(track, rows, manifest, cache)[list(manifest.names)]
        clf = demo.fit(X, labels["label"].to_numpy()[rows], weights)
        test = np.flatnonzero(mask & (fold == f))
        Xt = demo.features_for(track, test, manifest, cache)[list(manifest.names)]
        p = clf.predict_proba(Xt)  # columns: neither, donor, acceptor (class codes 0, 1, 2)
        meta.loc[track.index[test]] = np.column_stack([p[:, 1], p[:, 2], p[:, 0]])
    assert not meta.isna().any().any()
    return evaluate(track, labels, mask, meta)


def table(name: str, result: dict) -> list[str]:
    lines = [f"\n{name}", f"{'level':<12} {'scores':<7} {'donor AP':>9} {'donor top-k':>12} "
             f"{'acc. AP':>8} {'acc. top-k':>11} {'donors':>7} {'acceptors':>9} {'positions':>10}"]
    for level in ("uncertain", "whole_genes"):
        for which in ("base", "meta"):
            m = result[level][which]
            lines.append(f"{level:<12} {which:<7} {m['donor_ap']:>9.3f} {m['donor_topk']:>12.3f} "
                         f"{m['acceptor_ap']:>8.3f} {m['acceptor_topk']:>11.3f} {m['donor_sites']:>7} "
                         f"{m['acceptor_sites']:>9} {m['positions']:>10,}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description="Base vs meta-model accuracy on held-out demo genes.")
    ap.add_argument("--model-dir", default=str(demo.MODEL_DIR), help="model directory to evaluate")
    ap.add_argument("--out", default=str(RESULTS), help="JSON results file")
    args = ap.parse_args()
    model_dir, results_file = Path(args.model_dir), Path(args.out)
    t0 = time.perf_counter()
    track, labels, cache, manifest = demo.load_demo()
    results = {"committed_model": committed(track, labels, cache, manifest, model_dir),
               "cross_validation": cross_validated(track, labels, cache, manifest)}
    results["cross_validation"]["folds"] = FOLDS
    model_file = model_dir / "model.ubj"
    results["model_bytes"] = model_file.stat().st_size
    results["seconds"] = round(time.perf_counter() - t0, 1)
    lines = table(f"committed demo model, {len(results['committed_model']['genes'])} held-out genes",
                  results["committed_model"])
    lines += table(f"{FOLDS}-fold cross-validation by gene, all {track['gene_id'].nunique()} genes",
                   results["cross_validation"])
    print("\n".join(lines))
    print(f"\nmodel file {results['model_bytes'] / 1e3:.1f} kB; {results['seconds']} s")
    results["model_dir"] = str(model_dir)
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {results_file}")


if __name__ == "__main__":
    main()

"""The seed baseline computes the same probability columns as the core (so the benchmark compares
like with like on them), keeps the seed's row-based context, and returns the manifest's columns."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.manifest import load_manifest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("seed_baseline", BENCH / "seed_baseline.py")
seed_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_baseline)

PROBABILITY = ["donor_score", "acceptor_score", "neither_score", "relative_donor_probability",
               "splice_probability", "donor_acceptor_diff", "splice_neither_diff",
               "donor_acceptor_logodds", "splice_neither_logodds", "probability_entropy"]


def _positions(n_genes: int = 7, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, n_genes)
    genes = np.repeat([f"AT1G{i:05d}" for i in range(n_genes)], sizes)
    p = rng.dirichlet([0.4, 0.4, 2.0], len(genes))
    p[::5, 0] = 0.0  # exact zeros exercise the eps terms
    frame = pd.DataFrame({"gene_id": pd.Series(genes, dtype="str"),
                          "position": np.arange(len(genes), dtype=np.int64) * 7 + 100,
                          "donor_score": p[:, 0], "acceptor_score": p[:, 1], "neither_score": p[:, 2]})
    for c in ("m2", "m1", "p1", "p2"):
        frame[f"context_score_{c}"] = rng.random(len(genes))
    return frame


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(Path(__file__).resolve().parents[2] / "dask_enrich" / "data" / "demo_model")


def test_probability_features_equal_the_core(manifest):
    frame = _positions()
    seed = seed_baseline.seed_enrich(frame, manifest.names)
    core, _ = enrich(frame, manifest, config=EnrichConfig(missing="impute"))
    assert list(seed.columns) == list(manifest.names)
    assert len(seed) == len(frame)
    for name in PROBABILITY:  # rows are in the same (gene, position) order in both
        np.testing.assert_allclose(seed[name].to_numpy(), core[name].to_numpy(), rtol=1e-12,
                                   atol=0, err_msg=name)


def test_probability_by_hand():
    frame = pd.DataFrame({"gene_id": ["g"], "position": [5], "donor_score": [0.5],
                          "acceptor_score": [0.25], "neither_score": [0.25]})
    out = seed_baseline.SeedEnricher(["relative_donor_probability", "probability_entropy"]
                                     ).probability_features(frame)
    assert out["relative_donor_probability"].iloc[0] == pytest.approx(0.5 / 0.75)
    entropy = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))
    assert out["probability_entropy"].iloc[0] == pytest.approx(entropy)


def test_context_is_taken_from_neighbouring_rows_as_the_seed_did():
    # positions 10, 20, 1000 are far apart: the seed still calls row 0 the -1 neighbour of row 1
    frame = pd.DataFrame({"gene_id": ["g"] * 3, "position": [10, 20, 1000],
                          "donor_score": [0.2, 0.6, 0.1], "acceptor_score": [0.01, 0.02, 0.03],
                          "neither_score": [0.79, 0.38, 0.87]})
    names = ["donor_diff_m1", "donor_diff_p1", "donor_is_local_peak", "context_score_m1",
             "3mer_AAA", "gene_length"]
    out = seed_baseline.seed_enrich(frame, names)
    assert out["donor_diff_m1"].tolist() == pytest.approx([0.2, 0.4, -0.5])
    assert out["donor_diff_p1"].tolist() == pytest.approx([-0.4, 0.5, 0.1])
    assert out["donor_is_local_peak"].tolist() == [0, 1, 0]
    assert out["context_score_m1"].tolist() == pytest.approx([0.0, 0.2, 0.6])
    assert out["3mer_AAA"].tolist() == [0.0, 0.0, 0.0]  # zero-filled, as the seed did
    assert out["gene_length"].tolist() == [10000] * 3  # the seed's made-up default


def test_genes_are_processed_one_by_one_and_concatenated(manifest):
    frame = _positions(n_genes=4)
    out = seed_baseline.seed_enrich(frame, manifest.names)
    per_gene = [seed_baseline.SeedEnricher(manifest.names).generate_features_for_uncertain_positions(
        frame[frame["gene_id"] == g], g) for g in frame["gene_id"].unique()]
    pd.testing.assert_frame_equal(out, pd.concat(per_gene, ignore_index=True))


def test_verbatim_harmonisation_gives_the_same_frame(manifest):
    frame = _positions(n_genes=3)
    pd.testing.assert_frame_equal(seed_baseline.seed_enrich(frame, manifest.names),
                                  seed_baseline.seed_enrich(frame, manifest.names, verbatim=True))

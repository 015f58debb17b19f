"""The seed-compatible API: same names and call shapes, training formulas, impute by default."""
import json
import logging

import numpy as np
import pandas as pd
import pytest

import dask_enrich
from dask_enrich.errors import InputError

from .features.test_scores import reference_row


@pytest.fixture
def gene_positions():
    rng = np.random.default_rng(5)
    p = rng.dirichlet([1, 1, 1], 6)
    frame = pd.DataFrame({"position": [120, 101, 150, 133, 170, 160], "donor_score": p[:, 0],
                          "acceptor_score": p[:, 1], "neither_score": p[:, 2]},
                         index=[9, 3, 7, 1, 0, 4])
    for c in ("m2", "m1", "p1", "p2"):
        frame[f"context_score_{c}"] = rng.random(6)
    return frame


def test_top_level_names_exist():
    for name in ("InferenceFeatureConfig", "OptimizedInferenceEnricher", "create_optimized_enricher"):
        assert hasattr(dask_enrich, name)
    config = dask_enrich.InferenceFeatureConfig()
    for field in ("use_cache", "cache_dir", "verbose", "include_probability_features",
                  "include_genomic_features", "include_kmer_features", "include_context_features"):
        assert hasattr(config, field)


def test_returns_exactly_the_manifest_columns_aligned_with_input(gene_positions, model_dir, caplog):
    enricher = dask_enrich.create_optimized_enricher(verbose=False)
    with caplog.at_level(logging.WARNING, logger="dask_enrich"):
        out = enricher.generate_features_for_uncertain_positions(gene_positions, "AT1G01010", model_dir)
    names = dask_enrich.load_manifest(model_dir).names
    assert list(out.columns) == list(names)
    assert out.index.equals(gene_positions.index)
    for i in range(len(gene_positions)):
        row = gene_positions.iloc[i]
        ref = reference_row(*row[["donor_score", "acceptor_score", "neither_score", "context_score_m2",
                                  "context_score_m1", "context_score_p1", "context_score_p2"]])
        for name, value in ref.items():
            assert out[name].iloc[i] == pytest.approx(value, rel=1e-12, abs=1e-12)
    # no genome or annotation was configured: those features are imputed, with one warning naming them
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gc_content" in warnings[0].getMessage()
    stats = model_dir / "feature_stats.json"
    median = json.loads(stats.read_text())["3mer_AAA"]["median"] if stats.exists() else 0
    assert (out["3mer_AAA"] == round(median)).all()  # training median, else the documented 0


def test_switched_off_groups_are_imputed_not_computed(gene_positions, model_dir):
    enricher = dask_enrich.create_optimized_enricher(verbose=False, include_probability_features=False)
    enricher.load_feature_manifest(model_dir / "train.features.json")
    out = enricher.generate_features_for_uncertain_positions(gene_positions, "G")
    assert (out.splice_probability == 0).all()
    assert (out.donor_score == gene_positions.donor_score).all()


def test_needs_a_manifest(gene_positions):
    with pytest.raises(InputError, match="no manifest"):
        dask_enrich.OptimizedInferenceEnricher().generate_features_for_uncertain_positions(
            gene_positions, "G")

"""The seed-compatible API: same names and call shapes, training formulas, impute by default."""
import json
from pathlib import Path
import logging

import numpy as np
import pandas as pd
import pytest

import dask_enrich
from dask_enrich.errors import InputError

from .engine.conftest import slice_cache  # noqa: F401  (the slice genomic cache)
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


# --- a track for context (issue 15) ----------------------------------------------------------------
DEMO_TRACK = Path(dask_enrich.__file__).parent / "data" / "demo_track.parquet"


def _uncertain_rows(track: pd.DataFrame, gene: str) -> pd.DataFrame:
    """Positions of one gene as the seed's callers pass them: no gene_id, no context columns."""
    rows = track[track["gene_id"] == gene]
    picked = rows[(rows["donor_score"] > 0.01) | (rows["acceptor_score"] > 0.01)]
    picked = pd.concat([picked, rows.iloc[[0, 1, len(rows) // 2, -2, -1]]])  # gene ends: zeros
    return picked.drop(columns=["gene_id"]).set_index(np.arange(len(picked))[::-1] * 2 + 1)


@pytest.mark.parametrize("given", ["config_frame", "call_path", "call_gene_frame"])
def test_with_a_track_context_equals_enrich(given, model_dir, slice_cache, caplog):
    """With a track (in the config or per call; a frame or a path; the whole track or just the
    gene's rows) the seed API computes the context features from neighbouring nucleotides and
    equals ``enrich()`` with the same track, row for row; nothing is imputed, no warning."""
    track = pd.read_parquet(DEMO_TRACK)
    gene = "AT1G01020"  # minus strand: the offsets run against the genomic coordinates
    positions = _uncertain_rows(track, gene)
    assert len(positions) > 20
    config, call = {}, {}
    if given == "config_frame":
        config["track"] = track
    elif given == "call_path":
        call["track"] = str(DEMO_TRACK)
    else:
        call["track"] = track[track["gene_id"] == gene].drop(columns="gene_id")
    enricher = dask_enrich.create_optimized_enricher(verbose=False, cache_dir=slice_cache, **config)
    enricher.load_feature_manifest(model_dir)
    with caplog.at_level(logging.WARNING, logger="dask_enrich"):
        out = enricher.generate_features_for_uncertain_positions(positions, gene, **call)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    from dask_enrich.genome.cache import GenomicCache

    expected, report = dask_enrich.enrich(positions.assign(gene_id=gene), dask_enrich.load_manifest(model_dir),
                                          genomic=GenomicCache.open(slice_cache), track=track,
                                          config=dask_enrich.EnrichConfig(missing="error"))
    assert not report.imputed
    pd.testing.assert_frame_equal(out, expected[list(out.columns)])
    # the context really came from the track: a gene-end row has a zero outside the gene
    assert (out["context_score_m1"] > 0).any() and out.index.equals(positions.index)


def test_without_a_track_context_is_imputed_with_one_warning(model_dir, slice_cache, caplog):
    positions = _uncertain_rows(pd.read_parquet(DEMO_TRACK), "AT1G01020")
    enricher = dask_enrich.create_optimized_enricher(verbose=False, cache_dir=slice_cache)
    enricher.load_feature_manifest(model_dir)
    with caplog.at_level(logging.WARNING, logger="dask_enrich"):
        out = enricher.generate_features_for_uncertain_positions(positions, "AT1G01020")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "context_score_m1" in warnings[0] and "gc_content" not in warnings[0]
    assert out["context_score_m1"].nunique() == 1


def test_a_bad_track_row_is_refused_naming_the_track(model_dir, tmp_path):
    track = pd.read_parquet(DEMO_TRACK)
    positions = _uncertain_rows(track, "AT1G01020")
    bad = track.copy()
    bad.loc[bad.index[bad["gene_id"] == "AT1G01020"][3], "donor_score"] = 1.5
    path = tmp_path / "track.parquet"
    bad.to_parquet(path)
    enricher = dask_enrich.create_optimized_enricher(verbose=False, track=str(path))
    enricher.load_feature_manifest(model_dir)
    with pytest.raises(InputError, match=r"track file /.*track.parquet: 1 bad row(?s:.*)score_above_one(?s:.*)Fix the track"):
        enricher.generate_features_for_uncertain_positions(positions, "AT1G01020")
    with pytest.raises(InputError, match="missing required column.*acceptor_score"):
        enricher.generate_features_for_uncertain_positions(
            positions, "AT1G01020", track=track.drop(columns="acceptor_score"))


def test_an_empty_track_leaves_the_context_missing(model_dir):
    """A track without rows (it crashed the grouping): every row's context is missing, imputed."""
    positions = _uncertain_rows(pd.read_parquet(DEMO_TRACK), "AT1G01020")
    empty = pd.read_parquet(DEMO_TRACK).iloc[:0]
    enricher = dask_enrich.create_optimized_enricher(verbose=False, track=empty)
    enricher.load_feature_manifest(model_dir)
    out = enricher.generate_features_for_uncertain_positions(positions, "AT1G01020")
    assert len(out) == len(positions) and out["context_score_m1"].nunique() == 1

"""Meta-model scoring in the engine's pass (issue 9): the written meta scores are the model's own
predict_proba (XGBoost's booster, called here directly) on the features the pure core computes for
the same rows, across partitions and 2 worker processes; selective mode covers every track
position exactly once."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.engine.models import ScoreOptions
from dask_enrich.errors import ConfigError
from dask_enrich.genome.cache import load_cached
from dask_enrich.manifest import load_manifest

from .conftest import MODEL_DIR, full_track, positions_in_genes

xgb = pytest.importorskip("xgboost")
KEEP = EnrichConfig(keep_columns=("row_id",))
CLASSES = ("neither", "donor", "acceptor")  # the demo model's model.json order


def _booster_proba(features: pd.DataFrame) -> pd.DataFrame:
    """The model's own predict_proba: the booster file loaded here, columns in model.json order."""
    descriptor = json.loads((MODEL_DIR / "model.json").read_text())
    assert tuple(descriptor["classes"]) == CLASSES
    booster = xgb.Booster()
    booster.load_model(str(MODEL_DIR / "model.ubj"))
    names = list(load_manifest(MODEL_DIR).names)
    proba = booster.predict(xgb.DMatrix(features[names].to_numpy(np.float64), feature_names=names))
    return pd.DataFrame({f"{c}_meta": proba[:, i] for i, c in enumerate(CLASSES)})


def _read(out) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in writer.part_files(str(out))], ignore_index=True)


def test_engine_scores_equal_the_models_predict_proba(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    positions = positions_in_genes(cache.gene_table, 6_000, seed=4)
    positions = positions.drop_duplicates(["gene_id", "position"]).reset_index(drop=True)
    positions.to_parquet(tmp_path / "positions.parquet", row_group_size=2_000)  # 3 input parts
    summary = run_enrichment(str(tmp_path / "positions.parquet"), MODEL_DIR, str(tmp_path / "out"),
                             cache=slice_cache, config=KEEP, partition_rows=1_000, client=client,
                             score=ScoreOptions())
    assert summary.partitions >= 5 and summary.rows_written == len(positions)
    got = _read(tmp_path / "out").sort_values("row_id").reset_index(drop=True)
    assert list(got.columns) == ["gene_id", "position", "row_id", "donor_meta", "acceptor_meta",
                                 "neither_meta"]
    features, _ = enrich(positions, load_manifest(MODEL_DIR), genomic=cache, config=KEEP)
    want = _booster_proba(features)
    for column in want:
        np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=1e-6,
                                   atol=1e-7)
    assert np.allclose(got[["donor_meta", "acceptor_meta", "neither_meta"]].sum(axis=1), 1.0)
    success = json.loads((tmp_path / "out" / writer.SUCCESS_FILE).read_text())
    assert success["model"]["format"] == "xgboost" and len(success["model"]["fingerprint"]) == 64
    again = run_enrichment(str(tmp_path / "positions.parquet"), MODEL_DIR, str(tmp_path / "out"),
                           cache=slice_cache, config=KEEP, partition_rows=1_000, client=client,
                           score=ScoreOptions(), mode="resume")
    assert again.partitions_resumed == again.partitions == summary.partitions

    # --keep-features: the features as well, equal to the core's; another fingerprint than above
    run_enrichment(str(tmp_path / "positions.parquet"), MODEL_DIR, str(tmp_path / "kept"),
                   cache=slice_cache, config=KEEP, partition_rows=2_000, client=client,
                   score=ScoreOptions(keep_features=True))
    kept = _read(tmp_path / "kept").sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[list(features.columns)], features, check_exact=True)
    np.testing.assert_allclose(kept["donor_meta"], want["donor_meta"], rtol=1e-6, atol=1e-7)
    other = json.loads((tmp_path / "kept" / writer.SUCCESS_FILE).read_text())
    assert other["fingerprint"] != success["fingerprint"]


def test_selective_mode_covers_every_track_position_once(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    genes = cache.gene_table.iloc[::40]  # 10 real genes, both strands
    track = full_track(genes, seed=5)
    track.to_parquet(tmp_path / "track.parquet", row_group_size=5_000)
    summary = run_enrichment(None, MODEL_DIR, str(tmp_path / "out"), track=str(tmp_path / "track.parquet"),
                             cache=slice_cache, partition_rows=4_000, client=client,
                             score=ScoreOptions(selective=True))
    got = _read(tmp_path / "out")
    assert summary.rows_in == summary.rows_written == len(track) and summary.partitions > 2
    # every track position exactly once
    assert not got.duplicated(["gene_id", "position"]).any() and len(got) == len(track)
    got = got.set_index(["gene_id", "position"]).loc[
        pd.MultiIndex.from_frame(track[["gene_id", "position"]])].reset_index()
    # re-scored exactly where the band rule (by hand) calls a position uncertain
    top = np.maximum(track["donor_score"], track["acceptor_score"])
    uncertain = ((top >= 0.02) & (top < 0.80)).to_numpy()
    assert 0 < uncertain.sum() < len(track)
    np.testing.assert_array_equal(got["rescored"].to_numpy(), uncertain)
    for base in ("donor", "acceptor", "neither"):
        np.testing.assert_array_equal(got[f"{base}_score"], track[f"{base}_score"])
        np.testing.assert_array_equal(got.loc[~uncertain, f"{base}_meta"],
                                      track.loc[~uncertain, f"{base}_score"])
    # where uncertain: the model's own predict_proba of the core's features (context from the track)
    rows = track[uncertain].reset_index(drop=True)
    features, _ = enrich(rows, load_manifest(MODEL_DIR), genomic=cache, track=track)
    want = _booster_proba(features)
    for column in want:
        np.testing.assert_allclose(got.loc[uncertain, column].to_numpy(), want[column].to_numpy(),
                                   rtol=1e-6, atol=1e-7)


def test_selective_mode_keeps_the_columns_asked_for(client, slice_cache, tmp_path):
    """--keep-columns in selective mode: each track row's own value, next to its scores."""
    cache = load_cached(slice_cache)
    track = full_track(cache.gene_table.iloc[::80], seed=6)
    track["row_id"] = np.arange(len(track), dtype=np.int64)
    track.to_parquet(tmp_path / "track.parquet", row_group_size=4_000)
    run_enrichment(None, MODEL_DIR, str(tmp_path / "out"), track=str(tmp_path / "track.parquet"),
                   cache=slice_cache, partition_rows=3_000, client=client, config=KEEP,
                   score=ScoreOptions(selective=True))
    got = _read(tmp_path / "out")
    assert list(got.columns[:3]) == ["gene_id", "position", "row_id"]
    got = got.sort_values("row_id").reset_index(drop=True)
    np.testing.assert_array_equal(got["row_id"], np.arange(len(track)))
    np.testing.assert_array_equal(got["position"], track["position"])
    for f in writer.part_files(str(tmp_path / "out")):  # the declared schema has the column too
        assert pd.read_parquet(f).dtypes["row_id"] == np.int64


def test_score_refusals(tmp_path):
    positions = tmp_path / "p.parquet"
    pd.DataFrame({"gene_id": ["g"], "position": [1], "donor_score": [0.5], "acceptor_score": [0.1],
                  "neither_score": [0.4]}).to_parquet(positions)
    with pytest.raises(ConfigError, match="--track without --positions"):
        run_enrichment(str(positions), MODEL_DIR, str(tmp_path / "o"), score=ScoreOptions(selective=True))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(MODEL_DIR / "feature_manifest.csv", bare)
    with pytest.raises(ConfigError, match="model.json"):
        run_enrichment(str(positions), bare, str(tmp_path / "o"), score=ScoreOptions())
    assert not (tmp_path / "o").exists()  # refused before any work


def test_selective_quarantine_writes_each_good_track_row_once(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    track = full_track(cache.gene_table.iloc[[3, 50]], seed=6)
    top = np.maximum(track["donor_score"], track["acceptor_score"])
    uncertain = np.flatnonzero(((top >= 0.02) & (top < 0.80)).to_numpy())
    track = pd.concat([track, track.iloc[[uncertain[0]]]], ignore_index=True)  # a repeated row
    track.to_parquet(tmp_path / "track.parquet")
    summary = run_enrichment(None, MODEL_DIR, str(tmp_path / "out"), track=str(tmp_path / "track.parquet"),
                             cache=slice_cache, client=client, on_bad_rows="quarantine",
                             score=ScoreOptions(selective=True))
    got = _read(tmp_path / "out")
    assert summary.rows_rejected == 1 and summary.rows_written == len(track) - 1 == len(got)
    assert summary.rows_in == len(track)
    assert not got.duplicated(["gene_id", "position"]).any()
    assert got["rescored"].sum() == len(uncertain)


def test_selective_mode_checks_every_track_row_not_only_the_uncertain_ones(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    track = full_track(cache.gene_table.iloc[[3, 50]], seed=7)
    top = np.maximum(track["donor_score"], track["acceptor_score"]).to_numpy()
    # a confident nucleotide whose neighbours (+-2) are confident too: no uncertain row needs its
    # score as context, so rejecting it leaves every uncertain row's context complete
    calm = np.convolve((top < 0.02) | (top >= 0.80), np.ones(5), mode="same") == 5
    confident = np.flatnonzero(calm)
    assert len(confident) >= 2
    bad = track.iloc[[confident[0]]].assign(donor_score=1.5)         # not uncertain, but invalid
    track = track.drop(index=track.index[confident[0]])
    track = pd.concat([track, bad, track.iloc[[confident[1]]]], ignore_index=True)  # + a repeat
    track.to_parquet(tmp_path / "track.parquet")
    summary = run_enrichment(None, MODEL_DIR, str(tmp_path / "out"), track=str(tmp_path / "track.parquet"),
                             cache=slice_cache, client=client, on_bad_rows="quarantine",
                             score=ScoreOptions(selective=True))
    got = _read(tmp_path / "out")
    assert summary.rows_in == len(track) and summary.rows_rejected == 2
    assert summary.rows_written == len(got) == len(track) - 2
    assert not got.duplicated(["gene_id", "position"]).any()
    reasons = pd.read_parquet(tmp_path / "out" / "_rejected")["reason"].str.split(":").str[0]
    assert sorted(reasons) == ["duplicate_position", "score_above_one"]

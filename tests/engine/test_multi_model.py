"""Several models in one pass (issue 10): one enrichment of each partition with the union of the
manifests, written to OUT/<model-name>/ per model, must give exactly the files two separate runs
give (data, part records, fingerprints, imputed counts), each model imputing with its own medians."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dask_enrich.cli import main
from dask_enrich.config import EnrichConfig
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.engine.models import expand_manifests
from dask_enrich.errors import ConfigError
from dask_enrich.genome.cache import load_cached

from .conftest import MODEL_DIR, positions_in_genes

SMALL = ["donor_score", "acceptor_score", "neither_score", "probability_entropy", "context_max",
         "gc_content", "gene_length", "num_exons", "6mer_GTAAGT", "6mer_TTTCAG", "3mer_GTA"]
#: Medians unlike the demo model's (context_max 2.4e-6, gene_length 2731): each model must impute
#: with its own.
SMALL_STATS = {"context_max": {"median": 0.25}, "gene_length": {"median": 1234.0}}
IMPUTE = EnrichConfig(keep_columns=("row_id",), missing="impute")


def _small_model(root) -> str:
    path = root / "small6"
    path.mkdir()
    (path / "feature_manifest.csv").write_text("feature\n" + "\n".join(SMALL) + "\n")
    (path / "feature_stats.json").write_text(json.dumps(SMALL_STATS))
    return str(path)


def _positions(cache, n: int) -> pd.DataFrame:
    positions = positions_in_genes(cache.gene_table, n, seed=7)
    positions["chrom"] = "NC_003070.9"
    # a missing context score: the context features of those rows are imputed
    positions.loc[positions.index[::97], "context_score_m1"] = np.nan
    return positions.drop_duplicates(["gene_id", "position"]).reset_index(drop=True)


def _assert_same_dataset(got, want) -> None:
    """Same part files with equal tables and equal footer records; equal _SUCCESS facts."""
    got_files, want_files = writer.part_files(str(got)), writer.part_files(str(want))
    assert [f.rsplit("/", 1)[1] for f in got_files] == [f.rsplit("/", 1)[1] for f in want_files]
    for g, w in zip(got_files, want_files):
        tg, tw = pq.read_table(g), pq.read_table(w)
        assert tg.schema.equals(tw.schema, check_metadata=False)
        assert tg.equals(tw)
        assert (json.loads(tg.schema.metadata[writer.META_KEY])
                == json.loads(tw.schema.metadata[writer.META_KEY]))
    sg = json.loads((got / writer.SUCCESS_FILE).read_text())
    sw = json.loads((want / writer.SUCCESS_FILE).read_text())
    for key in ("fingerprint", "rows", "imputed", "imputed_reasons", "manifest", "inputs", "settings"):
        assert sg[key] == sw[key], key


def test_two_models_in_one_pass_equal_two_separate_runs(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    small = _small_model(tmp_path)
    positions = _positions(cache, 5_000)
    positions.to_parquet(tmp_path / "positions.parquet", row_group_size=2_500)
    common = dict(cache=slice_cache, config=IMPUTE, partition_rows=1_500, client=client)
    summary = run_enrichment(str(tmp_path / "positions.parquet"), [MODEL_DIR, small],
                             str(tmp_path / "both"), **common)
    run_enrichment(str(tmp_path / "positions.parquet"), MODEL_DIR, str(tmp_path / "one"), **common)
    run_enrichment(str(tmp_path / "positions.parquet"), small, str(tmp_path / "two"), **common)
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == [
        writer.SUCCESS_FILE, "demo_model", "small6"]
    # OUT/_SUCCESS.json, written last, names each model's dataset and the run's counts
    top = json.loads((tmp_path / "both" / writer.SUCCESS_FILE).read_text())
    assert sorted(top["models"]) == ["demo_model", "small6"]
    for name, model in top["models"].items():
        own = json.loads((tmp_path / "both" / model["dir"] / writer.SUCCESS_FILE).read_text())
        assert model["fingerprint"] == own["fingerprint"] and own["manifest"]["name"] == name
    assert top["rows"] == {"in": len(positions), "written": len(positions), "rejected": 0}
    assert summary.rows_written == len(positions) and summary.partitions > 3
    _assert_same_dataset(tmp_path / "both" / "demo_model", tmp_path / "one")
    _assert_same_dataset(tmp_path / "both" / "small6", tmp_path / "two")

    # each model imputed the missing context with its own medians, and has its own columns
    demo = pd.read_parquet(tmp_path / "both" / "demo_model").sort_values("row_id")
    mine = pd.read_parquet(tmp_path / "both" / "small6").sort_values("row_id")
    unknown_demo = demo["row_id"].isin(positions.loc[positions["context_score_m1"].isna(), "row_id"])
    unknown_mine = mine["row_id"].isin(positions.loc[positions["context_score_m1"].isna(), "row_id"])
    assert unknown_mine.sum() == positions["context_score_m1"].isna().sum() > 10
    assert (mine.loc[unknown_mine, "context_max"] == 0.25).all()
    assert (demo.loc[unknown_demo, "context_max"] == json.loads(
        (MODEL_DIR / "feature_stats.json").read_text())["context_max"]["median"]).all()
    success = json.loads((tmp_path / "both" / "small6" / writer.SUCCESS_FILE).read_text())
    assert set(success["imputed"]) == {"context_max"}  # only this model's imputed features
    assert list(mine.columns) == ["gene_id", "position", "chrom", "row_id", *SMALL]
    assert "chrom_name" in demo.columns and "chrom" in demo.columns  # the demo model encodes chrom
    # known genes: the shared features are the same values in both datasets
    known = demo[~unknown_demo].sort_values("row_id").reset_index(drop=True)
    known_mine = mine[~unknown_mine].sort_values("row_id").reset_index(drop=True)
    np.testing.assert_array_equal(known["context_max"], known_mine["context_max"])
    np.testing.assert_array_equal(known["gene_length"], known_mine["gene_length"])
    np.testing.assert_array_equal(known["3mer_GTA"], known_mine["3mer_GTA"])

    # --resume of the whole pass keeps every complete partition (and rewrites OUT/_SUCCESS.json)
    (tmp_path / "both" / writer.SUCCESS_FILE).write_text('{"stale": true}')
    again = run_enrichment(str(tmp_path / "positions.parquet"), [MODEL_DIR, small],
                           str(tmp_path / "both"), mode="resume", **common)
    assert again.partitions_resumed == again.partitions
    _assert_same_dataset(tmp_path / "both" / "small6", tmp_path / "two")
    assert "models" in json.loads((tmp_path / "both" / writer.SUCCESS_FILE).read_text())
    # verify checks each model's dataset
    assert main(["verify", str(tmp_path / "both")]) == 0
    part = tmp_path / "both" / "small6" / writer.part_name(1)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of a data page
    part.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path / "both")]) == 2


def test_scoring_two_models_and_a_directory_of_models_from_the_cli(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(MODEL_DIR, models / "a3mer")
    shutil.copytree(MODEL_DIR, models / "b3mer")
    (models / "notes").mkdir()  # not a model directory: ignored
    assert [p.name for p in expand_manifests(str(models))[0]] == ["a3mer", "b3mer"]
    positions = positions_in_genes(cache.gene_table, 3_000, seed=8)
    positions = positions.drop_duplicates(["gene_id", "position"]).reset_index(drop=True)
    positions.to_parquet(tmp_path / "positions.parquet")
    address = client.scheduler.address
    args = ["--positions", str(tmp_path / "positions.parquet"), "--cache", slice_cache,
            "--keep-columns", "row_id", "--partition-rows", "1000", "--scheduler", address, "--quiet"]
    assert main(["score", *args, "--manifest", str(models), "--out", str(tmp_path / "both")]) == 0
    assert main(["run", "--score", *args, "--manifest", str(MODEL_DIR), "--out",
                 str(tmp_path / "single")]) == 0
    for name in ("a3mer", "b3mer"):
        got = pd.read_parquet(tmp_path / "both" / name)
        want = pd.read_parquet(tmp_path / "single")
        assert list(got.columns) == ["gene_id", "position", "row_id", "donor_meta", "acceptor_meta",
                                     "neither_meta"]
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        success = json.loads((tmp_path / "both" / name / writer.SUCCESS_FILE).read_text())
        assert success["model"]["model_dir"].endswith(name)


def test_multi_model_refusals(tmp_path):
    positions = tmp_path / "p.parquet"
    pd.DataFrame({"gene_id": ["g"], "position": [1], "donor_score": [0.5], "acceptor_score": [0.1],
                  "neither_score": [0.4]}).to_parquet(positions)
    twin = tmp_path / "x" / "demo_model"
    shutil.copytree(MODEL_DIR, twin)
    with pytest.raises(ConfigError, match="distinct names"):
        run_enrichment(str(positions), [MODEL_DIR, twin], str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="needs --score"):
        main(["run", "--positions", str(positions), "--manifest", str(MODEL_DIR), "--out",
              str(tmp_path / "o"), "--selective", "--debug"])

"""Grouped input enriched where it is read gives the same datasets as the staged exchange, in every
mode that reaches the engine's per-bin step: meta-model scoring, several models in one pass, and
selective re-scoring of a full track."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.engine.models import ScoreOptions
from dask_enrich.genome.cache import load_cached

from .conftest import MODEL_DIR, follows_input, full_track, positions_in_genes, write_grouped

pytest.importorskip("xgboost")
KEEP = EnrichConfig(keep_columns=("row_id",))


def _rows(out: Path) -> pd.DataFrame:
    frame = pd.concat(pd.read_parquet(f) for f in writer.part_files(str(out)))
    return frame.sort_values(["gene_id", "position"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("mode", ["score", "two_models", "selective"])
def test_enriched_where_read_equals_the_exchange(client, slice_cache, tmp_path, mode):
    cache = load_cached(slice_cache)
    kwargs = dict(cache=slice_cache, partition_rows=1_500, client=client)
    if mode == "selective":
        track = full_track(cache.gene_table.iloc[::40], seed=9)
        track["row_id"] = np.arange(len(track), dtype=np.int64)
        write_grouped(track, tmp_path / "in", files=3)
        source, positions = str(tmp_path / "in"), None
        kwargs.update(track=source, config=KEEP, score=ScoreOptions(selective=True))
        manifest, datasets = MODEL_DIR, [""]
    else:
        frame = positions_in_genes(cache.gene_table, 4_000, seed=10)
        frame = frame.drop_duplicates(["gene_id", "position"]).reset_index(drop=True)
        write_grouped(frame, tmp_path / "in", files=3)
        positions = str(tmp_path / "in")
        if mode == "score":
            kwargs.update(config=KEEP, score=ScoreOptions(keep_features=True))
            manifest, datasets = MODEL_DIR, [""]
        else:
            small = tmp_path / "small"
            shutil.copytree(MODEL_DIR, small)
            manifest, datasets = [MODEL_DIR, small], ["demo_model", "small"]
            kwargs.update(config=KEEP.with_(missing="impute"))
    run_enrichment(positions, manifest, str(tmp_path / "auto"), **kwargs)
    run_enrichment(positions, manifest, str(tmp_path / "staged"), exchange_method="staged", **kwargs)
    for name in datasets:
        auto, staged = tmp_path / "auto" / name, tmp_path / "staged" / name
        assert follows_input(auto) and not follows_input(staged)
        got, want = _rows(auto), _rows(staged)
        assert len(got) > 1_000
        pd.testing.assert_frame_equal(got, want, check_exact=True)

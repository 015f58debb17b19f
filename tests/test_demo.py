"""The bundled demo runs end to end on its real data and writes every selected position once."""
import json

import pandas as pd

from dask_enrich import demo
from dask_enrich.manifest import load_manifest


def test_demo_enriches_every_uncertain_track_position(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    summary = demo.run_demo(tmp_path / "out", workers=1, log=lambda m: None)
    track = pd.read_parquet(demo.TRACK)
    top = track[["donor_score", "acceptor_score"]].max(axis=1)
    selected = track[(top >= 0.02) & (top < 0.80)]  # the documented band rule, by hand
    out = pd.read_parquet(tmp_path / "out")
    assert summary.rows_written == len(out) == len(selected)
    assert sorted(zip(out.gene_id, out.position)) == sorted(zip(selected.gene_id, selected.position))
    names = list(load_manifest(demo.MODEL_DIR).names)
    assert [c for c in out.columns if c in set(names)] == names
    success = json.loads((tmp_path / "out" / "_SUCCESS.json").read_text())
    assert success["imputed"] == {} and success["rows"]["rejected"] == 0
    assert "gc_content" in demo.preview(tmp_path / "out")

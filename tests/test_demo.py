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


def test_scored_demo_reports_agreement_on_held_out_genes(tmp_path, monkeypatch):
    from dask_enrich.basemodel.sites import site_flags, sites_on_scored_nucleotide, topk_accuracy
    from dask_enrich.genome.gtf import read_gtf

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    demo.run_demo(tmp_path / "out", workers=1, log=lambda m: None, score=True)
    table = demo.agreement(tmp_path / "out").set_index("site")
    # the base column, recomputed straight from the bundled track and a fresh parse of the GTF
    held_out = demo._held_out()
    track = pd.read_parquet(demo.TRACK)
    track = track[track.gene_id.isin(held_out)]
    annotation = read_gtf(demo.ANNOTATION)
    sites = sites_on_scored_nucleotide(annotation.splice_sites, annotation.genes.set_index("gene_id").strand)
    flags = site_flags(track, sites)
    for kind in ("donor", "acceptor"):
        assert table.loc[kind, "annotated sites"] == flags[kind].sum() > 0
        assert table.loc[kind, "top-k base (SpliceAI)"] == topk_accuracy(
            track[f"{kind}_score"].to_numpy(), flags[kind])
        assert 0 <= table.loc[kind, "top-k with meta scores"] <= 1

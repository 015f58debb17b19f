"""The example plugin on the real Arabidopsis slice, against a slow per-row reference."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich.errors import MissingFeatureError
from dask_enrich.features import plugins
from dask_enrich.genome.cache import build_cache
from dask_enrich.manifest import manifest_from_names

from ..conftest import SLICE_GTF

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "examples" / "nearest_site_plugin"
NAMES = ["distance_to_nearest_donor", "distance_to_nearest_acceptor", "donor_score"]


@pytest.fixture(scope="module")
def plugin():
    sys.path.insert(0, str(PLUGIN_DIR))
    import nearest_site_plugin

    nearest_site_plugin.register()
    yield nearest_site_plugin
    for name in nearest_site_plugin.NAMES:
        plugins.unregister(name)
    sys.path.remove(str(PLUGIN_DIR))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_cache(None, SLICE_GTF, tmp_path_factory.mktemp("annotation_cache"))


def test_distances_match_a_per_row_reference(plugin, cache):
    genes = cache.gene_table
    rng = np.random.default_rng(4)
    picked = genes.sample(30, random_state=2)
    frame = pd.DataFrame({
        "gene_id": np.repeat(picked.index.to_numpy(), 20),
        "position": np.concatenate([rng.integers(g.gene_start, g.gene_end + 1, 20)
                                    for _, g in picked.iterrows()]),
        "donor_score": 0.3, "acceptor_score": 0.3, "neither_score": 0.4})
    out, report = enrich(frame, manifest_from_names(NAMES), genomic=cache,
                         config=EnrichConfig(missing="impute"))
    sites = cache.splice_sites
    for i, row in frame.iterrows():
        for name, kind in plugin.NAMES.items():
            own = sites[(sites.gene_id == row.gene_id) & (sites.site_type == kind)].position
            if len(own):
                assert out.loc[i, name] == (own - row.position).abs().min(), (row.gene_id, name)
    single_exon = [g for g in picked.index if not (sites.gene_id == g).any()]
    assert report.imputed.get("distance_to_nearest_donor", 0) == 20 * len(single_exon)


def test_single_exon_gene_is_missing_not_invented(plugin, cache):
    sites_per_gene = cache.splice_sites.gene_id.value_counts()
    lone = next(g for g in cache.gene_table.index if g not in sites_per_gene.index)
    start = cache.gene_table.loc[lone, "gene_start"]
    frame = pd.DataFrame({"gene_id": [lone], "position": [start], "donor_score": 0.1,
                          "acceptor_score": 0.1, "neither_score": 0.8})
    with pytest.raises(MissingFeatureError, match="nearest_site"):
        enrich(frame, manifest_from_names(NAMES), genomic=cache)

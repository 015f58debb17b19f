"""Example feature plugin: distance in nucleotides to the nearest annotated donor and acceptor.

Installed (``pip install examples/nearest_site_plugin``), it is found through its
``dask_enrich.features`` entry point; a manifest may then name ``distance_to_nearest_donor`` and
``distance_to_nearest_acceptor``. Sites are the annotation's splice sites of the row's own gene
(all transcripts); a gene without a site of that type leaves the row missing (the run's
missing-value policy applies), it is not given an invented distance.
"""
from __future__ import annotations

import numpy as np

from dask_enrich.features.plugins import register_feature
from dask_enrich.features.registry import ANNOTATION

NAMES = {"distance_to_nearest_donor": "donor", "distance_to_nearest_acceptor": "acceptor"}


def nearest_site_distance(inputs, names: list[str]) -> dict[str, np.ndarray]:
    """|position - nearest annotated site of that type in the same gene|, vectorised."""
    sites = inputs.genomic.splice_sites
    out = {}
    for name in names:
        of_type = sites[sites["site_type"] == NAMES[name]]
        codes = inputs.gene_uniques.get_indexer(of_type["gene_id"].astype(str))
        keep = codes >= 0
        key = np.sort((codes[keep].astype(np.int64) << 40) | of_type["position"].to_numpy()[keep])
        row_key = (inputs.gene_codes.astype(np.int64) << 40) | inputs.positions
        right = np.searchsorted(key, row_key)
        best = np.full(len(row_key), np.iinfo(np.int64).max)
        for candidate in (right - 1, right):  # the nearest site is just left or just right
            ok = (candidate >= 0) & (candidate < len(key))
            site = key[np.clip(candidate, 0, max(len(key) - 1, 0))] if len(key) else row_key
            same_gene = ok & ((site >> 40) == (row_key >> 40))
            best = np.where(same_gene, np.minimum(best, np.abs(row_key - site)), best)
        out[name] = np.ma.masked_array(np.where(best == np.iinfo(np.int64).max, 0, best),
                                       mask=best == np.iinfo(np.int64).max)
    return out


def register() -> None:
    """Entry point: declare both features (one kernel computes them together)."""
    for name, site in NAMES.items():
        register_feature(name, kernel=nearest_site_distance, dtype="int64", requires={ANNOTATION},
                         plugin="nearest_site", doc=f"nucleotides to the nearest annotated {site} "
                         "of the row's gene (any transcript)")


__all__ = ["register", "nearest_site_distance"]

"""Annotated splice sites on the base model's nucleotides, and top-k agreement with them.

The spec (FEATURES.md) places an annotated site on the intron side of the junction (plus strand:
donor = exon_end + 1, acceptor = exon_start - 1). SpliceAI scores the exon side: the last exonic
nucleotide for a donor, the first for an acceptor. Measured on the bundled Arabidopsis genes, top-k
agreement is 0.00 at the spec's positions and 0.72 one nucleotide into the exon, so comparisons of
a base-model track with the annotation move each site one nucleotide into the exon.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def sites_on_scored_nucleotide(splice_sites: pd.DataFrame, gene_strand: pd.Series) -> pd.DataFrame:
    """The annotation's sites (gene_id, position, site_type) moved one nucleotide into the exon."""
    strand = splice_sites["gene_id"].map(gene_strand).to_numpy()
    into_exon = np.where(splice_sites["site_type"].to_numpy() == "donor", -1, 1)
    sign = into_exon * np.where(strand == "+", 1, -1)
    return splice_sites.assign(position=splice_sites["position"].to_numpy() + sign)


def site_flags(track: pd.DataFrame, sites: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{'donor': bool array, 'acceptor': bool array}``: track rows that are annotated sites."""
    keys = pd.MultiIndex.from_arrays([track["gene_id"].to_numpy(), track["position"].to_numpy()])
    flags = {}
    for site_type in ("donor", "acceptor"):
        of_type = sites[sites["site_type"] == site_type]
        flags[site_type] = keys.isin(pd.MultiIndex.from_arrays(
            [of_type["gene_id"].to_numpy(), of_type["position"].to_numpy()]))
    return flags


def topk_accuracy(score: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the k highest scores that are true sites, k = number of true sites (ties at the
    k-th score share the remaining places in proportion); NaN without true sites."""
    k = int(truth.sum())
    if k == 0:
        return float("nan")
    threshold = np.partition(score, len(score) - k)[len(score) - k]
    above, tied = score > threshold, score == threshold
    need = k - int(above.sum())
    return float((truth[above].sum() + need * truth[tied].sum() / tied.sum()) / k)

"""Sites moved onto the nucleotide SpliceAI scores, and top-k agreement, worked by hand."""
import numpy as np
import pandas as pd
import pytest

from dask_enrich.basemodel.sites import site_flags, sites_on_scored_nucleotide, topk_accuracy


def test_sites_move_one_nucleotide_into_the_exon_on_both_strands():
    # plus gene: exon 100-200 then 300-400 -> donor 201, acceptor 299 (spec); SpliceAI: 200, 300
    # minus gene: exon 800-900 (first) then 500-600 -> donor 799, acceptor 601; SpliceAI: 800, 600
    sites = pd.DataFrame({"gene_id": ["P", "P", "M", "M"], "position": [201, 299, 799, 601],
                          "site_type": ["donor", "acceptor", "donor", "acceptor"]})
    moved = sites_on_scored_nucleotide(sites, pd.Series({"P": "+", "M": "-"}))
    assert moved.position.tolist() == [200, 300, 800, 600]


def test_site_flags_and_topk():
    track = pd.DataFrame({"gene_id": ["P"] * 5, "position": [198, 199, 200, 300, 301]})
    sites = pd.DataFrame({"gene_id": ["P", "P"], "position": [200, 300], "site_type": ["donor", "acceptor"]})
    flags = site_flags(track, sites)
    assert flags["donor"].tolist() == [False, False, True, False, False]
    score = np.array([0.1, 0.9, 0.8, 0.2, 0.05])
    assert topk_accuracy(score, flags["donor"]) == 0.0       # top-1 is 199, not a site
    assert topk_accuracy(score[::-1], flags["acceptor"][::-1]) == 0.0
    assert topk_accuracy(np.array([0.5, 0.5, 0.1]), np.array([True, False, False])) == pytest.approx(0.5)
    assert np.isnan(topk_accuracy(score, np.zeros(5, dtype=bool)))

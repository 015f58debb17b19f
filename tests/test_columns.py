"""columns.py: the input columns declared once, and every reader and check using that one copy."""
from __future__ import annotations

import pytest

from dask_enrich import columns, core, io, scoring, validate
from dask_enrich.features import registry


def test_the_declaration_by_hand():
    assert columns.POSITION_COLUMNS == ("gene_id", "position", "donor_score", "acceptor_score",
                                        "neither_score")
    assert columns.TRACK_COLUMNS == ("gene_id", "position", "donor_score", "acceptor_score")
    assert columns.CONTEXT_COLUMNS == ("context_score_m2", "context_score_m1", "context_score_p1",
                                       "context_score_p2")
    assert columns.OPTIONAL_COLUMNS == ("neither_score", "chrom", "strand", *columns.CONTEXT_COLUMNS)
    assert columns.required("positions") == columns.POSITION_COLUMNS
    assert columns.required("track") == columns.required("context track") == columns.TRACK_COLUMNS
    assert columns.required("score input") == columns.POSITION_COLUMNS
    with pytest.raises(ValueError, match="kind must be one of positions, track"):
        columns.required("tracks")
    assert columns.ALIASES["donor_prob"] == "donor_score" and columns.ALIASES["chr"] == "chrom"


def test_readers_and_checks_use_the_one_copy():
    """The old names stay importable, and are the same objects (they cannot drift apart)."""
    assert io.POSITION_COLUMNS is core.REQUIRED_COLUMNS is columns.POSITION_COLUMNS
    assert io.TRACK_COLUMNS is columns.TRACK_COLUMNS
    assert io.CONTEXT_COLUMNS is core.CONTEXT_COLUMNS is validate.CONTEXT_COLUMNS is columns.CONTEXT_COLUMNS
    assert io.OPTIONAL_COLUMNS is columns.OPTIONAL_COLUMNS
    assert validate.REQUIRED is columns.REQUIRED and validate.ALIASES is columns.ALIASES
    assert validate.SCORE_COLUMNS is scoring.BASE_COLUMNS is columns.BASE_SCORES
    assert registry.CONTEXT_OFFSETS is columns.CONTEXT_OFFSETS
    # the registry's context features are the context columns, by name
    assert all(registry.lookup(c) is not None for c in columns.CONTEXT_COLUMNS)

"""Uncertain-position selection rules, against by-hand values and a row-by-row reference."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from dask_enrich.errors import ConfigError, InputError
from dask_enrich.selection import (Selection, band_mask, entropy_mask, normalised_entropy,
                                   select_mask, select_uncertain)
from tests.strategies import probabilities, score_rows


def test_band_by_hand():
    donor = np.array([0.02, 0.019, 0.5, 0.80, 0.0, 0.1, np.nan])
    acceptor = np.array([0.0, 0.0, 0.9, 0.0, 0.79, 0.85, 0.5])
    # 0.02 is in (inclusive low), 0.019 out, max 0.9 out, 0.80 out (exclusive high), 0.79 in,
    # max 0.85 out, NaN never selected.
    assert band_mask(donor, acceptor).tolist() == [True, False, False, False, True, False, False]
    assert band_mask(donor, acceptor, 0.0, 0.95).tolist() == [True, True, True, True, True, True, False]


def test_entropy_rule_by_hand():
    d = np.array([0.98, 1 / 3, 0.45, 0.7, 0.0])
    a = np.array([0.01, 1 / 3, 0.40, 0.0, 0.0])
    n = np.array([0.01, 1 / 3, 0.15, 0.3, 1.0])
    # confident; uniform (entropy 1); top-two spread 0.05; top 0.7 < 0.8; certain "neither".
    assert entropy_mask(d, a, n).tolist() == [False, True, True, True, False]
    assert normalised_entropy(d, a, n)[1] == pytest.approx(1.0)
    assert normalised_entropy(d, a, n)[4] == pytest.approx(0.0)
    # (0.45, 0.40, 0.15): entropy 1.0104 / ln 3 = 0.92 > 0.9, so it stays without the other tests.
    assert normalised_entropy(d, a, n)[2] == pytest.approx(-(0.45 * math.log(0.45) + 0.4 * math.log(0.4)
                                                              + 0.15 * math.log(0.15)) / math.log(3))
    assert entropy_mask(d, a, n, max_below=0.4, spread_below=0.0).tolist() == [False, True, True, False, False]
    assert entropy_mask(d, a, n, max_below=0.4, entropy_above=0.95, spread_below=0.0).tolist() == [
        False, True, False, False, False]


def _slow_entropy_rule(d, a, n, max_below, entropy_above, spread_below) -> bool:
    scores = [d, a, n]
    if any(math.isnan(s) for s in scores):
        return False
    total = sum(scores)
    p = [s / total for s in scores] if total > 0 else [1 / 3] * 3
    h = -sum(x * math.log(x) for x in p if x > 0) / math.log(3)
    top, second = sorted(scores, reverse=True)[:2]
    return top < max_below or h > entropy_above or top - second < spread_below


unit = probabilities


@settings(max_examples=200, deadline=None)
@given(score_rows(3, min_size=1, max_size=40), unit, unit, unit)
def test_entropy_rule_matches_row_by_row_reference(rows, max_below, entropy_above, spread_below):
    d, a, n = (np.array(c) for c in zip(*rows))
    got = entropy_mask(d, a, n, max_below, entropy_above, spread_below)
    for i, (x, y, z) in enumerate(rows):
        h = normalised_entropy(d[i:i + 1], a[i:i + 1], n[i:i + 1])[0]
        if abs(h - entropy_above) < 1e-9:
            continue  # rounding at the threshold itself
        assert got[i] == _slow_entropy_rule(x, y, z, max_below, entropy_above, spread_below)


@settings(max_examples=200, deadline=None)
@given(score_rows(2, min_size=1, max_size=40), unit, unit)
def test_band_matches_row_by_row_reference(rows, low, width):
    high = low + width + 1e-6
    d, a = (np.array(c) for c in zip(*rows))
    assert band_mask(d, a, low, high).tolist() == [low <= max(x, y) < high for x, y in rows]


def test_select_keeps_order_and_index_and_checks_columns():
    frame = pd.DataFrame({"donor_score": [0.5, 0.9, 0.03], "acceptor_score": [0.0, 0.0, 0.0],
                          "neither_score": [0.5, 0.1, 0.97]}, index=[10, 11, 12])
    assert select_uncertain(frame).index.tolist() == [10, 12]
    assert select_mask(frame, Selection("band", low=0.6, high=1.0)).tolist() == [False, True, False]
    with pytest.raises(InputError, match="neither_score"):
        select_mask(frame.drop(columns="neither_score"), Selection("entropy"))


def test_selection_validation():
    with pytest.raises(ConfigError):
        Selection("top")
    with pytest.raises(ConfigError):
        Selection("band", low=0.5, high=0.5)
    with pytest.raises(ConfigError):
        Selection("entropy", entropy_above=1.5)
    assert "0.02 <= max(donor, acceptor) < 0.8" in Selection().describe()

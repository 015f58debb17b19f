"""Score-derived formulas against an independent row-by-row reference written from the spec."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dask_enrich.features import registry
from dask_enrich.features.scores import SCORE_FEATURES, score_features
from tests.strategies import probabilities, score_rows

EPS = 1e-10


def reference_row(d, a, n, m2, m1, p1, p2):
    """Every score-derived feature of one row, in plain Python, straight from FEATURES.md."""
    mean4 = (m2 + m1 + p1 + p2) / 4
    max4 = max(m2, m1, p1, p2)
    r = {
        "donor_score": d, "acceptor_score": a, "neither_score": n,
        "relative_donor_probability": d / (d + a + EPS),
        "splice_probability": (d + a) / (d + a + n + EPS),
        "donor_acceptor_diff": (d - a) / (max(d, a) + EPS),
        "splice_neither_diff": (max(d, a) - n) / (max(d, a, n) + EPS),
        "donor_acceptor_logodds": math.log(d + EPS) - math.log(a + EPS),
        "splice_neither_logodds": math.log(d + a + EPS) - math.log(n + EPS),
        "probability_entropy": -sum(p * math.log(p + EPS) for p in (d, a, n)),
        "context_score_m2": m2, "context_score_m1": m1, "context_score_p1": p1, "context_score_p2": p2,
        "context_neighbor_mean": mean4,
        "context_asymmetry": (m1 + m2) - (p1 + p2),
        "context_max": max4,
        "score_difference_ratio": (d - a) / (d + a + EPS),
    }
    for t, s in (("donor", d), ("acceptor", a)):
        r[f"{t}_diff_m1"] = s - m1
        r[f"{t}_diff_m2"] = s - m2
        r[f"{t}_diff_p1"] = s - p1
        r[f"{t}_diff_p2"] = s - p2
        r[f"{t}_surge_ratio"] = s / (m1 + p1 + EPS)
        r[f"{t}_is_local_peak"] = 1 if (s > m1 and s > p1 and s > 1e-3) else 0
        r[f"{t}_weighted_context"] = 0.1 * m2 + 0.2 * m1 + 0.4 * s + 0.2 * p1 + 0.1 * p2
        r[f"{t}_peak_height_ratio"] = s / (mean4 + EPS)
        r[f"{t}_second_derivative"] = (s - m1) - (p1 - s)
        r[f"{t}_signal_strength"] = s - mean4
        r[f"{t}_context_diff_ratio"] = s / (max4 + EPS)
    r["donor_acceptor_peak_ratio"] = r["donor_peak_height_ratio"] / (r["acceptor_peak_height_ratio"] + EPS)
    r["type_signal_difference"] = r["donor_signal_strength"] - r["acceptor_signal_strength"]
    r["signal_strength_ratio"] = r["donor_signal_strength"] / (r["acceptor_signal_strength"] + EPS)
    return r


def compute(rows):
    cols = np.array(rows, dtype=float).T
    d, a, n, m2, m1, p1, p2 = cols
    return score_features(sorted(SCORE_FEATURES), d, a, n, (m2, m1, p1, p2))


def test_reference_covers_every_score_feature_of_the_registry():
    expected = {f.name for f in registry.builtin_features()
                if f.group not in ("sequence", "genomic")}
    assert set(reference_row(*[0.1] * 7)) == expected == set(SCORE_FEATURES)


def test_hand_worked_values():
    out = compute([(0.6, 0.3, 0.1, 0.0, 0.2, 0.1, 0.05)])
    assert out["relative_donor_probability"][0] == pytest.approx(0.6 / 0.9)
    assert out["splice_probability"][0] == pytest.approx(0.9)
    assert out["donor_acceptor_diff"][0] == pytest.approx(0.5)
    assert out["splice_neither_diff"][0] == pytest.approx(0.5 / 0.6)
    assert out["donor_acceptor_logodds"][0] == pytest.approx(math.log(2))
    assert out["context_neighbor_mean"][0] == pytest.approx(0.0875)
    assert out["context_asymmetry"][0] == pytest.approx(0.05)
    assert out["donor_weighted_context"][0] == pytest.approx(0.04 + 0.24 + 0.02 + 0.005)
    assert out["donor_second_derivative"][0] == pytest.approx(0.4 + 0.5)
    assert out["donor_is_local_peak"][0] == 1 and out["acceptor_is_local_peak"][0] == 1


@pytest.mark.parametrize("row", [
    (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0),          # all-zero splice scores and context
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),          # everything zero
    (1e-12, 1e-12, 1.0, 1e-12, 0.0, 0.0, 1e-12),  # near zero
    (0.0009, 0.0, 0.9991, 0.0, 0.0, 0.0, 0.0),    # a peak below the 1e-3 floor
    (0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5),          # ties: not a local peak
])
def test_zero_and_near_zero_scores_match_reference(row):
    out = compute([row])
    ref = reference_row(*row)
    for name, value in ref.items():
        assert np.isfinite(out[name][0]), name
        assert out[name][0] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_local_peak_is_integer_and_respects_threshold():
    out = compute([(0.0011, 0, 0.9989, 0, 0.001, 0.001, 0), (0.001, 0, 0.999, 0, 0, 0, 0)])
    assert out["donor_is_local_peak"].dtype == np.int64
    assert out["donor_is_local_peak"].tolist() == [1, 0]




@settings(max_examples=60, deadline=None)
@given(score_rows(7, min_size=1, max_size=40))
def test_matches_reference_and_is_finite_for_valid_scores(rows):
    out = compute(rows)
    for i, row in enumerate(rows):
        ref = reference_row(*row)
        for name, value in ref.items():
            assert np.isfinite(out[name][i]), name
            assert out[name][i] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, row)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(0, 50), elements=probabilities))
def test_dtypes_are_stable_whatever_the_content(values):
    # contents chosen to hit edges: the spec's x / (y + eps) is 0/0 where y == -eps (a NaN, as in
    # training); this test is about dtypes, so numpy's warning about it is not wanted here
    with np.errstate(invalid="ignore", divide="ignore"):
        out = score_features(sorted(SCORE_FEATURES), values, values[::-1].copy(), 1 - values,
                             (values, values, values, values))
    for name, column in out.items():
        assert column.dtype == registry.lookup(name).dtype, name
        assert len(column) == len(values)


def test_features_stored_uncompressed_are_those_snappy_cannot_shrink():
    """``Feature.compress`` against the data: the score features of the demo track's uncertain
    rows (real SpliceAI scores), each column written with snappy alone. Those declared
    incompressible shrink by less than 10%; every other one by more."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dask_enrich.features.registry import lookup

    from ..test_trackscan import DEMO_TRACK, full_path

    enriched, _ = full_path(DEMO_TRACK)
    assert len(enriched) > 300
    ratios = {}
    for name in enriched.columns:
        feature = lookup(name)
        if feature is None or feature.group == "genomic" or feature.group == "sequence":
            continue
        table = pa.table({name: enriched[name].to_numpy()})
        pq.write_table(table, sink := io.BytesIO(), compression="snappy", use_dictionary=False)
        column = pq.ParquetFile(sink).metadata.row_group(0).column(0)
        ratios[name] = (column.total_compressed_size / column.total_uncompressed_size, feature.compress)
    assert len(ratios) >= 40
    wrong = {n: round(r, 2) for n, (r, compress) in ratios.items() if (r < 0.9) != compress}
    assert not wrong, f"compress flag disagrees with snappy's ratio: {wrong}"

"""Context neighbours come from the track's nucleotides, in transcript orientation."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.features.context import choose_track, context_from_track
from tests.strategies import gene_spans, positions_in, tracks

OFFSETS = (-2, -1, 1, 2)


def slow_context(row, track, span):
    """Row-by-row reference: dict lookups of the neighbour nucleotides."""
    gene, pos, minus, use_donor = row
    lookup = {(g, p): (d, a) for g, p, d, a in track}
    start, end = span[gene]
    out = []
    for off in OFFSETS:
        q = pos - off if minus else pos + off
        if q < start or q > end:
            out.append(0.0)
        elif (gene, q) not in lookup:
            out.append(np.nan)
        else:
            out.append(lookup[(gene, q)][0 if use_donor else 1])
    return out


def run(rows, track, span):
    rows_a = np.array(rows, dtype=object)
    genes = rows_a[:, 0].astype(np.int64)
    track_a = np.array(track, dtype=float) if track else np.zeros((0, 4))
    return np.column_stack(context_from_track(
        genes, rows_a[:, 1].astype(np.int64), rows_a[:, 2].astype(bool), rows_a[:, 3].astype(bool),
        np.array([span[g][0] for g in genes]), np.array([span[g][1] for g in genes]),
        track_a[:, 0].astype(np.int64), track_a[:, 1].astype(np.int64), track_a[:, 2], track_a[:, 3],
    ))


def test_plus_and_minus_strand_by_hand():
    # gene 0 on +, span 100..110; gene 1 on -, span 200..210; donor score = position / 1000
    track = [(0, p, p / 1000, -p / 1000) for p in range(100, 111)]
    track += [(1, p, p / 1000, -p / 1000) for p in range(200, 211)]
    span = {0: (100, 110), 1: (200, 210)}
    out = run([(0, 105, False, True), (1, 205, True, True), (1, 205, True, False)], track, span)
    np.testing.assert_allclose(out[0], [0.103, 0.104, 0.106, 0.107])  # m2, m1, p1, p2
    np.testing.assert_allclose(out[1], [0.207, 0.206, 0.204, 0.203])  # minus: -1 is higher coord
    np.testing.assert_allclose(out[2], [-0.207, -0.206, -0.204, -0.203])  # acceptor track


def test_gene_edges_are_zero_and_gaps_are_missing():
    track = [(0, p, 0.5, 0.5) for p in (100, 101, 103)]  # 102 absent
    span = {0: (100, 103)}
    out = run([(0, 100, False, True), (0, 103, False, True)], track, span)
    assert out[0].tolist()[:2] == [0.0, 0.0]  # offsets -2, -1 fall before the gene
    assert out[0][2] == 0.5 and np.isnan(out[0][3])  # +1 present, +2 (=102) absent -> missing
    assert np.isnan(out[1][1]) and out[1][2] == 0.0 and out[1][3] == 0.0


def test_choose_track_rule():
    d, a = np.array([0.2, 0.3, 0.1]), np.array([0.2, 0.1, 0.4])
    assert choose_track(d, a, "larger").tolist() == [True, True, False]  # tie: donor
    assert choose_track(d, a, "acceptor").tolist() == [False] * 3


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_matches_slow_reference(data):
    span = data.draw(gene_spans(max_genes=3, max_start=50, max_extra=12))
    track = data.draw(tracks(span))
    rows = [(g, p, data.draw(st.booleans()), data.draw(st.booleans()))  # (.., minus, use_donor)
            for g, p in data.draw(positions_in(span, min_size=1, max_size=10))]
    shuffled = data.draw(st.permutations(track)) if track else track
    out = run(rows, shuffled, span)
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(out[i], slow_context(row, track, span))


@given(st.lists(st.sampled_from(["G1", "G2", "G3", "X", None]), max_size=40),
       st.lists(st.sampled_from(["G1", "G2", "G3", "G4"]), unique=True, max_size=4),
       st.sampled_from(["str", "object", "category"]))
def test_gene_codes_in_equal_a_per_row_lookup(ids, genes, dtype):
    import pandas as pd

    from dask_enrich.features.context import gene_codes_in

    index = pd.Index(genes, dtype=object)
    got = gene_codes_in(pd.Series(ids, dtype=dtype), index)
    expected = [genes.index(g) if g in genes else -1 for g in ids]
    assert got.dtype == np.int64 and got.tolist() == expected

"""Sequence kernel: hypothesis tests against a slow reference that literally slices (and reverse
complements) the window string; the spec's window on both strands; by-hand values."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_enrich.errors import InputError
from dask_enrich.features import sequence as seqmod
from dask_enrich.features.registry import lookup
from dask_enrich.features.sequence import sequence_features, window_bounds
from tests.genome.reference import features_of_window, revcomp, window_string
from tests.strategies import positions_in

ALPHABET = "ACGTNacgtnRY"


def _reference(seq: str, lo, hi, minus, names):
    rows = []
    for a, b, m in zip(lo, hi, minus):
        window = seq[a:b].upper()
        rows.append(features_of_window(revcomp(window) if m else window, names))
    return rows


def _check(seq: str, lo, hi, minus, names):
    bases = np.frombuffer(seq.encode(), dtype=np.uint8)
    got = sequence_features(bases, np.asarray(lo), np.asarray(hi), np.asarray(minus, dtype=bool), names)
    assert list(got) == names
    expected = _reference(seq, lo, hi, minus, names)
    for name in names:
        assert got[name].dtype == lookup(name).dtype
        for r, row in enumerate(expected):
            if isinstance(row[name], float):
                assert got[name][r] == pytest.approx(row[name], abs=1e-12), (name, r)
            else:
                assert got[name][r] == row[name], (name, r, seq[lo[r]:hi[r]], minus[r])


kmer_names = st.integers(1, 8).flatmap(
    lambda k: st.text("ACGTN", min_size=k, max_size=k).map(lambda s: f"{len(s)}mer_{s}"))
names_strategy = st.lists(
    st.one_of(st.sampled_from(["gc_content", "sequence_length", "sequence_complexity"]), kmer_names),
    min_size=1, max_size=12, unique=True)


@st.composite
def sequence_and_windows(draw):
    seq = draw(st.text(st.sampled_from(ALPHABET), min_size=1, max_size=300))
    n = draw(st.integers(1, 25))
    lo, hi = [], []
    for _ in range(n):
        a = draw(st.integers(0, len(seq) - 1))
        b = draw(st.integers(a + 1, len(seq)))
        lo.append(a)
        hi.append(b)
    minus = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return seq, lo, hi, minus


@pytest.mark.parametrize("direct_factor", [0.0, 1e9, 2.0])  # interval histograms / window by window / auto
def test_kernel_matches_reference(direct_factor, monkeypatch):
    monkeypatch.setattr(seqmod, "DIRECT_FACTOR", direct_factor)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(sequence_and_windows(), names_strategy)
    def check(data, names):
        seq, lo, hi, minus = data
        _check(seq, lo, hi, minus, names)

    check()


@settings(max_examples=40, deadline=None)
@given(sequence_and_windows(), names_strategy, st.sampled_from([0.0, 1e9]))
def test_kernel_with_tiny_chunks(data, names, direct_factor):
    """Force many chunks so the chunk bookkeeping is exercised too (both counting paths)."""
    seq, lo, hi, minus = data
    old = seqmod.CHUNK_BUDGET, seqmod.DIRECT_FACTOR
    seqmod.CHUNK_BUDGET = 1
    seqmod.DIRECT_FACTOR = direct_factor
    try:
        bases = np.frombuffer(seq.encode(), dtype=np.uint8)
        n = len(lo)
        reps = 1100 // n + 1  # more windows than the minimum chunk of 1024
        lo2, hi2, m2 = lo * reps, hi * reps, minus * reps
        got = sequence_features(bases, np.array(lo2), np.array(hi2), np.array(m2), names)
        expected = _reference(seq, lo, hi, minus, names)
        for name in names:
            for r in range(len(lo2)):
                assert got[name][r] == pytest.approx(expected[r % n][name], abs=1e-12)
    finally:
        seqmod.CHUNK_BUDGET, seqmod.DIRECT_FACTOR = old


def test_by_hand():
    seq = "AAACGTNNNacgtRAAA"
    names = ["gc_content", "sequence_length", "sequence_complexity", "3mer_AAA", "3mer_NNN", "2mer_NN",
             "1mer_N", "2mer_TT", "3mer_TTT", "2mer_GT", "2mer_AC"]
    bases = np.frombuffer(seq.encode(), dtype=np.uint8)
    got = sequence_features(bases, np.array([0, 0, 6]), np.array([17, 17, 9]), np.array([False, True, False]), names)
    # forward: AAA x2 (0, 14), NNN x1, NN x2, N x3, GT x2 (CGT, cgt), AC x2, R breaks nothing else
    assert got["3mer_AAA"].tolist() == [2, 0, 0]
    assert got["3mer_TTT"].tolist() == [0, 2, 0]  # minus: reverse complement of AAA
    assert got["3mer_NNN"].tolist() == [1, 1, 1]
    assert got["2mer_NN"].tolist() == [2, 2, 2]
    assert got["1mer_N"].tolist() == [3, 3, 3]
    assert got["2mer_GT"].tolist() == [2, 2, 0]  # ACGT is its own reverse complement
    assert got["2mer_AC"].tolist() == [2, 2, 0]
    assert got["2mer_TT"].tolist() == [0, 4, 0]
    assert got["sequence_length"].tolist() == [17, 17, 3]
    assert got["gc_content"][0] == pytest.approx(4 / 17)
    assert got["sequence_complexity"][2] == 0.0
    # composition of 17 chars: A7 C2 G2 T2 N3 R1
    p = np.array([7, 2, 2, 2, 3, 1]) / 17
    assert got["sequence_complexity"][0] == pytest.approx(-(p * np.log2(p)).sum())
    assert got["sequence_complexity"][1] == pytest.approx(got["sequence_complexity"][0])


@settings(max_examples=100, deadline=None)
@given(st.text("ACGT", min_size=1, max_size=900), st.data(), st.integers(1, 300))
def test_window_bounds_match_literal_gene_slices(gene, data, flank):
    """The forward [lo, hi) reverse complemented on minus is exactly seq[i-flank:i+flank] of the
    gene string in transcript orientation, clipped."""
    gene_start = data.draw(st.integers(1, 10_000))
    gene_end = gene_start + len(gene) - 1
    pos = np.array([p for _, p in data.draw(positions_in({0: (gene_start, gene_end)}, 1, 20))])
    chrom = "N" * (gene_start - 1) + gene
    for strand in "+-":
        lo, hi = window_bounds(pos, np.full(len(pos), gene_start), np.full(len(pos), gene_end),
                               np.full(len(pos), strand == "-"), flank)
        for p, a, b in zip(pos, lo, hi):
            forward = gene[a:b]
            got = revcomp(forward) if strand == "-" else forward
            assert got == window_string(chrom, gene_start, gene_end, strand, int(p), flank)


def test_window_bounds_by_hand():
    # gene 101..1100 (1000 nt). Plus, position 101 (i = 0): [0, 250); position 600: [249, 749)
    lo, hi = window_bounds(np.array([101, 600, 1100]), 101, 1100, np.array([False] * 3))
    assert lo.tolist() == [0, 249, 749] and hi.tolist() == [250, 749, 1000]
    # minus, position 1100 is i = 0 of the reverse complement: forward [750, 1000) reversed
    lo, hi = window_bounds(np.array([1100, 600, 101]), 101, 1100, np.array([True] * 3))
    assert lo.tolist() == [750, 250, 0] and hi.tolist() == [1000, 750, 251]
    with pytest.raises(InputError, match="outside"):
        window_bounds(np.array([100]), 101, 1100, np.array([False]))


def test_errors_and_empty():
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    with pytest.raises(ValueError, match="not sequence features"):
        sequence_features(bases, np.array([0]), np.array([2]), np.array([False]), ["gc_content", "3mer_AC"])
    with pytest.raises(ValueError):
        sequence_features(bases, np.array([2]), np.array([2]), np.array([False]), ["gc_content"])
    with pytest.raises(ValueError):
        sequence_features(bases, np.array([0]), np.array([5]), np.array([False]), ["gc_content"])
    with pytest.raises(ValueError, match="longer than 21"):
        sequence_features(bases, np.array([0]), np.array([4]), np.array([False]), ["22mer_" + "A" * 22])
    seq = "AACGTTTGCA" * 12
    _check(seq, [0, 0, 7], [120, 120, 100], [False, True, True],
           ["21mer_" + seq[3:24], "21mer_" + seq[5:26], "12mer_" + seq[:12], "12mer_TGCAACGTTTGC"])
    got = sequence_features(np.frombuffer(seq.encode(), dtype=np.uint8), np.array([0]), np.array([120]),
                            np.array([False]), ["21mer_" + seq[3:24]])
    assert got["21mer_" + seq[3:24]].tolist() == [10]  # by hand: period 10, starts 3, 13, ..., 93
    empty = sequence_features(bases, np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                              np.array([], dtype=bool), ["gc_content", "3mer_ACG"])
    assert empty["gc_content"].dtype == np.float64 and empty["3mer_ACG"].dtype == np.int32 and len(empty["3mer_ACG"]) == 0


def test_all_64_trimers_sum_to_window_positions():
    """Real-like check: on an ACGT-only sequence the 64 3-mer counts add up to len - 2 per window."""
    rng = np.random.default_rng(1)
    bases = rng.choice(np.frombuffer(b"ACGT", dtype=np.uint8), 20_000)
    lo = np.sort(rng.integers(0, 19_000, 5000))
    hi = np.minimum(lo + 500, 20_000)
    minus = rng.random(5000) < 0.5
    names = ["3mer_" + "".join(p) for p in itertools.product("ACGT", repeat=3)]
    got = sequence_features(bases, lo, hi, minus, names)
    total = sum(got[n].astype(np.int64) for n in names)
    assert np.array_equal(total, hi - lo - 2)


def test_sparse_windows_gather_path():
    """Few windows far apart (the gather-by-index path) against the reference."""
    rng = np.random.default_rng(4)
    seq = "".join(rng.choice(list("ACGTNacgt"), 100_000))
    lo = np.sort(rng.choice(99_000, 40, replace=False))
    hi = lo + rng.integers(1, 600, 40)
    minus = rng.random(40) < 0.5
    _check(seq, lo, np.minimum(hi, 100_000), minus,
           ["gc_content", "sequence_length", "sequence_complexity", "3mer_ACG", "4mer_NNAC", "2mer_CA"])

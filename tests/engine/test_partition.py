"""The gene -> bin plan: no gene split, packing within the target, large genes alone."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.engine.partition import PartitionPlan, pack_next_fit, plan_partitions
from dask_enrich.errors import ConfigError


def _slow_next_fit(sizes: list[int], target: int, groups: list[int] | None = None) -> list[int]:
    """Reference: walk the genes one by one, open a new bin when the next one does not fit (or,
    with groups, belongs to another group than the one before)."""
    bins, current, total = [], -1, 0
    groups = groups if groups is not None else [0] * len(sizes)
    for i, size in enumerate(sizes):
        if current < 0 or total + size > target or groups[i] != groups[i - 1]:
            current, total = current + 1, 0
        bins.append(current)
        total += size
    return bins


# Gene sizes: mostly small, some huge (a realistic long tail), or all tiny, or all equal.
gene_sizes = st.one_of(
    st.lists(st.integers(1, 50), max_size=300),
    st.lists(st.one_of(st.integers(1, 20), st.integers(500, 5000)), max_size=200),
    st.lists(st.just(7), max_size=100),
    st.lists(st.integers(0, 3), max_size=100),
)


@settings(max_examples=300, deadline=None)
@given(gene_sizes, st.integers(1, 3000))
def test_pack_matches_reference_and_never_splits(sizes, target):
    bins = pack_next_fit(np.array(sizes, dtype=np.int64), target)
    assert bins.tolist() == _slow_next_fit(sizes, target)
    assert len(bins) == len(sizes)  # each gene exactly one bin: it cannot be split
    if sizes:
        assert bins[0] == 0 and set(np.diff(bins).tolist()) <= {0, 1}  # bins 0..k, none empty
        totals = np.bincount(bins, weights=sizes)
        genes_per_bin = np.bincount(bins)
        for b in range(len(totals)):
            assert totals[b] <= target or genes_per_bin[b] == 1  # only a lone gene may exceed it
        for i, size in enumerate(sizes):
            if size > target:
                assert genes_per_bin[bins[i]] == 1  # a large gene is alone
        # next-fit is tight: the first gene of each bin did not fit in the bin before
        first = np.flatnonzero(np.diff(bins)) + 1
        for i in first:
            assert totals[bins[i] - 1] + sizes[i] > target


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text("ACGT", min_size=1, max_size=6), st.integers(1, 400), max_size=80),
       st.integers(1, 1000))
def test_plan_assigns_every_row_of_a_gene_to_one_bin(sizes, target):
    """Rows given in any order: all rows of one gene land in one bin, whatever the target."""
    plan = plan_partitions(pd.Series(sizes, dtype=np.int64), target)
    rows = [g for g, n in sizes.items() for _ in range(n)]
    rng = np.random.default_rng(len(rows))
    rng.shuffle(rows)
    bins = plan.bin_of(pd.Series(rows, dtype="str"))
    seen: dict[str, int] = {}
    for gene, b in zip(rows, bins.tolist()):
        assert seen.setdefault(gene, b) == b
    assert (bins >= 0).all() and plan.n_bins == (int(bins.max()) + 1 if rows else 1)
    assert plan.bin_rows.sum() == len(rows)


def test_plan_by_hand():
    plan = plan_partitions(pd.Series({"g3": 5, "g1": 4, "g2": 2, "big": 30}), 10)
    assert plan.genes.tolist() == ["big", "g1", "g2", "g3"]  # sorted ids
    assert plan.bins.tolist() == [0, 1, 1, 2]  # big alone; g1+g2 = 6, + g3 = 11 > 10
    assert plan.bin_rows.tolist() == [30, 6, 5]
    assert plan.divisions == (0, 1, 2, 2)
    assert plan.bin_of(["g2", "unknown", "big"]).tolist() == [1, -1, 0]
    assert plan.summary()["max_bin_rows"] == 30


def test_empty_plan_has_one_bin_and_bad_target():
    plan = plan_partitions(pd.Series([], dtype=np.int64), 10)
    assert isinstance(plan, PartitionPlan) and plan.n_bins == 1 and plan.divisions == (0, 0)
    with pytest.raises(ConfigError):
        plan_partitions(pd.Series({"a": 1}), 0)


@settings(max_examples=300, deadline=None)
@given(gene_sizes.flatmap(lambda sizes: st.tuples(
    st.just(sizes), st.lists(st.integers(0, 3), min_size=len(sizes), max_size=len(sizes)))),
    st.integers(1, 3000))
def test_pack_with_groups_never_spans_a_group(sizes_and_steps, target):
    """Bins follow the input partitions: the reference walk, a new bin at each group change."""
    sizes, steps = sizes_and_steps
    groups = np.cumsum(steps).tolist()  # non-decreasing partition numbers, gaps allowed
    bins = pack_next_fit(np.array(sizes, dtype=np.int64), target, groups=np.array(groups))
    assert bins.tolist() == _slow_next_fit(sizes, target, groups)
    for b in set(bins.tolist()):
        assert len({g for g, x in zip(groups, bins.tolist()) if x == b}) == 1


def test_plan_following_the_input_partitions():
    sizes = pd.Series({"a": 4, "b": 4, "c": 4, "d": 3, "e": 9})
    parts = pd.Series({"a": 0, "b": 0, "c": 1, "d": 1, "e": 3})
    plan = plan_partitions(sizes, 10, gene_parts=parts)
    assert plan.genes.tolist() == ["a", "b", "c", "d", "e"]  # input order, not sorted
    assert plan.bins.tolist() == [0, 0, 1, 1, 2]  # b+c would fit in 10 but are in two partitions
    assert plan.bin_parts.tolist() == [0, 1, 3]
    assert plan.bins_of_part(1).tolist() == [1] and plan.bins_of_part(2).tolist() == []
    assert plan.summary()["follows_input"] and not plan_partitions(sizes, 10).follows_input
    with pytest.raises(ValueError, match="partition order"):
        plan_partitions(sizes, 10, gene_parts=parts[::-1].reset_index(drop=True).set_axis(parts.index))
    with pytest.raises(ValueError, match="bins do not follow"):
        plan_partitions(sizes, 10).bins_of_part(0)


def test_each_bin_is_checked_gene_by_gene_against_the_plan():
    from dask_enrich.errors import RunFailure

    sizes = pd.Series({"a": 3, "b": 2, "c": 4, "d": 2})
    plan = plan_partitions(sizes, 5, keep_order=True).with_rows(sizes)
    assert plan.bins.tolist() == [0, 0, 1, 2]
    plan.check_bin_rows(0, pd.Series(["b", "a", "a", "b", "a"], dtype="str"))  # any order
    with pytest.raises(RunFailure, match=r"partition 0: gene b: 1 row\(s\) reached it but the input "
                                         r"has 2 \(rows lost or duplicated\)"):
        plan.check_bin_rows(0, pd.Series(["a", "a", "a", "b"], dtype="str"))
    with pytest.raises(RunFailure, match=r"gene a: 4 row\(s\) reached it but the input has 3"):
        plan.check_bin_rows(0, pd.Series(["a"] * 4 + ["b"] * 2, dtype="str"))
    with pytest.raises(RunFailure, match="rows of gene c reached it, but the plan puts that gene in "
                                         "another partition"):
        plan.check_bin_rows(0, pd.Series(["a"] * 3 + ["b"] * 2 + ["c"], dtype="str"))
    # the digest of a bin names its exact genes and rows: another plan's bin 0 differs
    other = plan_partitions(sizes, 6, keep_order=True).with_rows(sizes)
    assert other.bins.tolist() == [0, 0, 1, 1]
    assert plan.bin_digest(0) == other.bin_digest(0) and plan.bin_digest(1) != other.bin_digest(1)
    assert plan.digest() != other.digest()
    assert plan.bin_digest(0) != plan.with_rows(sizes.replace({3: 4})).bin_digest(0)

"""How the where-read exchange shares input partitions among its tasks (``exchange.where_read_tasks``):
every pending bin in exactly one task, in order, and a remainder of partitions that does not
divide among the worker threads cut into tasks of about equal rows."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.engine.exchange import balanced_chunks, where_read_tasks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1_000), min_size=1, max_size=12), st.integers(1, 6))
def test_balanced_chunks_cover_the_bins_in_order(rows, n):
    bins = np.arange(10, 10 + len(rows))
    chunks = balanced_chunks(bins, np.array(rows), n)
    assert 1 <= len(chunks) <= min(n, len(rows)) and all(len(c) for c in chunks)
    assert np.concatenate(chunks).tolist() == bins.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=2, max_size=12))
def test_balanced_chunks_of_two_cut_nearest_the_half(rows):
    """Two runs: the cut is the bin boundary nearest half the rows."""
    rows = np.array(rows)
    first, _ = balanced_chunks(np.arange(len(rows)), rows, 2)
    cum = np.cumsum(rows)[:-1]  # rows before each possible cut
    best = np.abs(cum - rows.sum() / 2).min()
    assert abs(rows[: len(first)].sum() - rows.sum() / 2) == best


def test_only_the_partitions_left_over_are_shared():
    rows = np.array([200, 200, 200, 200, 200, 3] * 5)
    parts = [np.arange(6 * p, 6 * p + 6) for p in range(5)]
    shares = where_read_tasks(parts, rows, 2)  # 5 partitions on 2 threads: the 5th in 2 tasks
    assert [len(s) for s in shares] == [1, 1, 1, 1, 2]
    assert [c.tolist() for c in shares[4]] == [[24, 25, 26], [27, 28, 29]]
    assert [len(s) for s in where_read_tasks(parts[:4], rows, 2)] == [1, 1, 1, 1]
    assert [len(s) for s in where_read_tasks(parts, rows, 1)] == [1] * 5
    assert [len(s) for s in where_read_tasks(parts[:1], rows, 4)] == [4]  # one partition, 4 threads
    assert [len(s) for s in where_read_tasks([np.array([7])], rows, 2)] == [1]  # one bin: one task

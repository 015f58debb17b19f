"""The killed-worker message (engine/diagnose.py): a task key of the run's exchange turned back into
its bins (their genes and rows, largest first) or the input partition it reads."""
from __future__ import annotations

import pandas as pd

from dask_enrich.engine import diagnose
from dask_enrich.engine.exchange import P2P, Staged, TaskPlace, WhereRead
from dask_enrich.engine.partition import plan_partitions


def _killed(key):
    class Killed(Exception):
        task = key

    return Killed


def test_killed_worker_message_names_the_bins_genes_rows_and_memory_limit():
    sizes = pd.Series({"small1": 5, "BIG": 600_000, "small2": 7, "small3": 3})
    plan = plan_partitions(sizes, 10, keep_order=True)
    big_bin = int(plan.bins[list(plan.genes).index("BIG")])
    staged = Staged("abcdef1234")
    failure = diagnose.killed_worker_failure(_killed(staged.bin_key(big_bin))("boom"), plan, staged,
                                             [450 * 2**20, 0])
    text = str(failure)
    assert f"partition {big_bin} (gene BIG (600,000 rows)" in text
    assert "450 MiB" in text and "--memory-limit" in text and "small1" not in text
    # the task of a bin is named by its key; an input partition's task is not a bin
    assert staged.bins_of_key(staged.bin_key(big_bin)) == TaskPlace((big_bin,))
    assert staged.bins_of_key(staged.split_key("positions", 3)) == TaskPlace(input=("positions", 3))
    assert staged.bins_of_key(("read-positions-abc", 3)) == TaskPlace(input=("positions", 3))
    p2p = P2P("abcdef1234")
    assert p2p.bins_of_key(p2p.bin_key(2).encode()) == TaskPlace((2,))
    assert p2p.bins_of_key("enrich-bin-2-00000000") is None  # another run's key


def test_killed_worker_in_a_bin_of_several_genes_lists_the_largest_first():
    sizes = pd.Series({"a": 3, "b": 9, "c": 5})
    plan = plan_partitions(sizes, 100, keep_order=True)
    staged = Staged("abcdef1234")
    text = str(diagnose.killed_worker_failure(_killed(staged.bin_key(0))("x"), plan, staged, []))
    assert "genes b (9 rows), c (5 rows), a (3 rows); 17 rows in all" in text
    assert "memory limit unknown" in text


def test_killed_worker_enriching_where_read_names_the_input_partitions_genes():
    sizes = pd.Series({"a": 3, "b": 9, "HUGE": 500_000, "c": 5})
    parts = pd.Series({"a": 0, "b": 0, "HUGE": 1, "c": 1})
    plan = plan_partitions(sizes, 100, gene_parts=parts)
    where = WhereRead("abcdef1234")
    key = where.part_key("positions", 1, plan.bins_of_part(1))
    assert where.bins_of_key(key) == TaskPlace((1, 2), ("positions", 1))
    text = str(diagnose.killed_worker_failure(_killed(key)("x"), plan, where, [2**30]))
    assert "input partition 1 of the positions" in text and "partitions 1, 2" in text
    assert "genes HUGE (500,000 rows), c (5 rows); 500,005 rows in all" in text
    assert " a (" not in text and "1 GiB" in text


def test_killed_worker_while_reading_names_the_input_partition():
    plan = plan_partitions(pd.Series({"a": 3}), 100, keep_order=True)
    staged = Staged("abcdef1234")
    for key, label, part in [(staged.split_key("positions", 4), "positions", 4),
                             (("read-track-0123abcd", 2), "track", 2)]:
        assert staged.bins_of_key(key) == TaskPlace(input=(label, part))
        text = str(diagnose.killed_worker_failure(_killed(key)("x"), plan, staged, [2**30]))
        assert f"reading partition {part} of the {label} input" in text and "1 GiB" in text
    assert staged.bins_of_key(("process-abc", 1)) is None
    text = str(diagnose.killed_worker_failure(_killed(("process-abc", 1))("x"), plan, staged, []))
    assert "task ('process-abc', 1)" in text

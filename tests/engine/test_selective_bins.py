"""The whole-bin shortcuts of ``--selective`` on a scanned track (``engine/selective.py``): each
gives what the row-by-row path it skips gives (a piece cut on its runs of gene codes, the rows per
gene counted on the codes, the plan order found on the runs), and the name keys kept by
``validate.sequence_name_key`` equal the keys worked out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dask_enrich import validate
from dask_enrich.engine import selective
from dask_enrich.engine.partition import plan_partitions
from dask_enrich.errors import RunFailure
from dask_enrich.io import inspect_input

GENES = ["g3", "g1", "g2", "g0", "g4", "g5"]  # plan order (first appearance), not sorted order


def _plan(sizes: list[int], target: int):
    plan = plan_partitions(pd.Series(dict(zip(GENES, sizes)), dtype=np.int64), target,
                           keep_order=True)
    return plan.with_rows(pd.Series(dict(zip(GENES, sizes)), dtype=np.int64))


# --- runs of dictionary codes ------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", None]), max_size=8), max_size=4),
       st.booleans())
def test_code_runs_spell_the_column(chunks, encoded):
    column = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    column = pa.chunked_array([c.dictionary_encode() for c in column.chunks],
                              pa.dictionary(pa.int32(), pa.string())) if encoded else column
    starts, codes, values = selective._code_runs(column)
    rows = [v for c in chunks for v in c]
    lengths = np.diff(np.append(starts, len(rows))).astype(np.int64)
    assert (lengths > 0).all() and (len(rows) == 0 or starts[0] == 0)
    spelled = np.append(values, None)[np.repeat(codes, lengths)]  # code -1 -> None
    assert spelled.tolist() == rows
    assert (np.diff(starts) > 0).all()


# --- a piece cut on its runs of gene codes, as row by row --------------------------------------------
@st.composite
def pieces(draw):
    """(rows of gene ids in runs, row group size): genes of the plan in runs, sometimes out of
    plan order, split in two runs, or with rows of a gene outside the plan or without an id."""
    order = draw(st.permutations(GENES)) if draw(st.booleans()) else list(GENES)
    runs = [(g, draw(st.integers(1, 6))) for g in order]
    if draw(st.booleans()):
        runs.insert(draw(st.integers(0, len(runs))), (draw(st.sampled_from(GENES + ["gX", None])),
                                                      draw(st.integers(1, 3))))
    ids = [g for g, n in runs for _ in range(n)]
    return ids, draw(st.integers(1, 12))


@settings(max_examples=150, deadline=None)
@given(pieces(), st.integers(2, 12), st.booleans(), st.lists(st.integers(0, 5), max_size=2))
def test_split_on_runs_matches_split_by_row(tmp_path_factory, piece, target, compact, done):
    ids, row_group = piece
    path = tmp_path_factory.mktemp("piece") / "part-0.parquet"
    n = len(ids)
    frame = pd.DataFrame({"gene_id": pd.Series(ids, dtype=object),
                          "position": np.arange(n, dtype=np.int64) + 1,
                          "donor_score": np.linspace(0, 1, n)})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
    plan = plan_partitions(pd.Series({g: ids.count(g) or 1 for g in GENES}, dtype=np.int64), target,
                           keep_order=True)
    done = frozenset(done) & set(range(plan.n_bins))
    source = inspect_input(str(path), label="track")
    groups = tuple(range(pq.ParquetFile(path).metadata.num_row_groups))
    empty = pd.DataFrame({"gene_id": pd.Series([], dtype="str"),
                          selective.PIECE: pd.Series([], dtype=np.int64),
                          selective.ROW: pd.Series([], dtype=np.int64)})
    args = (source, (str(path), groups), 3, empty, empty, empty, plan, done,
            ("gene_id", "position", "donor_score"))
    got = selective.split_piece(*args, compact=compact)
    ranges = selective._bin_ranges
    try:
        selective._bin_ranges = lambda *a: None  # every piece cut row by row
        want = selective.split_piece(*args, compact=compact)
    finally:
        selective._bin_ranges = ranges
    assert sorted(got) == sorted(want)
    for b in want:
        assert got[b].table.schema == want[b].table.schema
        assert got[b].table.to_pydict() == want[b].table.to_pydict(), b
        assert got[b].table.equals(want[b].table)


# --- the plan order: on the runs of codes, as row by row ------------------------------------------
def _plan_order_by_row(plan, codes, genes, position):
    """Row by row (the rule the runs shortcut must give): None when each row follows the previous
    in plan rank, then position; else the stable order by (rank, position)."""
    rank = plan.genes.get_indexer(pd.Index(genes, dtype=plan.genes.dtype))[codes]
    if all(rank[i] < rank[i + 1] or (rank[i] == rank[i + 1] and position[i] <= position[i + 1])
           for i in range(len(codes) - 1)):
        return None
    return np.array(sorted(range(len(codes)), key=lambda i: (rank[i], position[i], i)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), max_size=30), st.booleans(),
       st.permutations(GENES + ["gX", "g1"]))
@example([(1, 3), (6, 1)], False, ["g3", "g1", "g2", "g0", "g4", "g5", "g1", "gX"])  # g1 twice
@example([(6, 3), (6, 1)], False, GENES + ["gX", "g1"])  # rows of a gene outside the plan
def test_plan_order_on_runs_matches_row_by_row(pairs, presort, dictionary):
    plan = _plan([1] * len(GENES), 100)
    genes = np.array(dictionary[:7], dtype=object)  # may hold a gene outside the plan, or twice
    codes = np.array([c for c, _ in pairs], dtype=np.int64)
    position = np.array([p for _, p in pairs], dtype=np.int64)
    if presort:  # the usual bin: rows in plan order already
        order = _plan_order_by_row(plan, codes, genes, position)
        codes, position = (codes, position) if order is None else (codes[order], position[order])
    got = selective._plan_order(plan, codes, genes, position)
    want = _plan_order_by_row(plan, codes, genes, position)
    assert (got is None) == (want is None)
    if want is not None:
        assert got.tolist() == want.tolist()


# --- the rows per gene: counted on the codes, as plan.check_bin_rows checks them -------------------
def _check_by_categories(plan, bin_id, codes, genes, rejected):
    """``plan.check_bin_rows`` on every row's gene as a category (the row-by-row check)."""
    names = pd.Index(genes, dtype=object)
    bad = rejected["gene_id"].astype(str).to_numpy(dtype=object)
    names = names.append(pd.Index(pd.unique(bad), dtype=object).difference(names))
    all_codes = np.concatenate([codes, names.get_indexer(bad)]) if len(bad) else codes
    plan.check_bin_rows(bin_id, pd.Categorical.from_codes(all_codes, names))


def _outcome(check, *args):
    try:
        check(*args)
    except (RunFailure, ValueError) as exc:
        return type(exc), str(exc)
    return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=len(GENES), max_size=len(GENES)),
       st.integers(0, 2), st.lists(st.integers(-1, 6), max_size=16),
       st.lists(st.sampled_from(GENES + ["gX"]), max_size=3), st.permutations(GENES + ["gX"]),
       st.booleans())
def test_rows_counted_on_codes_check_as_the_plan(sizes, bin_id, codes, bad, dictionary, exact):
    plan = _plan(sizes, 5)
    bin_id = min(bin_id, plan.n_bins - 1)
    genes = np.array(dictionary, dtype=object)
    if exact:  # the usual bin: each of its genes with its planned rows (some of them rejected)
        start, end = plan.gene_range(bin_id)
        ids = np.repeat(plan.genes[start:end].to_numpy(dtype=object), plan.rows[start:end])
        codes = pd.Index(genes).get_indexer(ids[len(bad):])
        bad = list(ids[:len(bad)])
    codes = np.asarray(codes, dtype=np.int64)
    rejected = pd.DataFrame({"gene_id": pd.Series(bad, dtype="str")})
    want = _outcome(_check_by_categories, plan, bin_id, codes, genes, rejected)
    assert _outcome(selective._check_rows, plan, bin_id, codes, genes, rejected) == want
    assert selective._rows_as_planned(plan, bin_id, codes, genes, rejected) == (want is None)


def test_rows_counted_on_codes_refuse_a_repeated_dictionary_value():
    plan = _plan([2, 1, 1, 1, 1, 1], 100)
    genes = np.array(["g3", "g1", "g3", "g2", "g0", "g4", "g5"], dtype=object)
    codes = np.array([0, 2, 1, 3, 4, 5, 6], dtype=np.int64)  # g3's rows under two codes
    rejected = pd.DataFrame({"gene_id": pd.Series([], dtype="str")})
    assert not selective._rows_as_planned(plan, 0, codes, genes, rejected)
    with pytest.raises(ValueError):  # as before: categories must be unique
        selective._check_rows(plan, 0, codes, genes, rejected)


# --- the sequence name keys kept ----------------------------------------------------------------------
NAMES = st.lists(st.one_of(st.sampled_from(["chr1", "1", "CHR1", "chrM", "M", "MT", "chrX", "x",
                                            "Chr2", "scaffold_1", "chrß"]),
                           st.integers(0, 3), st.sampled_from([1.0, True, False, 0.0]), st.text(max_size=4)),
                 max_size=6, unique_by=repr)


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_kept_sequence_name_keys_equal_the_keys_worked_out(names):
    index = pd.Index(names, dtype=object)
    want = validate._sequence_name_key(index)
    for _ in range(2):  # worked out, then kept
        got = validate.sequence_name_key(index)
        pd.testing.assert_index_equal(got, want, exact=True)
    pd.testing.assert_index_equal(validate.sequence_name_key(pd.Index([str(n) for n in names],
                                                                      dtype=object)),
                                  validate._sequence_name_key(pd.Index([str(n) for n in names],
                                                                       dtype=object)))

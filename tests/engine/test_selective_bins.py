"""The whole-bin shortcuts of ``--selective`` on a scanned track (``engine/selective.py``): each
gives what the row-by-row path it skips gives (a piece cut on its runs of gene codes)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.engine import selective
from dask_enrich.engine.partition import plan_partitions
from dask_enrich.io import inspect_input

GENES = ["g3", "g1", "g2", "g0", "g4", "g5"]  # plan order (first appearance), not sorted order


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

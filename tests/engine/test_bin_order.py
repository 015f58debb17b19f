"""The order of a bin's rows before enrichment: plan order of genes, then position (stable)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.engine.partition import plan_partitions
from dask_enrich.engine.tasks import in_plan_order as _in_plan_order, sorted_bin as _sorted_bin

GENES = ["g3", "g1", "g2", "g0"]  # plan order (first appearance), not sorted order


def _reference(frame: pd.DataFrame, plan_genes: list[str]) -> pd.DataFrame:
    """Row by row: genes in plan order (genes outside the plan after, in order of appearance),
    positions ascending, ties in input order."""
    outside = list(dict.fromkeys(g for g in frame["gene_id"] if g not in plan_genes))
    rank = {g: i for i, g in enumerate(plan_genes + outside)}
    keyed = sorted(range(len(frame)), key=lambda i: (rank[frame["gene_id"].iloc[i]],
                                                     frame["position"].iloc[i], i))
    return frame.iloc[keyed].reset_index(drop=True)


rows = st.lists(st.tuples(st.sampled_from(GENES + ["gX"]), st.integers(0, 6)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(rows, st.booleans())
def test_sorted_bin_matches_a_row_by_row_ordering(pairs, presort):
    plan = plan_partitions(pd.Series({g: 1 for g in GENES}, dtype=np.int64), 100, keep_order=True)
    frame = pd.DataFrame({"gene_id": pd.Series([g for g, _ in pairs], dtype="str"),
                          "position": np.array([p for _, p in pairs], dtype=np.int64),
                          "row": np.arange(len(pairs))})
    if presort:  # the common case: already in order, which must be recognised without a copy
        frame = _reference(frame, GENES)
    got = _sorted_bin(frame, plan)
    pd.testing.assert_frame_equal(got, _reference(frame, GENES))
    in_order = got["row"].tolist() == frame["row"].tolist()
    if _in_plan_order(frame, plan):  # the fast test never calls out-of-order rows ordered
        assert in_order
    if in_order and len(frame) > 1 and not frame["gene_id"].eq("gX").any():
        assert _in_plan_order(frame, plan)  # ...and recognises every ordered bin of plan genes

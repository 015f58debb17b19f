"""A bin's gene ids factorised once (gene_codes.GeneCodes) and handed to the plan's row check, the
row checks, the bin order, the core and the writer's digest: each step gives exactly what it
gives factorising itself, refuses codes of other rows, and the engine hands codes on only while
the rows are the ones they were made for."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_enrich.config import EnrichConfig
from dask_enrich.core import PartitionInputs, enrich
from dask_enrich.engine import quarantine
from dask_enrich.engine.context import RunContext
from dask_enrich.engine.partition import plan_partitions
from dask_enrich.engine.tasks import enrich_bin, in_plan_order, sorted_bin_with
from dask_enrich.engine.writer import gene_rows_digest
from dask_enrich.gene_codes import GeneCodes
from dask_enrich.manifest import manifest_from_names
from dask_enrich.validate import split_bad_rows
from tests.strategies import raw_position_rows
from tests.test_validate import GENES as ANNOTATED
from tests.test_validate import table_of

MANIFEST = manifest_from_names(["donor_score", "splice_probability"], source="t")
COLUMNS = ["gene_id", "position", "donor_score", "acceptor_score", "neither_score",
           "context_score_m1", "strand", "chrom"]
ids = st.lists(st.sampled_from(["G1", "G2", "G3", "GX", "", None]), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(raw_position_rows(), max_size=30), annotation=st.booleans(),
       presorted=st.booleans())
def test_split_bad_rows_given_the_codes_splits_as_it_does_alone(rows, annotation, presorted):
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"gene_id": "str"})
    if presorted:
        frame = frame.sort_values(["gene_id", "position"], kind="stable")
    table = table_of(ANNOTATED) if annotation else None
    alone = split_bad_rows(frame, source="p", gene_table=table)
    given_codes = split_bad_rows(frame, source="p", gene_table=table,
                                 genes=GeneCodes.of(frame["gene_id"]))
    pd.testing.assert_frame_equal(given_codes[0], alone[0])
    pd.testing.assert_frame_equal(given_codes[1], alone[1])
    assert given_codes[2] == alone[2]


@given(ids)
def test_the_digest_and_the_core_given_the_codes_are_as_alone(gene_ids):
    column = pd.Series(gene_ids, dtype="str")
    genes = GeneCodes.of(column)
    assert gene_rows_digest(column, genes) == gene_rows_digest(column)
    frame = pd.DataFrame({"gene_id": column, "position": np.arange(1, len(column) + 1),
                          "donor_score": 0.1, "acceptor_score": 0.2, "neither_score": 0.7})
    alone = PartitionInputs(frame, None, None, EnrichConfig())
    given_codes = PartitionInputs(frame, None, None, EnrichConfig(), genes)
    np.testing.assert_array_equal(given_codes.gene_codes, alone.gene_codes)
    pd.testing.assert_index_equal(given_codes.gene_uniques, alone.gene_uniques)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["g3", "g1", "g2", "gX"]), st.integers(0, 6)),
                max_size=30), st.booleans())
def test_the_bin_order_given_the_codes_is_as_alone(pairs, presort):
    plan = plan_partitions(pd.Series({g: 1 for g in ["g3", "g1", "g2"]}, dtype=np.int64), 100,
                           keep_order=True)
    frame = pd.DataFrame({"gene_id": pd.Series([g for g, _ in pairs], dtype="str"),
                          "position": np.array([p for _, p in pairs], dtype=np.int64)})
    if presort:
        frame, _ = sorted_bin_with(frame, plan)
    genes = GeneCodes.of(frame["gene_id"])
    assert in_plan_order(frame, plan, genes) == in_plan_order(frame, plan)
    ordered, kept = sorted_bin_with(frame, plan, genes)
    pd.testing.assert_frame_equal(ordered, sorted_bin_with(frame, plan)[0])
    assert (kept is genes) == in_plan_order(frame, plan)  # codes kept only when no row moved


def test_codes_of_other_rows_are_refused():
    frame = pd.DataFrame({"gene_id": pd.Series(["a", "b", "a"], dtype="str"), "position": [1, 2, 3],
                          "donor_score": 0.1, "acceptor_score": 0.2, "neither_score": 0.7})
    other = GeneCodes.of(frame["gene_id"].iloc[:2])
    counts = frame["gene_id"].value_counts(sort=False)
    plan = plan_partitions(counts, 100, keep_order=True).with_rows(counts)
    for call in (lambda: split_bad_rows(frame, source="p", genes=other),
                 lambda: enrich(frame, MANIFEST, genes=other),
                 lambda: gene_rows_digest(frame["gene_id"], other),
                 lambda: plan.check_bin_rows(0, frame["gene_id"], other),
                 lambda: sorted_bin_with(frame, plan, other)):
        with pytest.raises(ValueError, match="gene codes of 2 rows given for 3 rows"):
            call()


def _bin(shuffle: bool, bad: bool) -> pd.DataFrame:
    rows = pd.DataFrame({"gene_id": pd.Series(["B", "B", "B", "A", "A"], dtype="str"),
                         "position": np.array([10, 20, 30, 5, 20], dtype=np.int64),
                         "donor_score": [0.1, 0.2, 0.3, 0.4, 0.5],
                         "acceptor_score": [0.2, 0.1, 0.1, 0.1, 0.1],
                         "neither_score": [0.7, 0.7, 0.6, 0.5, 0.4]})
    if bad:
        rows.loc[1, "donor_score"] = np.nan
    return rows.iloc[[3, 0, 4, 1, 2]].reset_index(drop=True) if shuffle else rows


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("bad", [False, True])
def test_enrich_bin_hands_on_the_codes_of_the_rows_it_writes(tmp_path, shuffle, bad):
    rows = _bin(shuffle, bad)
    counts = _bin(False, False)["gene_id"].value_counts(sort=False)
    plan = plan_partitions(counts, 100, keep_order=True).with_rows(counts)
    ctx = RunContext(MANIFEST, EnrichConfig(), plan, tuple(rows.columns), out=str(tmp_path),
                     checks=quarantine.BinChecks(on_bad_rows="quarantine", source="p",
                                                 need_annotation=False))
    done = enrich_bin(rows, None, ctx, 0)
    (frame,) = done.frames
    fresh = GeneCodes.of(frame["gene_id"])
    np.testing.assert_array_equal(done.genes.codes, fresh.codes)
    pd.testing.assert_index_equal(done.genes.uniques, fresh.uniques)
    assert done.rows_rejected == int(bad)

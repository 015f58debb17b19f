"""One task per bin (engine/tasks.py): the same function eager and distributed. ``enrich_bin`` on a
pandas frame equals the pure core on the rows in gene-then-position order; ``process_bin``
writes the bin's part and returns its counts as a typed record (no Dask involved)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich
from dask_enrich import storage
from dask_enrich.engine import quarantine, writer
from dask_enrich.engine.context import RunContext
from dask_enrich.engine.models import Target, prepare
from dask_enrich.engine.partition import plan_partitions
from dask_enrich.engine.tasks import BinResult, enrich_bin, process_bin
from dask_enrich.manifest import manifest_from_names

MANIFEST = manifest_from_names(["donor_score", "acceptor_score", "splice_probability"], source="t")


def _rows() -> pd.DataFrame:
    # genes B then A (first appearance), positions out of order within each gene
    return pd.DataFrame({"gene_id": pd.Series(["B", "A", "B", "A", "B"], dtype="str"),
                         "position": np.array([30, 20, 10, 5, 20], dtype=np.int64),
                         "donor_score": [0.1, 0.2, 0.3, 0.4, 0.5],
                         "acceptor_score": [0.2, 0.1, 0.1, 0.1, 0.1],
                         "neither_score": [0.7, 0.7, 0.6, 0.5, 0.4]})


def _plan(rows: pd.DataFrame):
    counts = rows["gene_id"].value_counts(sort=False)
    return plan_partitions(counts, 100, keep_order=True).with_rows(counts)


def test_enrich_bin_is_the_core_on_the_rows_in_plan_then_position_order():
    rows = _rows()
    plan = _plan(rows)
    assert list(plan.genes) == ["B", "A"]
    ctx = RunContext(MANIFEST, EnrichConfig(), plan, tuple(rows.columns),
                     checks=quarantine.BinChecks(source="p", need_annotation=False))
    done = enrich_bin(rows.sample(frac=1, random_state=3), None, ctx, 0)
    # by hand: gene B (10, 20, 30) then gene A (5, 20)
    ordered = rows.iloc[[2, 4, 0, 3, 1]].reset_index(drop=True)
    expected, report = enrich(ordered, MANIFEST)
    (frame,) = done.frames
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert frame["position"].tolist() == [10, 20, 30, 5, 20]
    assert (done.rows_in, done.rows_rejected, done.report) == (5, 0, report)


def test_process_bin_writes_the_part_and_returns_its_counts(tmp_path):
    rows = _rows()
    rows.loc[1, "donor_score"] = np.nan  # gene A at 20: rejected (quarantine)
    plan = _plan(rows)
    out = str(tmp_path / "out")
    target = Target("t", MANIFEST, out, fingerprint="F" * 32, record={"inputs": {}, "settings": {}})
    targets, done = prepare([target], None, mode="new", plan=plan, input_meta=rows.iloc[:0],
                            track_meta=None, config=EnrichConfig())
    assert done == {}
    ctx = RunContext(MANIFEST, EnrichConfig(), plan, tuple(rows.columns), out=out,
                     fingerprint="F" * 32, targets=tuple(targets),
                     checks=quarantine.BinChecks("quarantine", "p", need_annotation=False))
    result = process_bin(rows, None, ctx, 0)
    assert isinstance(result, BinResult) and not result.resumed
    assert (result.bin, result.rows_in, result.rows_written, result.rows_rejected) == (0, 5, 4, 1)
    assert result.checks["rejected"] == {"score_missing": 1}
    written = pq.read_table(tmp_path / "out" / writer.part_name(0)).to_pandas()
    assert written["gene_id"].tolist() == ["B", "B", "B", "A"]
    assert written["position"].tolist() == [10, 20, 30, 5]
    rejected = pd.read_parquet(tmp_path / "out" / quarantine.REJECTED_DIR)
    assert rejected["position"].tolist() == [20] and rejected["gene_id"].tolist() == ["A"]
    # the part's footer record is what a resumed run reads back: the same counts and report
    record = writer.read_part_record(storage.url_to_fs(out)[0], f"{out}/{writer.part_name(0)}")
    kept = BinResult.kept(0, record)
    assert kept.resumed and (kept.rows_in, kept.rows_written, kept.rows_rejected) == (5, 4, 1)
    assert kept.report == result.report and kept.checks == result.checks
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.rows_in = 0

"""The engine's validation wiring (engine/quarantine.py, inputs.py, summary.py): rejected files,
crash safety of the output, resume refusals, OUT not shared with the workers."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dask_enrich.core import enrich, output_schema
from dask_enrich.engine import inputs, quarantine, run as engine_run, summary as summaries, writer
from dask_enrich.engine.partition import plan_partitions
from dask_enrich.engine.run import run_enrichment
from dask_enrich.errors import ConfigError, RunFailure
from dask_enrich.manifest import manifest_from_names

from .conftest import client  # noqa: F401  (session LocalCluster fixture)

MANIFEST = manifest_from_names(["donor_score", "acceptor_score", "splice_probability"], source="t")


def _positions(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d, a = rng.random(n) * 0.5, rng.random(n) * 0.4
    return pd.DataFrame({"gene_id": pd.Series([f"G{i % 4}" for i in range(n)], dtype="str"),
                         "position": np.arange(1, n + 1, dtype=np.int64) * 3,
                         "donor_score": d, "acceptor_score": a, "neither_score": 1 - d - a})


# --- rejected files ---------------------------------------------------------------------------------
def test_rejected_files_are_whole_or_absent_and_resume_keeps_only_complete_bins(tmp_path):
    out = str(tmp_path / "out")
    bad = _positions(6).assign(reason="score_missing: x", source="p.parquet")
    for b in range(3):
        quarantine.write_rejected(bad.iloc[: b + 1], out, b, "F")
    folder = tmp_path / "out" / quarantine.REJECTED_DIR
    assert sorted(p.name for p in folder.iterdir()) == [writer.part_name(b) for b in range(3)]
    table = pq.read_table(folder / writer.part_name(2))
    assert table.num_rows == 3 and json.loads(table.schema.metadata[writer.META_KEY]) == {
        "fingerprint": "F", "bin": 2, "rows": 3}
    (folder / f".{writer.part_name(3)}{writer.TMP_MARKER}abc").write_bytes(b"half a file")
    # a reader of the rejected dataset never sees the hidden temporary file
    assert len(pd.read_parquet(folder)) == 1 + 2 + 3
    quarantine.prepare_rejected(out, {0: {}, 2: {}})  # bins 0 and 2 complete, bin 1 redone
    assert sorted(p.name for p in folder.iterdir()) == [writer.part_name(0), writer.part_name(2)]


def test_a_kept_column_named_reason_does_not_collide_with_the_rejects_own(client, tmp_path):
    from dask_enrich.config import EnrichConfig

    frame = _positions(12).assign(reason=[f"note {i}" for i in range(12)],
                                  source=[f"lab {i}" for i in range(12)])
    frame.loc[[2, 7], "donor_score"] = np.nan
    frame.to_parquet(tmp_path / "p.parquet", index=False)
    summary = run_enrichment(str(tmp_path / "p.parquet"), MANIFEST, str(tmp_path / "out"),
                             client=client, on_bad_rows="quarantine",
                             config=EnrichConfig(keep_columns=("reason", "source")))
    assert summary.rows_rejected == 2
    rejected = pd.read_parquet(tmp_path / "out" / quarantine.REJECTED_DIR).sort_values("position")
    assert rejected["reason_input"].tolist() == ["note 2", "note 7"]
    assert rejected["source_input"].tolist() == ["lab 2", "lab 7"]
    assert rejected["reason"].str.startswith("score_").all()
    assert rejected["source"].str.endswith("p.parquet").all()
    written = pd.read_parquet(tmp_path / "out").sort_values("position")
    assert written["reason"].tolist() == [f"note {i}" for i in range(12) if i not in (2, 7)]


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_a_dataset_file_lacking_a_column_is_named_before_any_work(tmp_path, ext):
    from dask_enrich.errors import InputError

    frame = _positions(30)
    (tmp_path / "in").mkdir()
    for i, (part, drop) in enumerate([(frame.iloc[:10], []), (frame.iloc[10:20], []),
                                      (frame.iloc[20:], ["neither_score"])]):
        path = tmp_path / "in" / f"f{i}.{ext}"
        part = part.drop(columns=drop)
        part.to_parquet(path, index=False) if ext == "parquet" else part.to_csv(path, index=False)
    with pytest.raises(InputError, match=rf"positions file {tmp_path}/in/f2.{ext}: lacks column\(s\) "
                                         r"'neither_score' \(the first file"):
        run_enrichment(str(tmp_path / "in"), MANIFEST, str(tmp_path / "out"), workers=1)
    assert not (tmp_path / "out").exists()  # before any cluster or write


@pytest.mark.parametrize("exchange", ["auto", "staged"])
def test_a_position_beyond_int64_is_rejected_as_written_not_wrapped(client, tmp_path, exchange):
    frame = _positions(12)
    frame["position"] = frame["position"].astype(np.uint64)
    frame.loc[[3, 8], "position"] = np.array([2**63 + 5, 2**64 - 1], dtype=np.uint64)
    frame.to_parquet(tmp_path / "p.parquet", index=False)
    summary = run_enrichment(str(tmp_path / "p.parquet"), MANIFEST, str(tmp_path / "out"),
                             client=client, on_bad_rows="quarantine", exchange_method=exchange)
    assert (summary.rows_written, summary.rows_rejected) == (10, 2)
    rejected = pd.read_parquet(tmp_path / "out" / quarantine.REJECTED_DIR)
    assert sorted(rejected["reason"]) == ["position_too_large: position=18446744073709551615",
                                          "position_too_large: position=9223372036854775813"]
    written = pd.read_parquet(tmp_path / "out")
    assert written["position"].dtype == np.int64
    assert sorted(written["position"]) == sorted(frame["position"].drop(index=[3, 8]).astype(np.int64))


def test_an_interrupted_part_write_leaves_nothing_a_reader_or_resume_takes_as_complete(
        tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    frame = _positions(20)
    schema = output_schema(MANIFEST, frame.dtypes.to_dict())
    enriched, report = enrich(frame, MANIFEST)
    writer.prepare_output(out, mode="new", run_fingerprint="A", run_record={}, n_bins=2)
    writer.write_part(enriched, out, 0, schema, "A", report.to_dict())

    def crash(table, where, **kwargs):  # half the bytes reach the disk, then the process dies
        where.write(b"PAR1" + b"\0" * 100)
        where.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.write_part(enriched, out, 1, schema, "A", report.to_dict())
    monkeypatch.undo()
    names = sorted(os.listdir(out))
    assert writer.part_name(1) not in names and any(writer.TMP_MARKER in n for n in names)
    assert [os.path.basename(p) for p in writer.part_files(out)] == [writer.part_name(0)]
    assert pq.read_table(out).num_rows == 20  # a dataset reader skips the hidden partial file
    done = writer.prepare_output(out, mode="resume", run_fingerprint="A", run_record={}, n_bins=2)
    assert sorted(done) == [0]
    assert sorted(os.listdir(out)) == [writer.RUN_FILE, writer.PARTS_DIR, writer.part_name(0)]


# --- resume never mixes outputs of another version, other inputs or other settings ------------------
def test_resume_refuses_output_of_another_version_inputs_or_row_policy(client, tmp_path, monkeypatch):
    positions = tmp_path / "positions.parquet"
    _positions(40).to_parquet(positions, index=False)
    out = str(tmp_path / "out")
    names = tmp_path / "m.txt"
    names.write_text("donor_score\nsplice_probability\n")
    run_enrichment(str(positions), str(names), out, client=client, partition_rows=10)
    (tmp_path / "out" / writer.SUCCESS_FILE).unlink()
    monkeypatch.setattr(engine_run, "__version__", "999.0")
    with pytest.raises(ConfigError, match="other inputs or settings"):
        run_enrichment(str(positions), str(names), out, client=client, partition_rows=10,
                       mode="resume")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="other inputs or settings"):
        run_enrichment(str(positions), str(names), out, client=client, partition_rows=10,
                       mode="resume", on_bad_rows="quarantine")
    _positions(40, seed=9).to_parquet(positions, index=False)  # same name, other rows
    with pytest.raises(ConfigError, match="other inputs or settings"):
        run_enrichment(str(positions), str(names), out, client=client, partition_rows=10,
                       mode="resume")
    # nothing of the refused runs was written
    assert not (tmp_path / "out" / writer.SUCCESS_FILE).exists()


def test_unknown_row_policy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--on-bad-rows"):
        run_enrichment(str(tmp_path / "p.parquet"), MANIFEST, str(tmp_path / "o"),
                       on_bad_rows="ignore")


# --- OUT shared with the workers ----------------------------------------------------------------------
def test_missing_part_files_mean_out_is_not_shared(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / writer.part_name(0)).write_bytes(b"x")
    with pytest.raises(RunFailure, match="not on a filesystem shared with the workers") as info:
        summaries.check_parts_visible(str(out), 3)
    assert "2 of the 3" in str(info.value) and writer.part_name(1) in str(info.value)
    (out / writer.part_name(1)).write_bytes(b"x")
    (out / writer.part_name(2)).write_bytes(b"x")
    summaries.check_parts_visible(str(out), 3)


def test_local_paths_become_absolute_urls_do_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert inputs.absolute("out") == str(tmp_path / "out")
    assert inputs.absolute("file://rel/x") == "file://" + str(tmp_path / "rel" / "x")
    assert inputs.absolute("s3://bucket/key") == "s3://bucket/key"
    assert inputs.absolute(None) is None


def test_the_end_of_a_run_removes_temporaries_of_killed_writers_then_checks_every_part(tmp_path):
    out = tmp_path / "out"
    (out / quarantine.REJECTED_DIR).mkdir(parents=True)
    for b in range(2):
        (out / writer.part_name(b)).write_bytes(b"x")
    stale = [out / f".{writer.part_name(1)}{writer.TMP_MARKER}dead",
             out / quarantine.REJECTED_DIR / f".{writer.part_name(0)}{writer.TMP_MARKER}dead"]
    for path in stale:
        path.write_bytes(b"half")
    plan = plan_partitions(pd.Series({"a": 3, "b": 4}), 3, keep_order=True)
    from types import SimpleNamespace

    ctx = SimpleNamespace(out=str(out), plan=plan, storage_options=None, targets=())
    assert plan.n_bins == 2
    summaries.check_outputs_visible(ctx)
    assert not any(path.exists() for path in stale)
    (out / writer.part_name(1)).unlink()
    with pytest.raises(RunFailure, match="not on a filesystem shared"):
        summaries.check_outputs_visible(ctx)

"""Track-only selection through the engine: a Parquet track is scanned at the floor
(``inputs.scanned_inputs``) and the run's outputs equal those of the full read (the engine's path
for every other input, forced here): the written rows value for value, the quarantined track rows,
the counts and the warnings; for genes split across row groups and files, and a shuffled track."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dask_enrich.engine import run as engine_run
from dask_enrich.engine.run import run_enrichment
from dask_enrich.manifest import manifest_from_names

from ..test_trackscan import CONFIG, generated_track, write_files
from .conftest import client  # noqa: F401 (fixture)

MANIFEST = manifest_from_names(["donor_diff_m1", "acceptor_diff_p2", "context_neighbor_mean",
                                "donor_is_local_peak", "splice_probability"], name="scores")


def _run(track, out, client, full: bool, monkeypatch, **kwargs):  # noqa: F811
    with monkeypatch.context() as patch:
        if full:  # the full read of every track row, as for any other input
            patch.setattr(engine_run, "scan_applies", lambda sources, selective: False)
        return run_enrichment(None, MANIFEST, str(out), track=str(track), client=client,
                              partition_rows=700, config=CONFIG, **kwargs)


def _rows(out) -> pd.DataFrame:
    frame = pd.read_parquet(out)
    return frame.sort_values(["gene_id", "position"], kind="stable").reset_index(drop=True)


def _rejected(out) -> pd.DataFrame:
    frame = pd.read_parquet(out / "_rejected-track")
    return frame.sort_values(["gene_id", "position", "reason"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("files,row_group,shuffle,required", [
    (1, 10_000, False, False), (3, 250, False, False), (2, 400, True, False), (2, 300, False, True)])
def test_scanned_selection_equals_the_full_read(client, tmp_path, monkeypatch, files, row_group,  # noqa: F811
                                                shuffle, required):
    frame = generated_track(seed=3, genes=10)
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    track = write_files(frame, tmp_path / "track", files, row_group, required_first=required)
    full = _run(track, tmp_path / "full", client, True, monkeypatch, on_bad_rows="quarantine")
    scanned = _run(track, tmp_path / "scanned", client, False, monkeypatch, on_bad_rows="quarantine")
    assert scanned.track_rows_rejected == full.track_rows_rejected > 0  # the generator's bad rows
    assert (scanned.rows_in, scanned.rows_written, scanned.rows_rejected) == \
        (full.rows_in, full.rows_written, full.rows_rejected)
    assert scanned.track_rows == full.track_rows == len(frame)
    assert scanned.warnings == full.warnings and scanned.imputed == full.imputed
    pd.testing.assert_frame_equal(_rows(tmp_path / "scanned"), _rows(tmp_path / "full"))
    pd.testing.assert_frame_equal(_rejected(tmp_path / "scanned"), _rejected(tmp_path / "full"))
    success = json.loads((tmp_path / "scanned" / "_SUCCESS.json").read_text())
    assert success["rejected"]["track_rows"] == full.track_rows_rejected
    assert success["rows"]["track"] == len(frame)


def _whole_gene_files(frame: pd.DataFrame, root, files: int, row_group: int):
    """``frame`` as ``files`` Parquet files of whole genes (each gene in one file: one scan piece)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    genes = pd.unique(frame["gene_id"])
    for k, part in enumerate(np.array_split(genes, files)):
        rows = frame[frame["gene_id"].isin(part)]
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False),
                       root / f"part-{k:03d}.parquet", row_group_size=row_group)
    return root


def test_scanned_selection_where_scanned_equals_the_full_read(client, tmp_path, monkeypatch):  # noqa: F811
    """Every gene in one piece: the bins follow the pieces (one task per piece, several bins each,
    nothing staged); the output, the quarantined rows and the counts equal the full read's, and a
    lost part is redone on resume."""
    frame = generated_track(seed=6, genes=12)
    track = _whole_gene_files(frame, tmp_path / "track", 3, 250)
    full = _run(track, tmp_path / "full", client, True, monkeypatch, on_bad_rows="quarantine")
    out = tmp_path / "scanned"
    scanned = _run(track, out, client, False, monkeypatch, on_bad_rows="quarantine")
    plan = json.loads((out / "_SUCCESS.json").read_text())["partitions"]["plan"]
    assert plan["follows_input"] and plan["bins"] > 3  # several bins per piece
    assert scanned.track_rows_rejected == full.track_rows_rejected > 0
    assert (scanned.rows_in, scanned.rows_written, scanned.rows_rejected) == \
        (full.rows_in, full.rows_written, full.rows_rejected)
    assert scanned.warnings == full.warnings and scanned.imputed == full.imputed
    expected = _rows(tmp_path / "full")
    pd.testing.assert_frame_equal(_rows(out), expected)
    pd.testing.assert_frame_equal(_rejected(out), _rejected(tmp_path / "full"))
    (out / "part-00002.parquet").unlink()
    again = _run(track, out, client, False, monkeypatch, on_bad_rows="quarantine", mode="resume")
    assert again.partitions_resumed == scanned.partitions - 1
    pd.testing.assert_frame_equal(_rows(out), expected)


def test_scanned_selection_refuses_bad_track_rows_by_default(client, tmp_path):  # noqa: F811
    track = write_files(generated_track(seed=4, genes=4), tmp_path / "track", 1, 10_000)
    with pytest.raises(Exception) as caught:
        run_enrichment(None, MANIFEST, str(tmp_path / "out"), track=str(track), client=client,
                       config=CONFIG)
    text = str(caught.value)
    assert "part-000.parquet" in text and "score" in text
    assert not list((tmp_path / "out").glob("part-*.parquet"))  # nothing enriched


def test_scanned_selection_resumes_to_the_same_output(client, tmp_path, monkeypatch):  # noqa: F811
    track = write_files(generated_track(seed=5, genes=8), tmp_path / "track", 2, 300)
    out = tmp_path / "out"
    first = _run(track, out, client, False, monkeypatch, on_bad_rows="quarantine")
    expected, rejected = _rows(out), _rejected(out)
    (out / "part-00001.parquet").unlink()  # a lost part: redone on resume, the rest kept
    again = _run(track, out, client, False, monkeypatch, on_bad_rows="quarantine", mode="resume")
    assert again.partitions_resumed == first.partitions - 1
    assert again.track_rows_rejected == first.track_rows_rejected
    pd.testing.assert_frame_equal(_rows(out), expected)
    pd.testing.assert_frame_equal(_rejected(out), rejected)
    assert np.array_equal(pd.read_parquet(out)["gene_id"].unique(), expected["gene_id"].unique())


@pytest.mark.parametrize("files,row_group,shuffle", [(1, 10_000, False), (3, 97, False), (3, 300, True)])
def test_positions_with_a_scanned_track_equal_the_full_read(client, tmp_path, monkeypatch, files,  # noqa: F811
                                                            row_group, shuffle):
    from .test_trackscan_stage import positions_from

    frame = generated_track(seed=5, genes=10)
    track = frame.sample(frac=1.0, random_state=1) if shuffle else frame
    track = write_files(track.reset_index(drop=True), tmp_path / "track", files, row_group)
    positions = tmp_path / "positions.parquet"
    positions_from(frame, 200, seed=6).to_parquet(positions)

    def run(out, full):
        with monkeypatch.context() as patch:
            if full:
                patch.setattr(engine_run, "scan_applies", lambda sources, selective: False)
            return run_enrichment(str(positions), MANIFEST, str(out), track=str(track), client=client,
                                  partition_rows=300, config=CONFIG, on_bad_rows="quarantine")

    full, scanned = run(tmp_path / "full", True), run(tmp_path / "scanned", False)
    assert scanned.track_rows_rejected == full.track_rows_rejected > 0
    assert (scanned.rows_in, scanned.rows_written) == (full.rows_in, full.rows_written) == (200, 200)
    assert scanned.warnings == full.warnings and scanned.imputed == full.imputed
    pd.testing.assert_frame_equal(_rows(tmp_path / "scanned"), _rows(tmp_path / "full"))
    pd.testing.assert_frame_equal(_rejected(tmp_path / "scanned"), _rejected(tmp_path / "full"))
    # bins packed by the rows they receive (positions, their neighbours, the genes' end and bad
    # rows), not by every track row of their genes as the full read's bins hold them
    assert scanned.partitions < full.partitions

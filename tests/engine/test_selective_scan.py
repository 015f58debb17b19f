"""``--selective`` on a scanned Parquet track (``engine/selective.py``): the outputs equal those of
the full read (the engine's path for every other input, forced here by ``scan_applies`` False):
every part file row for row and value for value, the rejected rows in ``OUT/_rejected/``, the
counts, warnings and ``_SUCCESS.json``; for gaps, bad rows, repeats, genes split across row groups
and files, rows unsorted within pieces, a track shuffled across files (read in full), rows the
annotation rejects (bins redone as a full read), and resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dask_enrich.engine import run as engine_run
from dask_enrich.engine import writer
from dask_enrich.engine.models import ScoreOptions
from dask_enrich.engine.run import run_enrichment
from dask_enrich.genome.cache import load_cached

from ..test_trackscan import CONFIG, generated_track, write_files
from .conftest import MODEL_DIR, client, full_track, slice_cache, write_grouped  # noqa: F401

pytest.importorskip("xgboost")
SELECTIVE = ScoreOptions(selective=True)


def _run(track, out, client, full: bool, monkeypatch, **kwargs):  # noqa: F811
    said: list[str] = []
    with monkeypatch.context() as patch:
        if full:  # the full read of every track row, as for any other input
            patch.setattr(engine_run, "scan_applies", lambda sources, selective: False)
        kwargs.setdefault("config", CONFIG)
        summary = run_enrichment(None, MODEL_DIR, str(out), track=str(track), client=client,
                                 score=SELECTIVE, log=said.append, **kwargs)
    return summary, said


def _parts(out) -> list[pd.DataFrame]:
    return [pd.read_parquet(f) for f in writer.part_files(str(out))]


def _rejected(out) -> pd.DataFrame:
    path = out / writer.REJECTED_DIR
    if not path.exists():
        return pd.DataFrame()
    frames = [pd.read_parquet(f) for f in sorted(path.glob("part-*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def _success(out) -> dict:
    record = json.loads((out / writer.SUCCESS_FILE).read_text())
    for key in ("started", "finished", "timings_s", "positions_per_second", "dashboard"):
        record.pop(key, None)
    return record


def assert_same_outputs(scanned, full, out_scanned, out_full, *, same_parts: bool = True) -> None:
    """The scanned run's outputs equal the full read's."""
    (a, _), (b, _) = scanned, full
    assert (a.rows_in, a.rows_written, a.rows_rejected, a.partitions) == \
        (b.rows_in, b.rows_written, b.rows_rejected, b.partitions)
    assert a.track_rows == b.track_rows and a.track_rows_rejected == b.track_rows_rejected
    assert a.warnings == b.warnings and a.imputed == b.imputed
    got, want = _parts(out_scanned), _parts(out_full)
    if same_parts:  # the same plan: each part file holds the same rows, in the same order
        assert len(got) == len(want)
        for x, y in zip(got, want):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
    keys = ["gene_id", "position"]
    pd.testing.assert_frame_equal(
        pd.concat(got).sort_values(keys, kind="stable").reset_index(drop=True),
        pd.concat(want).sort_values(keys, kind="stable").reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(_rejected(out_scanned), _rejected(out_full), check_exact=True)
    assert _success(out_scanned) == _success(out_full)


@pytest.mark.parametrize("files,row_group,shuffle", [
    (1, 10_000, None),      # one piece: bins packed across it
    (3, 250, None),         # genes split across row groups and files
    (3, 97, "within"),      # rows unsorted within each file (the track still in gene runs)
    (2, 400, "across"),     # shuffled across files: read in full
    (2, 300, "required"),   # the first file's columns required (as predict-base's), the other's not
])
def test_selective_scan_equals_the_full_read(client, tmp_path, monkeypatch, files, row_group,  # noqa: F811
                                             shuffle):
    frame = generated_track(seed=3, genes=10)
    if shuffle == "across":
        frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    track = write_files(frame, tmp_path / "track", files, row_group,
                        required_first=shuffle == "required")
    if shuffle == "within":  # each file's rows in random order
        for k, path in enumerate(sorted(track.glob("*.parquet"))):
            part = pq.read_table(path).to_pandas().sample(frac=1.0, random_state=k)
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path,
                           row_group_size=row_group)
    full = _run(track, tmp_path / "full", client, True, monkeypatch, partition_rows=700,
                on_bad_rows="quarantine")
    scanned = _run(track, tmp_path / "scanned", client, False, monkeypatch, partition_rows=700,
                   on_bad_rows="quarantine")
    assert full[0].rows_rejected > 0 and full[0].warnings  # the generator's bad rows and repeats
    assert full[0].rows_in == len(frame) == full[0].rows_written + full[0].rows_rejected
    assert_same_outputs(scanned, full, tmp_path / "scanned", tmp_path / "full")
    read_in_full = any("read in full" in line for line in scanned[1])
    assert read_in_full == (shuffle == "across")
    if not read_in_full:
        assert any("track scanned" in line for line in scanned[1])


def test_selective_scan_bins_that_follow_the_files(client, tmp_path, monkeypatch):  # noqa: F811
    """Files of whole genes: the plan's bins follow the pieces (one task per piece)."""
    frame = generated_track(seed=8, genes=12)
    write_grouped(frame, tmp_path / "track", 4)
    full = _run(tmp_path / "track", tmp_path / "full", client, True, monkeypatch,
                partition_rows=900, on_bad_rows="quarantine")
    scanned = _run(tmp_path / "track", tmp_path / "scanned", client, False, monkeypatch,
                   partition_rows=900, on_bad_rows="quarantine")
    assert any("each enriched where it is read" in line for line in scanned[1])
    assert any("track scanned" in line for line in scanned[1])
    assert_same_outputs(scanned, full, tmp_path / "scanned", tmp_path / "full")


def _annotated_track(cache_path: str, seed: int) -> pd.DataFrame:
    """A track over real genes with strand and chrom, and rows the annotation rejects, each inside
    its gene's run of rows: a position past a gene's end, a row with the other strand, a repeat
    whose first copy carries the other strand (the repeat is the good row), a repeat whose second
    copy does (a strand mismatch, not a repeat), and a gene the annotation lacks."""
    genes = load_cached(cache_path).gene_table.iloc[[3, 20, 50, 90]]
    track = full_track(genes, seed=seed)
    track["strand"] = genes["strand"].reindex(track["gene_id"]).to_numpy().astype(str)
    track["chrom"] = genes["seqname"].reindex(track["gene_id"]).to_numpy().astype(str)
    flip = {"+": "-", "-": "+"}
    middle = len(track) // 2
    track.loc[middle, "strand"] = flip[track.loc[middle, "strand"]]
    end = int(np.flatnonzero(track["gene_id"] == genes.index[0])[-1]) + 1
    outside = track.iloc[[end - 1]].assign(position=track["position"].iloc[end - 1] + 5)
    first = track.iloc[[100]].assign(strand=flip[track["strand"].iloc[100]])
    later = len(track) - 30  # a repeat whose second copy carries the other strand
    second = track.iloc[[later]].assign(strand=flip[track["strand"].iloc[later]])
    stranger = track.iloc[[10]].assign(gene_id="NOT_A_GENE")
    # the unknown gene first: the last bin's only bad row is the second copy of the repeat
    return pd.concat([stranger, track.iloc[:100], first, track.iloc[100:end], outside,
                      track.iloc[end:later + 1], second, track.iloc[later + 1:]],
                     ignore_index=True)


def test_selective_scan_with_rows_the_annotation_rejects(client, slice_cache, tmp_path,  # noqa: F811
                                                         monkeypatch):
    track = _annotated_track(slice_cache, seed=2)
    write_files(track, tmp_path / "track", 2, 3_000)
    kwargs = {"cache": slice_cache, "partition_rows": 4_000, "on_bad_rows": "quarantine"}
    full = _run(tmp_path / "track", tmp_path / "full", client, True, monkeypatch, **kwargs)
    scanned = _run(tmp_path / "track", tmp_path / "scanned", client, False, monkeypatch, **kwargs)
    reasons = _rejected(tmp_path / "full")["reason"].str.split(":").str[0]
    assert sorted(reasons) == ["gene_not_in_annotation", "position_outside_gene", "strand_mismatch",
                               "strand_mismatch", "strand_mismatch"]
    assert full[0].partitions > 2 and any("track scanned" in line for line in scanned[1])
    assert_same_outputs(scanned, full, tmp_path / "scanned", tmp_path / "full")
    # the good copy of the repeated row is written once, with its own strand
    got = pd.concat(_parts(tmp_path / "scanned"))
    assert not got.duplicated(["gene_id", "position"]).any()


def test_selective_scan_refuses_bad_rows_by_default(client, tmp_path):  # noqa: F811
    track = write_files(generated_track(seed=4, genes=4), tmp_path / "track", 1, 10_000)
    with pytest.raises(Exception) as caught:
        run_enrichment(None, MODEL_DIR, str(tmp_path / "out"), track=str(track), client=client,
                       config=CONFIG, score=SELECTIVE)
    text = str(caught.value)
    assert "part-000.parquet" in text and "score" in text
    assert not list((tmp_path / "out").glob("part-*.parquet"))


def test_selective_scan_resumes_to_the_same_output(client, tmp_path, monkeypatch):  # noqa: F811
    track = write_files(generated_track(seed=5, genes=8), tmp_path / "track", 2, 300)
    out = tmp_path / "out"
    first, _ = _run(track, out, client, False, monkeypatch, partition_rows=700,
                    on_bad_rows="quarantine")
    expected, rejected = _parts(out), _rejected(out)
    assert first.partitions > 2 and len(rejected)
    (out / writer.part_name(1)).unlink()  # a lost part: redone on resume, the rest kept
    again, _ = _run(track, out, client, False, monkeypatch, partition_rows=700,
                    on_bad_rows="quarantine", mode="resume")
    assert again.partitions_resumed == first.partitions - 1
    assert (again.rows_in, again.rows_written, again.rows_rejected) == \
        (first.rows_in, first.rows_written, first.rows_rejected)
    for x, y in zip(_parts(out), expected, strict=True):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    pd.testing.assert_frame_equal(_rejected(out), rejected)


def test_a_csv_track_keeps_the_full_read(client, tmp_path, monkeypatch):  # noqa: F811
    frame = generated_track(seed=6, genes=5)
    frame.to_csv(tmp_path / "track.csv", index=False)
    summary, said = _run(tmp_path / "track.csv", tmp_path / "out", client, False, monkeypatch,
                         on_bad_rows="quarantine")
    assert not any("track scanned" in line for line in said)
    assert summary.rows_in == len(frame) == summary.rows_written + summary.rows_rejected

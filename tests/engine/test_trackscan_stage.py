"""The track scan stage on a real LocalCluster (engine/trackscan_stage.py): selected rows, their
context values (through core.enrich with the 43 score features) and the bad-row counts equal
today's full path, for genes split across row groups and files, and unsorted tracks."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from dask_enrich import trackscan as ts
from dask_enrich import validate
from dask_enrich.engine.trackscan_stage import scan_track
from dask_enrich.io import POSITION_COLUMNS, inspect_input, wanted_columns

from ..test_trackscan import (
    CONFIG,
    DEMO_TRACK,
    enrich_from_scan,
    full_path,
    generated_track,
    write_files,
)
from .conftest import client  # noqa: F401 (fixture)


def run_stage(client, path, blocksize=1):  # noqa: F811
    source = inspect_input(str(path), label="track")
    columns = tuple(wanted_columns(source, POSITION_COLUMNS))
    spec = ts.ScanSpec(columns, config=CONFIG, source=source.path)
    return scan_track(client, source, spec, blocksize=blocksize)


def check_equal(result, path):
    full, rejected = full_path(path)
    selected = result.selected.compute()
    context = result.context.compute()
    assert len(selected) == len(full)
    pd.testing.assert_frame_equal(enrich_from_scan(selected, context), full)
    expected = validate.reason_code(rejected["reason"]).value_counts().to_dict()
    assert result.rejected_counts == expected
    got = result.rejected.compute()
    assert len(got) == len(rejected)
    assert sorted(got["reason"]) == sorted(rejected["reason"])
    # rows per gene: good rows and selected rows as the full path has them
    source = inspect_input(str(path), label="track")
    from dask_enrich.io import read_pandas

    frame = read_pandas(source, list(wanted_columns(source, POSITION_COLUMNS)))
    good, _, warnings = validate.split_bad_rows(frame, source="x", config=CONFIG)
    assert result.warnings == warnings
    genes = result.genes.set_index("gene_id")
    per_gene = good.groupby("gene_id").size()
    assert genes.loc[per_gene.index, "good"].tolist() == per_gene.tolist()
    assert genes.loc[per_gene.index, "min_position"].tolist() == \
        good.groupby("gene_id")["position"].min().tolist()
    chosen = full.groupby("gene_id").size()
    assert genes.loc[chosen.index, "selected"].tolist() == chosen.tolist()
    return selected, context


def test_demo_track(client):  # noqa: F811
    result = run_stage(client, DEMO_TRACK)
    assert result.rows == 71459 and result.pieces == 24
    check_equal(result, DEMO_TRACK)
    assert result.genes["rows"].sum() == 71459


@pytest.mark.parametrize("files,row_group", [(1, 10_000), (1, 97), (3, 97), (5, 1000)])
def test_split_genes(client, tmp_path, files, row_group):  # noqa: F811
    frame = generated_track(seed=1)
    path = write_files(frame, tmp_path / "t", files=files, row_group=row_group)
    result = run_stage(client, path)
    selected, context = check_equal(result, path)
    # rows per gene: every row, in order of first appearance
    counts = frame.groupby("gene_id", sort=False).size()
    assert result.genes["gene_id"].tolist() == counts.index.tolist()
    assert result.genes["rows"].tolist() == counts.tolist()
    assert result.genes["selected"].sum() == len(selected)
    # the pieces of a gene, as today's pass over gene_id gives them (pieces = input pieces)
    assert (result.genes["pieces"] >= 1).all() and result.genes["piece"].is_monotonic_increasing
    if row_group < 1000:  # genes cut across pieces: the second pass had work to do
        assert result.second_pass["pieces"] > 0
    # each track row at most once among the context rows
    assert not context.duplicated([ts.PIECE, ts.ROW]).any()


def test_unsorted_track(client, tmp_path):  # noqa: F811
    frame = generated_track(seed=2)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = write_files(shuffled, tmp_path / "u", files=3, row_group=300)
    result = run_stage(client, path)
    assert not result.sorted
    check_equal(result, path)


def test_csv_blocks(client, tmp_path):  # noqa: F811
    frame = generated_track(seed=8, genes=6)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    result = run_stage(client, path, blocksize=8192)  # blocks cut genes (CSV pieces are read whole)
    assert result.pieces > 3
    check_equal(result, path)


def test_repeat_across_pieces_is_reported(client, tmp_path):  # noqa: F811
    frame = generated_track(seed=4, genes=3)
    # a copy of a row of the first file in the last file: a repeat across pieces
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    path = write_files(frame, tmp_path / "r", files=2, row_group=10_000)
    result = run_stage(client, path)
    assert result.cross_piece_repeats == 1
    check_equal(result, path)
    assert result.warnings["duplicate_position"]["count"] == 3  # 2 within a piece, 1 across


def test_gene_without_id_is_refused(client, tmp_path):  # noqa: F811
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dask_enrich.errors import InputError

    table = pa.table({"gene_id": ["A", None], "position": [1, 2], "donor_score": [0.1, 0.1],
                      "acceptor_score": [0.1, 0.1], "neither_score": [0.8, 0.8]})
    pq.write_table(table, tmp_path / "n.parquet")
    with pytest.raises(InputError, match="1 row\\(s\\) have no gene_id"):
        run_stage(client, tmp_path / "n.parquet")


# --- positions given with a track ---------------------------------------------------------------
def positions_from(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` positions of the track's genes (some at gaps or bad rows), with scores, shuffled,
    leaving out the last gene (its track rows must not be read)."""
    rng = np.random.default_rng(seed)
    genes = frame["gene_id"].unique()[:-1]
    rows = frame[frame["gene_id"].isin(genes)]
    take = rows.iloc[rng.choice(len(rows), n, replace=False)][["gene_id", "position", "strand"]]
    take = take.drop_duplicates(["gene_id", "position"])
    d = rng.uniform(0, 0.5, len(take))
    return take.assign(donor_score=d, acceptor_score=0.1, neither_score=0.9 - d).reset_index(drop=True)


@pytest.mark.parametrize("files,row_group,shuffle", [(1, 10_000, False), (3, 97, False), (3, 300, True)])
def test_positions_with_track(client, tmp_path, files, row_group, shuffle):  # noqa: F811
    from dask_enrich.core import enrich
    from dask_enrich.engine.trackscan_stage import track_context
    from dask_enrich.io import TRACK_COLUMNS, read_pandas

    from ..test_trackscan import SCORE_MANIFEST, sort_like_bin

    frame = generated_track(seed=5)
    track = frame.sample(frac=1.0, random_state=1) if shuffle else frame
    path = write_files(track.reset_index(drop=True), tmp_path / "t", files=files, row_group=row_group)
    positions = positions_from(frame, 150, seed=6)
    source = inspect_input(str(path), label="track")
    columns = (*TRACK_COLUMNS, "strand")
    spec = ts.ScanSpec(columns, selection=None, config=CONFIG, lenient=True, source=source.path)
    import dask.dataframe as dd

    result = track_context(client, source, spec, dd.from_pandas(positions, npartitions=3),
                           blocksize=1)  # a piece per row group
    context = result.context.compute()
    # today: every track row of the positions' genes checked, the good ones the track
    full = read_pandas(source, list(columns))
    full = full[full["gene_id"].isin(positions["gene_id"])]
    good, rejected, warnings = validate.split_bad_rows(full, source=source.path, config=CONFIG)
    expected, _ = enrich(sort_like_bin(positions), SCORE_MANIFEST, track=sort_like_bin(good),
                         config=CONFIG)
    got, _ = enrich(sort_like_bin(positions), SCORE_MANIFEST, track=sort_like_bin(
        context.sort_values([ts.PIECE, ts.ROW]).drop(columns=[ts.PIECE, ts.ROW])), config=CONFIG)
    pd.testing.assert_frame_equal(got, expected)
    assert result.rejected_counts == validate.reason_code(rejected["reason"]).value_counts().to_dict()
    assert len(result.rejected.compute()) == len(rejected)
    assert result.warnings == warnings
    assert len(context) < len(good) / 3  # the neighbours and end rows only
    if not shuffle and row_group < 1000:  # sorted: the last gene's row groups are not read
        assert result.pieces_read < result.pieces


def test_rows_per_gene_as_the_engine_counts_them(client, tmp_path):  # noqa: F811
    from dask_enrich.engine.inputs import gene_counts as _gene_counts

    frame = generated_track(seed=11)
    for files, split in ((3, True), (1, False)):  # files cut inside genes, or one file
        path = write_files(frame, tmp_path / f"g{files}", files=files, row_group=97)
        result = run_stage(client, path, blocksize="128MiB")  # the engine's pieces
        counts, parts = _gene_counts(inspect_input(str(path), label="track"))
        genes = result.genes.set_index("gene_id")
        assert genes.index.tolist() == counts.index.tolist()  # first appearance
        assert genes["rows"].tolist() == counts.tolist()
        assert (parts is None) == split == bool((genes["pieces"] > 1).any())
        if parts is not None:
            assert genes["piece"].tolist() == parts.tolist()


def test_a_failed_task_after_the_scan_is_raised_without_gathering(client):  # noqa: F811
    import operator

    from dask_enrich.engine.trackscan_stage import _raise_failed

    ok = client.submit(operator.add, 1, 1, pure=False)
    failed = client.submit(operator.truediv, 1, 0, pure=False)
    with pytest.raises(ZeroDivisionError):
        _raise_failed([ok, failed])
    _raise_failed([ok])  # all done: nothing raised
    assert ok.status == "finished"


def test_a_scan_task_parks_its_rows_and_they_move_between_workers(client):  # noqa: F811
    """What a scan task leaves on its worker: a summary in memory (Dask's sizeof a small fraction
    of the frames), the frames in files of that worker's local directory, equal to the scan's;
    read by a task on the other worker (Dask moves the file's bytes), still equal."""
    from dask.sizeof import sizeof

    from dask_enrich.engine import trackscan_stage as stage

    source = inspect_input(str(DEMO_TRACK), label="track")
    spec = ts.ScanSpec(tuple(wanted_columns(source, POSITION_COLUMNS)), source=source.path)
    piece = (str(DEMO_TRACK), None)
    scan = ts.scan_piece(source, piece, 0, spec)
    first, other = sorted(client.scheduler_info()["workers"])[:2]
    kept = client.submit(stage._scan_kept, source, piece, 0, spec, workers=[first], pure=False)
    paths = client.submit(lambda k: {n: p.path for n, p in k.frames.items()}, kept,
                          workers=[first], pure=False).result()
    on_disk = client.run(lambda: {n: os.path.exists(p) for n, p in paths.items()},
                         workers=[first])[first]
    assert on_disk == {"selected": True, "context": True, "rejected": True}
    size = client.submit(sizeof, kept, workers=[first], pure=False).result()
    frames = scan.selected.memory_usage(deep=True).sum() + scan.context.memory_usage(deep=True).sum()
    assert len(scan.context) > 1000 and size < 0.2 * frames
    for name in ("selected", "context", "rejected"):
        got = client.submit(lambda k, n=name: k.frame(n), kept, workers=[other], pure=False).result()
        pd.testing.assert_frame_equal(got, getattr(scan, name))
    assert client.submit(stage._summary_of, kept, pure=False).result()["rows"] == scan.rows
    del kept


def test_the_parked_rows_are_deleted_once_a_scan_is_released(client):  # noqa: F811
    """While a scan is held, its rows are files on its worker; released, the files go (no scan
    leaves its rows behind on the workers' disks)."""
    import time

    from distributed import wait

    from dask_enrich.engine import trackscan_stage as stage

    def existing(paths: list[str]) -> int:
        return sum(os.path.exists(p) for p in paths)

    source = inspect_input(str(DEMO_TRACK), label="track")
    spec = ts.ScanSpec(tuple(wanted_columns(source, POSITION_COLUMNS)), source=source.path)
    kept = client.submit(stage._scan_kept, source, (str(DEMO_TRACK), None), 0, spec, pure=False)
    wait(kept)
    where = next(iter(client.who_has(kept)[kept.key]))
    paths = client.submit(lambda k: [p.path for p in k.frames.values()], kept, workers=[where],
                          pure=False).result()
    assert client.run(existing, paths, workers=[where])[where] == 3
    del kept
    deadline = time.monotonic() + 10
    while client.run(existing, paths, workers=[where])[where] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run(existing, paths, workers=[where])[where] == 0


def test_a_scan_task_reads_from_mimalloc_and_leaves_the_default_pool_as_it_was(monkeypatch):
    """The scan task's buffers come from Arrow's mimalloc pool (where pyarrow has it); after the
    task, and after one that failed, the default pool is the one before; its result is the scan's."""
    import pyarrow as pa

    from dask_enrich.engine import trackscan_stage as stage

    try:
        pa.mimalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("pyarrow built without mimalloc")
    source = inspect_input(str(DEMO_TRACK), label="track")
    spec = ts.ScanSpec(tuple(wanted_columns(source, POSITION_COLUMNS)), source=source.path)
    piece = (str(DEMO_TRACK), None)
    expected = ts.scan_piece(source, piece, 0, spec)
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())  # a LocalCluster worker's default
    try:
        seen = []

        def scan(*args):
            seen.append(pa.default_memory_pool().backend_name)
            return ts.scan_piece(*args)

        monkeypatch.setattr(stage, "scan_piece", scan)
        kept = stage._scan_kept(source, piece, 0, spec)
        assert seen == ["mimalloc"] and pa.default_memory_pool().backend_name == "system"
        pd.testing.assert_frame_equal(kept.frame("selected"), expected.selected)
        monkeypatch.setattr(stage, "scan_piece", lambda *args: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            stage._scan_kept(source, piece, 0, spec)
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)

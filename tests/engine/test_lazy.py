"""``enrich_dask``: the lazy Dask DataFrame API equals ``run`` row for row on the real slice,
computes nothing until asked, and keeps the genomic cache and the track out of the graph."""
from __future__ import annotations

import pickle
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from dask_enrich import EnrichConfig
from dask_enrich.engine.lazy import enrich_dask
from dask_enrich.engine.run import run_enrichment
from dask_enrich.errors import InputError
from dask_enrich.genome.cache import load_cached

from .conftest import MODEL_DIR, client, full_track, slice_cache  # noqa: F401

KEEP = EnrichConfig(keep_columns=("row_id",))


@pytest.fixture(scope="module")
def inputs(slice_cache, tmp_path_factory):  # noqa: F811
    """Positions in 16 real genes of the slice (both strands) and their full track, as files."""
    root = tmp_path_factory.mktemp("lazy")
    genes = load_cached(slice_cache).gene_table.iloc[::25]
    track = full_track(genes, seed=4)
    positions = track.sample(4_000, random_state=5).reset_index(drop=True)
    positions["row_id"] = np.arange(len(positions), dtype=np.int64)
    positions.to_parquet(root / "positions.parquet", row_group_size=1_000)  # 4 partitions
    track.to_parquet(root / "track.parquet", row_group_size=20_000)
    return {"positions": root / "positions.parquet", "track": root / "track.parquet",
            "cache": slice_cache, "rows": len(positions)}


def _lazy(inputs):
    frame = dd.read_parquet(str(inputs["positions"]), split_row_groups=True)  # 4 partitions
    return enrich_dask(frame, MODEL_DIR, cache=inputs["cache"], track=str(inputs["track"]),
                       config=KEEP)


def test_equals_run_row_for_row_on_the_real_slice(inputs, client, tmp_path):  # noqa: F811
    run_enrichment(str(inputs["positions"]), MODEL_DIR, str(tmp_path / "out"),
                   track=str(inputs["track"]), cache=inputs["cache"], config=KEEP,
                   partition_rows=3_000, client=client)
    want = pd.read_parquet(tmp_path / "out").sort_values("row_id").reset_index(drop=True)
    got = client.compute(_lazy(inputs)).result()  # worker processes: everything pickles
    got = got.sort_values("row_id").reset_index(drop=True)
    assert len(got) == inputs["rows"] == len(want) and list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=True)


def test_lazy_until_asked_and_composable(inputs, tmp_path):
    ran: list[int] = []

    def counting_get(graph, keys, **kwargs):
        ran.append(len(graph))
        return dask.get(graph, keys, **kwargs)

    # the shuffle by gene with the tasks method: this test's scheduler is not a distributed one
    with dask.config.set(scheduler=counting_get, **{"dataframe.shuffle.method": "tasks"}):
        result = _lazy(inputs)
        rows = result.map_partitions(len)  # further map_partitions stays lazy too
        assert ran == []  # building it computed nothing
        assert result.npartitions == 4  # the shuffle by gene keeps the input's count
        assert int(rows.sum().compute()) == inputs["rows"]
        assert len(ran) == 1 and ran[0] > 0
        result.to_parquet(tmp_path / "written")
    written = pd.read_parquet(tmp_path / "written").sort_values("row_id").reset_index(drop=True)
    direct = result.compute(scheduler="sync").sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(written, direct, check_exact=True)


def test_graph_holds_neither_the_cache_nor_the_track(inputs):
    graph = dict(_lazy(inputs).__dask_graph__())
    size = len(pickle.dumps(graph))
    cache_bytes = sum(p.stat().st_size for p in Path(inputs["cache"]).rglob("*") if p.is_file())
    track_bytes = Path(inputs["track"]).stat().st_size
    assert cache_bytes > 500_000 and track_bytes > 200_000
    assert size < 100_000, size  # a small context key and one task per partition

    def frames(node):
        if isinstance(node, pd.DataFrame):
            yield node
        elif isinstance(node, (tuple, list)):
            for item in node:
                yield from frames(item)
        elif isinstance(node, dict):
            for item in node.values():
                yield from frames(item)
    assert all(len(f) == 0 for f in frames(list(graph.values())))  # only empty metas


def test_bad_inputs_are_named_before_anything_runs(inputs):
    frame = dd.read_parquet(str(inputs["positions"])).drop(columns=["donor_score"])
    with pytest.raises(InputError, match="donor_score"):
        enrich_dask(frame, MODEL_DIR, cache=inputs["cache"], track=str(inputs["track"]))
    with pytest.raises(Exception, match="dask.dataframe"):
        enrich_dask(pd.read_parquet(inputs["positions"]), MODEL_DIR, cache=inputs["cache"])


def test_a_bad_row_fails_the_compute_naming_it(inputs):
    positions = pd.read_parquet(inputs["positions"]).head(50)
    positions.loc[7, "donor_score"] = np.nan
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):  # computed without the cluster
        lazy = enrich_dask(dd.from_pandas(positions, npartitions=2), MODEL_DIR, cache=inputs["cache"],
                           track=str(inputs["track"]), config=KEEP)  # building it checks no row
    with pytest.raises(InputError, match="enrich_dask"):
        lazy.compute(scheduler="sync")


def test_each_task_reads_only_the_track_pieces_of_its_genes(tmp_path):
    """A track sorted by gene in three row groups: the rows of genes B and E come from the
    pieces whose gene id range holds them; the others are not read."""
    from dask_enrich.engine.lazy import _gene_ranges, _read_track_rows
    from dask_enrich.io import input_pieces, inspect_input

    track = pd.DataFrame({"gene_id": list("AABBCCDDEEFF"), "position": np.arange(12, dtype=np.int64),
                          "donor_score": 0.1, "acceptor_score": 0.2})
    track.to_parquet(tmp_path / "t.parquet", row_group_size=4)  # A-B, C-D, E-F
    source = inspect_input(str(tmp_path / "t.parquet"), label="track")
    reader, pieces, _ = input_pieces(source, list(track.columns), blocksize=1)
    assert len(pieces) == 3
    ranges = _gene_ranges(source, pieces)
    assert ranges == [("A", "B"), ("C", "D"), ("E", "F")]
    read = []

    def counting(piece):
        read.append(piece)
        return reader(piece)

    rows = _read_track_rows(np.array(["E", "B", "B"]), counting, pieces, ranges)
    assert sorted(set(rows["gene_id"])) == ["B", "E"] and len(rows) == 4
    assert read == [pieces[0], pieces[2]]
    assert _read_track_rows(np.array(["Z"]), counting, pieces, ranges) is None


def test_a_gene_split_over_partitions_is_checked_whole(inputs):
    """Input partitions that split a gene, with one position repeated across the split: by gene
    (the default) the repeat is found, as run finds it; by_gene=False keeps the input's
    partitions, and each half looks clean."""
    positions = pd.read_parquet(inputs["positions"])
    gene = positions["gene_id"].value_counts().index[0]
    rows = positions[positions["gene_id"] == gene].head(20).reset_index(drop=True)
    frame = pd.concat([rows, rows.iloc[[0]]], ignore_index=True)  # row 20 repeats row 0
    split = dd.from_pandas(frame, npartitions=2, sort=False)
    assert split.npartitions == 2 and len(split.partitions[0]) < len(frame)
    with pytest.raises(InputError, match="duplicate_position"), \
            dask.config.set({"dataframe.shuffle.method": "tasks"}):  # computed without the cluster
        enrich_dask(split, MODEL_DIR, cache=inputs["cache"], track=str(inputs["track"]),
                    config=KEEP).compute(scheduler="sync")
    kept = enrich_dask(split, MODEL_DIR, cache=inputs["cache"], track=str(inputs["track"]),
                       config=KEEP, by_gene=False).compute(scheduler="sync")
    assert len(kept) == len(frame)

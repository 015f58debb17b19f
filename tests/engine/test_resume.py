"""Resume can never duplicate or lose a gene: the plan does not depend on the cluster, kept parts
are verified (record, genes, rows, bytes), and a part that fails is redone and reported."""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.manifest import manifest_from_names

from .conftest import follows_input, write_grouped

KEEP = EnrichConfig(keep_columns=("row_id",))
SCORES_ONLY = manifest_from_names(["donor_score", "splice_probability", "donor_acceptor_logodds",
                                   "score_difference_ratio"])


def _positions(sizes: list[int], seed: int) -> pd.DataFrame:
    """Gene i with ``sizes[i]`` distinct positions (gene i spans 10,000 nt from 10,000 * i + 1)."""
    rng = np.random.default_rng(seed)
    gene = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.concatenate([rng.choice(10_000, n, replace=False) for n in sizes])
    n = len(gene)
    d, a = rng.random(n) * 0.6, rng.random(n) * 0.3
    return pd.DataFrame({"gene_id": pd.Series([f"G{g:03d}" for g in gene], dtype="str"),
                         "position": (10_000 * gene + 1 + offset).astype(np.int64),
                         "donor_score": d, "acceptor_score": a, "neither_score": 1.0 - d - a,
                         "row_id": np.arange(n, dtype=np.int64)})


def _rows(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in writer.part_files(str(out))], ignore_index=True)


def _assert_identical(out: Path, reference: Path) -> None:
    """The same files, each with the same rows (bit for bit), and no row twice."""
    names = [Path(p).name for p in writer.part_files(str(out))]
    assert names == [Path(p).name for p in writer.part_files(str(reference))]
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(reference / name),
                                      check_exact=True)
    rows = _rows(out)
    assert rows["row_id"].is_unique and len(rows) == len(_rows(reference))


@pytest.fixture(scope="module")
def three_workers():
    from distributed import Client

    from dask_enrich.engine import make_local_cluster

    cluster = make_local_cluster(workers=3, threads_per_worker=1, processes=True)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("sizes", [
    [100] * 20,                                                       # genes of equal sizes
    list(np.random.default_rng(3).integers(5, 400, 24)),              # of unequal sizes
], ids=["equal", "unequal"])
def test_interrupted_on_two_workers_resumed_on_three_equals_a_clean_run(client, three_workers,
                                                                        tmp_path, sizes):
    """Input grouped by gene in two files: where it is read or through the exchange, the plan must
    be the same on 2 and 3 workers, so resume keeps the complete parts and redoes the rest."""
    positions = _positions(sizes, seed=len(sizes))
    write_grouped(positions, tmp_path / "in", files=2)
    args = (str(tmp_path / "in"), SCORES_ONLY)
    kwargs = dict(config=KEEP, partition_rows=300)
    full = run_enrichment(*args, str(tmp_path / "clean"), client=client, **kwargs)
    assert full.partitions >= 6
    # the state an interrupted run on 2 workers leaves: some parts, no _SUCCESS.json
    shutil.copytree(tmp_path / "clean", tmp_path / "cut")
    cut = tmp_path / "cut"
    for b in (1, full.partitions - 2):
        (cut / writer.part_name(b)).unlink()
    (cut / writer.SUCCESS_FILE).unlink()
    resumed = run_enrichment(*args, str(cut), client=three_workers, mode="resume", **kwargs)
    assert sum(three_workers.nthreads().values()) == 3
    assert resumed.partitions == full.partitions
    assert resumed.partitions_resumed == full.partitions - 2 and not resumed.partitions_redone
    assert (resumed.rows_in, resumed.rows_written) == (len(positions),) * 2
    _assert_identical(cut, tmp_path / "clean")
    # a clean run on 3 workers writes the same files too
    run_enrichment(*args, str(tmp_path / "clean3"), client=three_workers, **kwargs)
    _assert_identical(tmp_path / "clean3", tmp_path / "clean")
    assert follows_input(tmp_path / "clean3") == follows_input(tmp_path / "clean")


def test_a_kept_part_of_other_genes_is_redone_and_reported(client, tmp_path):
    """A part whose record names other genes than the plan's bin (here: two parts swapped, with
    their records) is not kept: redone, the summary names it, the output equals a clean run."""
    positions = _positions([50] * 12, seed=5)
    positions.to_parquet(tmp_path / "positions.parquet")
    args = (str(tmp_path / "positions.parquet"), SCORES_ONLY)
    kwargs = dict(config=KEEP, partition_rows=100, client=client)
    full = run_enrichment(*args, str(tmp_path / "clean"), **kwargs)
    shutil.copytree(tmp_path / "clean", tmp_path / "cut")
    cut = tmp_path / "cut"
    a, b = cut / writer.part_name(0), cut / writer.part_name(1)
    ra, rb = (Path(writer.part_record_path(str(cut), p.name)) for p in (a, b))
    a_bytes, ra_data = a.read_bytes(), json.loads(ra.read_text())
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    ra.write_text(json.dumps({**json.loads(rb.read_text()), "bin": 0, "file": a.name}))
    rb.write_text(json.dumps({**ra_data, "bin": 1, "file": b.name}))
    (cut / writer.SUCCESS_FILE).unlink()
    said: list[str] = []
    resumed = run_enrichment(*args, str(cut), mode="resume", log=said.append, **kwargs)
    assert sorted(Path(p).name for p in resumed.partitions_redone) == [a.name, b.name]
    assert all("genes" in why for why in resumed.partitions_redone.values())
    assert resumed.partitions_resumed == full.partitions - 2
    assert any("failed verification" in line for line in said)
    assert "2 redone: failed verification" in "\n".join(resumed.lines())
    success = json.loads((cut / writer.SUCCESS_FILE).read_text())
    assert sorted(success["partitions"]["redone"]) == [a.name, b.name]
    _assert_identical(cut, tmp_path / "clean")


def test_success_lists_each_file_with_rows_and_hash(client, tmp_path):

    positions = _positions([30] * 10, seed=6)
    positions.to_parquet(tmp_path / "positions.parquet")
    run_enrichment(str(tmp_path / "positions.parquet"), SCORES_ONLY, str(tmp_path / "out"),
                   config=KEEP, partition_rows=100, client=client)
    success = json.loads((tmp_path / "out" / writer.SUCCESS_FILE).read_text())
    files = success["partitions"]["files"]
    assert [f["file"] for f in files] == [Path(p).name for p in writer.part_files(str(tmp_path / "out"))]
    assert sum(f["rows"] for f in files) == 300
    for f in files:
        data = (tmp_path / "out" / f["file"]).read_bytes()
        assert f["crc32"] == f"{zlib.crc32(data):08x}" and f["bytes"] == len(data)
        assert f["rows"] == pq.ParquetFile(tmp_path / "out" / f["file"]).metadata.num_rows
        # page checksums written: every data page carries a CRC
        meta = pq.ParquetFile(tmp_path / "out" / f["file"], page_checksum_verification=True)
        meta.read()


def _flip_data_page(path: Path, column: str) -> None:
    """Flip 64 bytes in the middle of ``column``'s first data page (the footer stays intact)."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    offset = chunk.data_page_offset + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[offset:offset + 64] = bytes(b ^ 0xFF for b in data[offset:offset + 64])
    path.write_bytes(bytes(data))
    assert pq.ParquetFile(path).metadata.num_rows == meta.num_rows  # the footer still reads


def test_a_flipped_data_page_is_found_by_verify_and_redone_by_resume(client, tmp_path, capsys):
    from dask_enrich.cli import main

    positions = _positions([400] * 6, seed=8)
    positions.to_parquet(tmp_path / "positions.parquet")
    args = (str(tmp_path / "positions.parquet"), SCORES_ONLY)
    kwargs = dict(config=KEEP, partition_rows=800, client=client)
    full = run_enrichment(*args, str(tmp_path / "clean"), **kwargs)
    shutil.copytree(tmp_path / "clean", tmp_path / "out")
    out = tmp_path / "out"
    assert main(["verify", str(out)]) == 0
    assert "match the record" in capsys.readouterr().out
    _flip_data_page(out / writer.part_name(1), "donor_acceptor_logodds")
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err
    assert writer.part_name(1) in err and "content hash differs" in err
    assert writer.part_name(0) not in err and writer.part_name(2) not in err
    resumed = run_enrichment(*args, str(out), mode="resume", **kwargs)
    assert list(resumed.partitions_redone) == [f"{out}/{writer.part_name(1)}"]
    assert "content hash" in resumed.partitions_redone[f"{out}/{writer.part_name(1)}"]
    assert resumed.partitions_resumed == full.partitions - 1
    assert main(["verify", str(out)]) == 0
    _assert_identical(out, tmp_path / "clean")
    # a stray part file, or a missing one, is reported too
    shutil.copy(out / writer.part_name(0), out / writer.part_name(99))
    (out / writer.part_name(2)).unlink()
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{writer.part_name(99)}: not in the record" in err and f"{writer.part_name(2)}: missing" in err
    assert main(["verify", str(tmp_path / "positions.parquet")]) == 2


def test_changed_medians_refuse_the_resume_naming_feature_stats(client, tmp_path):
    """feature_stats.json is part of the run: other medians would mix two fills in one dataset."""
    from dask_enrich.errors import ConfigError

    model = tmp_path / "model"
    model.mkdir()
    (model / "feature_manifest.csv").write_text("feature\n" + "\n".join(SCORES_ONLY.names) + "\n")
    stats = {name: {"median": 0.25} for name in SCORES_ONLY.names}
    (model / "feature_stats.json").write_text(json.dumps(stats))
    positions = _positions([40] * 8, seed=9)
    positions.to_parquet(tmp_path / "positions.parquet")
    kwargs = dict(config=EnrichConfig(keep_columns=("row_id",), missing="impute"),
                  partition_rows=100, client=client)
    out = tmp_path / "out"
    run_enrichment(str(tmp_path / "positions.parquet"), str(model), str(out), **kwargs)
    (out / writer.part_name(1)).unlink()
    (out / writer.SUCCESS_FILE).unlink()
    stats["donor_score"]["median"] = 0.5
    (model / "feature_stats.json").write_text(json.dumps(stats))
    with pytest.raises(ConfigError, match=r"other inputs or settings \(inputs\.manifest\.files\."
                                          r"feature_stats\.json, inputs\.manifest\.stats differ\)"):
        run_enrichment(str(tmp_path / "positions.parquet"), str(model), str(out), mode="resume",
                       **kwargs)
    assert sorted(p.name for p in out.glob("part-*")) == [writer.part_name(0)] + [
        writer.part_name(b) for b in range(2, 4)]  # nothing touched


def test_the_final_check_is_per_partition_not_only_totals():
    """Totals can match while a partition is written twice and another not at all."""
    from dask_enrich.engine.partition import plan_partitions
    from dask_enrich.engine.summary import check_bins
    from dask_enrich.engine.tasks import BinResult
    from dask_enrich.errors import RunFailure

    sizes = pd.Series({"a": 3, "b": 3, "c": 3})
    plan = plan_partitions(sizes, 3, keep_order=True).with_rows(sizes)

    def fresh(bins, rows_in):
        return [BinResult(b, n, n, 0) for b, n in zip(bins, rows_in)]

    kept = BinResult(0, 3, 3, 0, resumed=True)
    assert check_bins(plan, fresh([0, 1, 2], [3, 3, 3]), [], True, None) == {}
    with pytest.raises(RunFailure, match="partition 1 was written 2 times"):
        check_bins(plan, fresh([0, 1, 1], [3, 3, 3]), [], True, None)  # totals: 9 == 9
    with pytest.raises(RunFailure, match="partition 2 was written 0 times"):
        check_bins(plan, fresh([0, 1], [3, 3]), [], True, None)
    with pytest.raises(RunFailure, match="partition 0 was written 2 times"):  # kept and redone
        check_bins(plan, fresh([0, 1, 2], [3, 3, 3]) + [kept], [], True, None)
    with pytest.raises(RunFailure, match=r"partition 0: 4 input row\(s\) reached it but its genes "
                                         r"have 3"):
        check_bins(plan, fresh([0, 1, 2], [4, 2, 3]), [], True, None)

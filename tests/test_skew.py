"""Train/serve skew check: the comparison rules, and the whole check on real Arabidopsis genes.

The main test builds a training-like matrix from the core's own output on eight real genes of the
bundled slice, perturbs known features in known rows (and zeroes the k-mers of some rows, as older
inference code did), adds rows that cannot be placed, and checks that the report flags exactly
those (row, feature) pairs and rows, and nothing else.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_enrich.config import EnrichConfig
from dask_enrich.errors import ConfigError, InputError
from dask_enrich.manifest import load_manifest, manifest_from_names
from dask_enrich.cli.skew import register_cli
from dask_enrich.skew import compare_features, differs, skew_check

from .skew_data import LABEL_COLUMNS, MODEL_DIR, build_training_set

KMERS = [n for n in load_manifest(MODEL_DIR).names if n.startswith("3mer_")]


# --- the comparison rule -------------------------------------------------------------------------
def slow_differs(t: float, r: float, rtol: float, atol: float) -> bool:
    """Reference, one pair at a time."""
    if math.isnan(t) and math.isnan(r):
        return False
    if math.isnan(t) or math.isnan(r):
        return True
    if t == r:
        return False
    if math.isinf(t) or math.isinf(r):
        return True
    return abs(t - r) > atol + rtol * max(abs(t), abs(r))


floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, 1.0, -1.0, 1e-9, 1e6]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(floats, floats), min_size=1, max_size=30),
       st.sampled_from([0.0, 1e-5, 0.1]), st.sampled_from([0.0, 1e-8, 0.5]))
def test_differs_matches_the_row_by_row_rule(pairs, rtol, atol):
    t = np.array([p[0] for p in pairs])
    r = np.array([p[1] for p in pairs])
    expected = [slow_differs(a, b, rtol, atol) for a, b in pairs]
    assert differs(t, r, rtol, atol).tolist() == expected


def test_compare_by_hand():
    training = pd.DataFrame({
        "gene_id": ["G"] * 7, "position": np.arange(7),
        "f": [1.0, 1.0, np.nan, np.nan, 1e6, 0.0, 2.0],
        "k": ["3", "3", "x", "0", "1", "1", "1"],  # text as in a TSV, one non-number
    })
    recomputed = pd.DataFrame({
        "gene_id": ["G"] * 7, "position": np.arange(7),
        "f": [1.0 + 1e-9, 1.1, np.nan, 0.0, 1e6 + 1, 1e-9, 2.5],
        "k": [3, 0, 0, 0, 1, 1, 1],
    })
    report = compare_features(training, recomputed, ["f", "k"], rtol=1e-5, atol=1e-8)
    f, k = report.features
    # f: row 1 (0.1 off), row 3 (NaN vs 0) and row 6 (0.5 off) differ; 1e6+1 is within rtol*1e6.
    assert (f.rows_compared, f.rows_differing, f.nan_mismatches) == (7, 3, 1)
    assert f.max_abs_diff == pytest.approx(1.0)  # the 1e6 row: within tolerance, still the largest
    assert f.median_abs_diff_differing == pytest.approx(0.3)
    assert [e["row"] for e in f.examples] == [3, 6, 1]  # NaN first, then by size
    # k: row 1 (3 vs 0) and row 2 ("x": not a number, vs 0) differ.
    assert (k.rows_differing, k.unparseable, k.nan_mismatches) == (2, 1, 1)
    assert sorted(map(tuple, report.differing[["row", "feature"]].to_numpy().tolist())) == [
        (1, "f"), (1, "k"), (2, "k"), (3, "f"), (6, "f")]
    assert report.differing_features == ["f", "k"] and report.exit_code == 6
    assert json.dumps(report.to_dict(), allow_nan=False)  # NaN written as null

    loose = compare_features(training, recomputed, ["f"], rtol=0.0, atol=1.0)
    assert loose.features[0].rows_differing == 1  # only NaN vs 0 is left


def test_compare_aligns_on_keys_with_duplicates_and_lists_unmatched_rows():
    training = pd.DataFrame({"gene_id": ["A", "A", "B", "C"], "position": [5, 5, 7, 9],
                             "f": [1.0, 2.0, 3.0, 4.0]})
    recomputed = pd.DataFrame({"gene_id": ["B", "A", "A"], "position": [7, 5, 5],
                               "f": [3.0, 1.0, 2.5]})
    report = compare_features(training, recomputed, ["f"], on=("gene_id", "position"))
    assert report.rows_compared == 3 and report.rows_training == 4
    assert report.differing[["row", "feature"]].to_numpy().tolist() == [[1, "f"]]
    assert report.unplaced[["row", "gene_id"]].to_numpy().tolist() == [[3, "C"]]


def test_bad_tolerance_is_a_config_error():
    frame = pd.DataFrame({"gene_id": ["A"], "position": [1], "f": [1.0]})
    with pytest.raises(ConfigError):
        compare_features(frame, frame, ["f"], rtol=-1)


# --- the whole check on real genes ---------------------------------------------------------------
@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    return build_training_set(tmp_path_factory.mktemp("skew"))


def perturb(training: pd.DataFrame, genes: pd.DataFrame):
    """Known damage to a copy of the training matrix: (damaged frame, {(row, feature)}, unplaced
    rows {row: reason})."""
    t = training.copy()
    expected: set[tuple[int, str]] = set()

    def hit(rows, feature, new_values):
        t.loc[rows, feature] = new_values
        expected.update((int(r), feature) for r in rows)

    hit([3, 17], "donor_surge_ratio", t.loc[[3, 17], "donor_surge_ratio"] * 1.5 + 0.25)
    hit([25], "gc_content", t.loc[[25], "gc_content"] + 0.01)
    hit([40], "gene_length", t.loc[[40], "gene_length"] + 1)
    hit([8], "context_score_p1", np.nan)  # NaN against a value
    hit([60, 61], "acceptor_is_local_peak", 1 - t.loc[[60, 61], "acceptor_is_local_peak"])
    # Within tolerance: must not be flagged.
    t.loc[5, "splice_probability"] *= 1 + 1e-7
    t.loc[6, "num_overlaps"] = float(t.loc[6, "num_overlaps"])
    # Older inference code zero-filled the k-mers of some rows: flagged where the count is not 0.
    zeroed = [50, 51, 52]
    for kmer in KMERS:
        nonzero = [r for r in zeroed if t.loc[r, kmer] != 0]
        expected.update((r, kmer) for r in nonzero)
    t.loc[zeroed, KMERS] = 0

    # Rows that cannot be placed (their feature values are garbage on purpose).
    first, (start, end, _) = next(iter(genes.iterrows()))
    bad = t.iloc[[0, 1, 2, 3]].copy()
    bad["gene_id"] = ["AT9G99999", first, first, first]
    bad["position"] = [start, end + 10, np.nan, start + 0.5]
    bad["gc_content"] = 7.0
    t = pd.concat([t, bad], ignore_index=True)
    n = len(training)
    unplaced = {n: "gene not in the annotation", n + 1: "position outside its gene",
                n + 2: "position missing or not an integer", n + 3: "position missing or not an integer"}
    return t, expected, unplaced


def flagged(report) -> set[tuple[int, str]]:
    return set(map(tuple, report.differing[["row", "feature"]].to_numpy().tolist()))


def test_unperturbed_training_matches(training_set, tmp_path):
    path = tmp_path / "training.parquet"
    training_set.training.to_parquet(path, index=False)
    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local")
    assert report.ok and report.exit_code == 0
    assert report.rows_compared == len(training_set.training) and len(report.unplaced) == 0
    assert len(report.features) == 124 and not report.not_compared
    assert sorted(report.ignored_columns) == sorted(LABEL_COLUMNS)
    assert report.settings["context_source"] == "track"


def test_training_directory_of_gzipped_tsv_parts(training_set, tmp_path):
    parts = tmp_path / "training"
    parts.mkdir()
    half = len(training_set.training) // 2
    training_set.training.iloc[:half].to_csv(parts / "part-0.tsv.gz", sep="\t", index=False)
    training_set.training.iloc[half:].to_csv(parts / "part-1.tsv.gz", sep="\t", index=False)
    (parts / "_SUCCESS").write_text("")  # bookkeeping files are not data
    report = skew_check(parts, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local")
    assert report.ok and report.rows_compared == len(training_set.training)


def test_report_flags_exactly_the_perturbed_features_and_rows(training_set, tmp_path):
    damaged, expected, unplaced = perturb(training_set.training, training_set.genes)
    path = tmp_path / "training.tsv"
    damaged.to_csv(path, sep="\t", index=False)
    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local")

    assert flagged(report) == expected
    assert set(report.differing_features) == {f for _, f in expected}
    assert set(report.differing_rows) == {r for r, _ in expected}
    assert len([k for k in KMERS if k in report.differing_features]) > 20  # the zeroed rows
    assert dict(zip(report.unplaced["row"], report.unplaced["reason"])) == unplaced
    assert report.rows_training == len(damaged) and report.rows_compared == len(training_set.training)
    assert report.exit_code == 6 and report.verdict == "skew"
    assert report.zero_kmer_rows == [50, 51, 52]
    worst = report.rows_with_differences(limit=3)
    assert set(worst["row"]) == {50, 51, 52}
    assert list(worst["features_differing"]) == [
        sum(1 for r, _ in expected if r == row) for row in worst["row"]]

    by_name = {f.name: f for f in report.features}
    surge = by_name["donor_surge_ratio"]
    original = training_set.training["donor_surge_ratio"]
    diffs = sorted(abs(original[r] * 0.5 + 0.25) for r in (3, 17))
    assert surge.rows_differing == 2 and surge.max_abs_diff == pytest.approx(diffs[-1])
    assert {e["row"] for e in surge.examples} == {3, 17}
    assert by_name["gene_length"].max_abs_diff == 1
    assert by_name["context_score_p1"].nan_mismatches == 1
    assert by_name["gc_content"].examples[0]["training"] == pytest.approx(
        training_set.training.loc[25, "gc_content"] + 0.01)
    assert by_name["splice_probability"].rows_differing == 0

    # Tighter tolerance: the 1e-7 relative change is now flagged too.
    strict = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local", rtol=1e-9, atol=0)
    assert flagged(strict) - flagged(report) == {(5, "splice_probability")}


def gene_relative(frame: pd.DataFrame, genes: pd.DataFrame) -> pd.Series:
    """Reference conversion, row by row: offset from the gene's 5' end in transcript orientation."""
    out = []
    for gene_id, position in zip(frame["gene_id"], frame["position"]):
        start, end, strand = genes.loc[gene_id]
        out.append(end - position if strand == "-" else position - start)
    return pd.Series(out, index=frame.index)


def test_gene_relative_training_positions_are_converted(training_set, tmp_path):
    damaged, expected, _ = perturb(training_set.training, training_set.genes)
    damaged = damaged.iloc[: len(training_set.training)].copy()  # placeable rows only
    relative = damaged.copy()
    relative["position"] = gene_relative(damaged, training_set.genes)
    bad = relative.iloc[[0]].assign(position=10**6)  # an offset beyond its gene
    relative = pd.concat([relative, bad], ignore_index=True)
    path = tmp_path / "training_relative.tsv"
    relative.to_csv(path, sep="\t", index=False)

    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local",
                        config=EnrichConfig(coordinates="gene_relative"))
    assert flagged(report) == expected
    assert report.unplaced[["row", "reason"]].to_numpy().tolist() == [
        [len(damaged), "gene-relative position outside its gene"]]
    example = {f.name: f for f in report.features}["gc_content"].examples[0]
    assert example["genomic_position"] == damaged.loc[25, "position"]
    assert example["position"] == relative.loc[25, "position"]

    # Read as genomic, the same file places no row at all (offsets are far below the genes' starts).
    with pytest.raises(InputError, match="none of its.*position outside its gene"):
        skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                   track=str(training_set.track_path), engine="local")


def test_training_context_columns_are_used_without_a_track(training_set, tmp_path):
    damaged, expected, _ = perturb(training_set.training, training_set.genes)
    path = tmp_path / "training.parquet"
    damaged.astype({"position": "float64"}).to_parquet(path, index=False)
    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir), engine="local")
    assert report.settings["context_source"].startswith("training")
    # The NaN context_score_p1 of row 8 is now an input: the recompute imputes it, so row 8's
    # context_score_p1 still differs (imputed 0 vs NaN) and the features derived from it may too.
    assert {(r, f) for r, f in expected if r != 8} <= flagged(report)
    assert {r for r, _ in flagged(report)} == {r for r, _ in expected}
    assert {f.name: f for f in report.features}["context_score_p1"].imputed_rows == 1


def test_repeated_rows_are_compared_one_to_one(training_set, tmp_path):
    """A position repeated per transcript: each copy is compared with the recompute on its own."""
    base = training_set.training
    copies = base.iloc[[10, 10, 20]].assign(transcript_id=["t2", "t3", "t2"]).reset_index(drop=True)
    copies.loc[1, "gc_content"] += 0.2  # only the second copy of row 10 is wrong
    training = pd.concat([base, copies], ignore_index=True)
    path = tmp_path / "training.parquet"
    training.to_parquet(path, index=False)
    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="local")
    assert flagged(report) == {(len(base) + 1, "gc_content")}
    assert report.rows_compared == len(training)


def test_features_not_recomputable_or_absent_are_listed_not_compared(training_set, tmp_path):
    training = training_set.training.drop(columns=["num_exons"])
    path = tmp_path / "training.tsv"
    training.to_csv(path, sep="\t", index=False)
    report = skew_check(path, MODEL_DIR, engine="local")  # no genome, no annotation, no track
    assert report.not_compared["num_exons"].startswith("not recomputable")
    assert "absent from the training file" in report.not_compared["num_exons"]
    assert "--genome" in report.not_compared["gc_content"]
    assert "--annotation" in report.not_compared["gene_length"]
    compared = {f.name for f in report.features}
    assert "context_max" in compared and "3mer_ACG" not in compared
    assert report.ok  # scores and the training's context columns reproduce exactly


def test_missing_required_column_and_impossible_options(training_set, tmp_path):
    path = tmp_path / "training.tsv"
    training_set.training.drop(columns=["neither_score"]).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="neither_score"):
        skew_check(path, MODEL_DIR, engine="local")
    training_set.training.to_csv(path, sep="\t", index=False)
    with pytest.raises(ConfigError, match="gene_relative"):
        skew_check(path, MODEL_DIR, engine="local", config=EnrichConfig(coordinates="gene_relative"))
    with pytest.raises(ConfigError):
        skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir), annotation="x.gtf")


# --- command line and the Dask engine ------------------------------------------------------------
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dask-enrich")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_dask_engine_flags_the_perturbed_rows(training_set, tmp_path):
    """The engine's distributed run (threads here, to stay fast) gives the same verdict."""
    damaged, expected, unplaced = perturb(training_set.training, training_set.genes)
    path = tmp_path / "training.parquet"
    damaged.to_parquet(path, index=False)
    report = skew_check(path, MODEL_DIR, cache=str(training_set.cache_dir),
                        track=str(training_set.track_path), engine="dask", workers=1,
                        processes=False, work_dir=tmp_path)
    assert report.settings["engine"] == "dask"
    assert flagged(report) == expected
    assert dict(zip(report.unplaced["row"], report.unplaced["reason"])) == unplaced
    assert not list(tmp_path.glob("skew-recompute-*"))  # the engine's temporary output is removed


@pytest.mark.slow
def test_cli_on_the_dask_engine_flags_the_perturbed_rows(training_set, tmp_path, capsys):
    damaged, expected, unplaced = perturb(training_set.training, training_set.genes)
    path = tmp_path / "training.tsv"
    damaged.to_csv(path, sep="\t", index=False)
    out = tmp_path / "report"
    code = run_cli(["skew", "--training", str(path), "--manifest", str(MODEL_DIR),
                    "--cache", str(training_set.cache_dir), "--track", str(training_set.track_path),
                    "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 6  # differences found: its own code, not 1 (unexpected failure)
    printed = capsys.readouterr().out
    n_features = len({f for _, f in expected})
    assert f"SKEW  ({n_features} of 124 compared features differ" in printed
    data = json.loads((out / "skew_report.json").read_text())
    assert data["settings"]["engine"] == "dask"
    assert data["unplaced_rows"]["count"] == len(unplaced)
    differing = pd.read_csv(out / "differing_rows.tsv", sep="\t")
    assert set(zip(differing["row"], differing["feature"])) == expected
    assert (out / "skew_report.html").stat().st_size > 10_000
    assert not list(out.glob("skew-recompute-*"))  # the engine's temporary output is removed


def test_cli_exit_codes(training_set, tmp_path):
    path = tmp_path / "training.tsv"
    training_set.training.to_csv(path, sep="\t", index=False)
    args = ["skew", "--training", str(path), "--manifest", str(MODEL_DIR), "--cache",
            str(training_set.cache_dir), "--track", str(training_set.track_path), "--local", "--quiet"]
    assert run_cli(args + ["--out", str(tmp_path / "ok")]) == 0
    damaged, _, _ = perturb(training_set.training, training_set.genes)
    damaged.to_csv(path, sep="\t", index=False)
    assert run_cli(args + ["--out", str(tmp_path / "skew")]) == 6  # differences: not 1
    from dask_enrich.cli import main as cli_main

    assert cli_main(args + ["--out", str(tmp_path / "skew-cli")]) == 6  # through `dask-enrich`
    training_set.training.drop(columns=["gene_id"]).to_csv(path, sep="\t", index=False)
    assert run_cli(args + ["--out", str(tmp_path / "bad")]) == InputError.exit_code
    assert run_cli(args + ["--out", str(tmp_path / "bad"), "--rtol", "-1"]) == ConfigError.exit_code


def test_compare_uses_manifest_groups_and_plugin_free_names():
    manifest = manifest_from_names(["donor_score", "3mer_ACG"])
    frame = pd.DataFrame({"gene_id": ["A"], "position": [1], "donor_score": [0.5], "3mer_ACG": [2]})
    report = compare_features(frame, frame, list(manifest.names),
                              groups={n: manifest.feature(n).group for n in manifest.names})
    assert [f.group for f in report.features] == ["base", "kmer"] and report.ok


def test_cli_builds_the_cache_from_genome_and_annotation(training_set, tmp_path):
    from .skew_data import SLICE_FASTA, SLICE_GTF

    path = tmp_path / "training.tsv"
    training_set.training.to_csv(path, sep="\t", index=False)
    fasta = training_set.cache_dir.parent / SLICE_FASTA.name  # the fixture's symlink
    out = tmp_path / "reports" / "r1"
    code = run_cli(["skew", "--training", str(path), "--manifest", str(MODEL_DIR), "--genome",
                    str(fasta), "--annotation", str(SLICE_GTF), "--track",
                    str(training_set.track_path), "--local", "--quiet", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "skew_report.json").read_text())
    assert data["verdict"] == "match" and data["features"]["compared"] == 124
    assert Path(data["settings"]["cache"]).parent == out.parent / ".dask-enrich-cache"  # as `run`


def test_main_cli_runs_the_skew_command(training_set, tmp_path):
    """``dask-enrich skew`` through the package's CLI (registered there by module name)."""
    from dask_enrich import cli

    path = tmp_path / "training.tsv"
    training_set.training.to_csv(path, sep="\t", index=False)
    code = cli.main(["skew", "--training", str(path), "--manifest", str(MODEL_DIR), "--cache",
                     str(training_set.cache_dir), "--track", str(training_set.track_path), "--local",
                     "--quiet", "--out", str(tmp_path / "report")])
    assert code == 0

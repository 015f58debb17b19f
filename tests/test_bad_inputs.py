"""One test per bad input of issue 7: the CLI's exit code and message, and the Python API's exception.

Every run goes through the real engine (``dask-enrich run`` in-process, and ``run_enrichment``) on a
small synthetic world: a 6 kb FASTA (chr1) and a GTF with a plus-strand gene GA (1001..2000), a
minus-strand gene GB (3001..4000), a gene GZ on chrZ, which the FASTA lacks, and a gene GE running
past the end of chr1.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.cli import main
from dask_enrich.core import enrich
from dask_enrich.engine import writer
from dask_enrich.engine.run import run_enrichment
from dask_enrich.errors import InputError, ManifestError
from dask_enrich.validate import reason_code
from tests.engine.conftest import client  # noqa: F401  (session LocalCluster fixture)

SCORES = ["donor_score", "acceptor_score", "splice_probability", "probability_entropy",
          "context_max", "donor_peak_height_ratio"]
GENOMIC = [*SCORES, "gene_length", "gc_content"]
CTX = ["context_score_m2", "context_score_m1", "context_score_p1", "context_score_p2"]
GENES = {"GA": (1001, 2000, "+"), "GB": (3001, 4000, "-")}
TIMEOUT = 180


# --- the small world -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 6000))
    (root / "g.fa").write_text(">chr1\n" + "\n".join(seq[i:i + 60] for i in range(0, 6000, 60)) + "\n")
    lines = []
    for chrom, gene, strand, start, end, exons in [
        ("chr1", "GA", "+", 1001, 2000, [(1001, 1300), (1501, 2000)]),
        ("chr1", "GB", "-", 3001, 4000, [(3001, 3400), (3601, 4000)]),
        ("chrZ", "GZ", "+", 101, 600, [(101, 200), (401, 600)]),
        ("chr1", "GE", "+", 5801, 6400, [(5801, 5900), (6001, 6400)]),  # past chr1's 6,000 nt
    ]:
        attrs = f'gene_id "{gene}";'
        lines.append(f"{chrom}\ttest\tgene\t{start}\t{end}\t.\t{strand}\t.\t{attrs}")
        for s, e in [(start, end), *exons]:
            kind = "transcript" if (s, e) == (start, end) else "exon"
            lines.append(f'{chrom}\ttest\t{kind}\t{s}\t{e}\t.\t{strand}\t.\t{attrs} transcript_id "{gene}.1";')
    (root / "a.gtf").write_text("\n".join(lines) + "\n")
    from dask_enrich.genome.cache import build_cache

    build_cache(root / "g.fa", root / "a.gtf", root / "cache")
    (root / "scores.txt").write_text("\n".join(SCORES) + "\n")
    (root / "genomic.txt").write_text("\n".join(GENOMIC) + "\n")
    return {"root": str(root), "fasta": str(root / "g.fa"), "gtf": str(root / "a.gtf"),
            "cache": str(root / "cache"), "scores": str(root / "scores.txt"),
            "genomic": str(root / "genomic.txt")}


def clean_positions(n: int = 40, seed: int = 1) -> pd.DataFrame:
    """n (< 2000) valid rows in GA and GB: unique positions inside the genes, scores summing to 1,
    context columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        gene = "GA" if i % 2 else "GB"
        start, _, strand = GENES[gene]
        d, a, nn = rng.dirichlet([0.5, 0.5, 2])
        rows.append({"gene_id": gene, "position": start + (7 * i) % 1000, "strand": strand,
                     "donor_score": d, "acceptor_score": a, "neither_score": nn,
                     **dict(zip(CTX, rng.random(4) * 0.5))})
    return pd.DataFrame(rows)


def write(frame: pd.DataFrame, tmp_path: Path, name: str = "positions.parquet") -> str:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def in_thread(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a thread, failing the test if it takes longer than TIMEOUT (a hang)."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"run did not finish within {TIMEOUT} s (hang)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def cli(capsys, client, *args: str) -> tuple[int, str, str]:
    """``dask-enrich run ...`` in-process on the session cluster: (exit code, stdout, stderr)."""
    argv = ["run", *args, "--scheduler", client.scheduler.address, "--quiet"]
    try:
        code = in_thread(main, argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def api(client, positions: str, manifest: str, out: str, **kwargs):
    return in_thread(run_enrichment, positions, manifest, out, client=client, **kwargs)


def check_clean_failure(code: int, err: str, out_dir: Path, expected_code: int = 2) -> str:
    """The run failed with ``expected_code``, one message line, no traceback, nothing marked complete."""
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("dask-enrich: error:")]
    assert len(lines) == 1, err
    assert not (out_dir / writer.SUCCESS_FILE).exists()
    assert not (out_dir / "_staging").exists(), "staged rows of the failed run left behind"
    return lines[0]


def run_both(capsys, client, tmp_path, positions, manifest, *extra, api_kwargs=None,
             expected=InputError):
    """The CLI (exit code, message) and the Python API (exception) on the same bad input."""
    out = tmp_path / "out_cli"
    code, _, err = cli(capsys, client, "--positions", positions, "--manifest", manifest,
                       "--out", str(out), *extra)
    message = check_clean_failure(code, err, out, expected.exit_code)
    with pytest.raises(expected) as info:
        api(client, positions, manifest, str(tmp_path / "out_api"), **(api_kwargs or {}))
    assert not (tmp_path / "out_api" / writer.SUCCESS_FILE).exists()
    return message, str(info.value)


# --- schema-level bad inputs ---------------------------------------------------------------------
def test_missing_column_with_a_close_name(world, client, tmp_path, capsys):
    frame = clean_positions().rename(columns={"donor_score": "donor_prob"})
    path = write(frame, tmp_path)
    for text in run_both(capsys, client, tmp_path, path, world["scores"]):
        assert "positions.parquet" in text and "donor_score" in text and "donor_prob" in text


def test_missing_column_known_under_an_alias(world, client, tmp_path, capsys):
    frame = clean_positions().rename(columns={"position": "pos", "gene_id": "gene"})
    path = write(frame, tmp_path)
    for text in run_both(capsys, client, tmp_path, path, world["scores"]):
        assert "positions.parquet" in text
        assert "'position' (found 'pos'" in text and "'gene_id' (found 'gene'" in text


def test_text_in_a_score_column(world, client, tmp_path, capsys):
    frame = clean_positions()
    frame["acceptor_score"] = frame["acceptor_score"].astype(str)
    path = write(frame, tmp_path)
    for text in run_both(capsys, client, tmp_path, path, world["scores"]):
        assert "positions.parquet" in text and "column 'acceptor_score' holds text" in text


def test_numeric_strand_column(world, client, tmp_path, capsys):
    frame = clean_positions()
    frame["strand"] = np.where(frame["strand"] == "+", 1, -1)
    path = write(frame, tmp_path)
    for text in run_both(capsys, client, tmp_path, path, world["scores"]):
        assert "positions.parquet" in text and "column 'strand' holds numbers" in text


def test_empty_input(world, client, tmp_path, capsys):
    path = write(clean_positions().iloc[:0], tmp_path)
    for text in run_both(capsys, client, tmp_path, path, world["scores"]):
        assert "positions.parquet" in text and "no rows" in text


def test_unreadable_input_file(world, client, tmp_path, capsys):
    path = tmp_path / "positions.parquet"
    path.write_bytes(b"this is not a parquet file\n" * 20)
    for text in run_both(capsys, client, tmp_path, str(path), world["scores"]):
        assert "positions.parquet" in text and "cannot be read" in text


def test_truncated_parquet_file(world, client, tmp_path, capsys):
    path = Path(write(clean_positions(), tmp_path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for text in run_both(capsys, client, tmp_path, str(path), world["scores"]):
        assert "positions.parquet" in text


def test_missing_input_file(world, client, tmp_path, capsys):
    for text in run_both(capsys, client, tmp_path, str(tmp_path / "nope.parquet"), world["scores"]):
        assert "nope.parquet" in text and "no such file" in text


# --- manifests and the genome --------------------------------------------------------------------
@pytest.mark.parametrize("content, words", [
    ("", "names no features"),
    ("donor_score\nsplice_probability\ndonor_score\n", "named more than once: donor_score"),
    ("donor_score\nsplice_prob\n", "unknown to the feature registry: splice_prob"),
])
def test_bad_manifest(world, client, tmp_path, capsys, content, words):
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(content)
    path = write(clean_positions(), tmp_path)
    for text in run_both(capsys, client, tmp_path, path, str(manifest), expected=ManifestError):
        assert "manifest.txt" in text and words in text


def test_fasta_index_that_does_not_match_its_fasta(world, client, tmp_path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(Path(world["fasta"]).read_bytes())
    # a samtools-style index of another FASTA: length 9000 instead of 6000
    (tmp_path / "g.fa.fai").write_text("chr1\t9000\t6\t60\t61\n")
    path = write(clean_positions(), tmp_path)
    args = ("--genome", str(fasta), "--annotation", world["gtf"], "--cache-dir", str(tmp_path / "c"))
    out = tmp_path / "out_cli"
    code, _, err = cli(capsys, client, "--positions", path, "--manifest", world["genomic"],
                       "--out", str(out), *args)
    message = check_clean_failure(code, err, out)
    assert "g.fa.fai" in message and "does not match" in message
    with pytest.raises(InputError, match="does not match"):
        api(client, path, world["genomic"], str(tmp_path / "out_api"), genome=str(fasta),
            annotation=world["gtf"], cache_dir=str(tmp_path / "c2"))


# --- row-level bad inputs (default --on-bad-rows error) -------------------------------------------
ROW_CASES = {
    # name: (change to the clean frame, reason code, words in the message, needs the annotation)
    "nan_score": (lambda f: f.assign(donor_score=f.donor_score.where(f.index != 3, np.nan)),
                  "score_missing", "donor_score=nan", False),
    "infinite_score": (lambda f: f.assign(neither_score=f.neither_score.where(f.index != 4, np.inf)),
                       "score_infinite", "neither_score=inf", False),
    "negative_score": (lambda f: f.assign(acceptor_score=f.acceptor_score.where(f.index != 5, -0.25)),
                       "score_negative", "acceptor_score=-0.25", False),
    "score_above_one": (lambda f: f.assign(donor_score=f.donor_score.where(f.index != 6, 1.5)),
                        "score_above_one", "donor_score=1.5", False),
    "fractional_position": (lambda f: f.assign(position=f.position.astype(float).where(f.index != 7, 1010.5)),
                            "position_not_integer", "position=1010.5", False),
    "position_below_one": (lambda f: f.assign(position=f.position.where(f.index != 8, 0)),
                           "position_out_of_range", "position=0", False),
    "strand_not_plus_or_minus": (lambda f: f.assign(strand=f.strand.where(f.index != 9, ".")),
                                 "strand_invalid", "strand='.'", False),
    "duplicate_rows": (lambda f: pd.concat([f, f.iloc[[10, 11]]], ignore_index=True),
                       "duplicate_position", "duplicate_position", False),
    "gene_absent_from_annotation": (lambda f: f.assign(gene_id=f.gene_id.where(f.index != 12, "AT9G99999")),
                                    "gene_not_in_annotation", "AT9G99999", True),
    "position_outside_gene": (lambda f: f.assign(position=f.position.where(f.index != 13, 5000)),
                              "position_outside_gene", "position=5000 not in", True),
    "chromosome_absent_from_fasta": (
        lambda f: f.assign(gene_id=f.gene_id.where(f.index != 14, "GZ"),
                           position=f.position.where(f.index != 14, 150),
                           strand=f.strand.where(f.index != 14, "+")),
        "chromosome_not_in_genome", "chrZ", True),
}


#: One case per kind of check runs in the default suite; the rest are marked slow.
FAST_CASES = {"nan_score", "fractional_position", "duplicate_rows", "chromosome_absent_from_fasta"}


@pytest.mark.parametrize("case", [c if c in FAST_CASES else pytest.param(c, marks=pytest.mark.slow)
                                  for c in ROW_CASES])
def test_bad_rows_fail_the_run_by_default(world, client, tmp_path, capsys, case):
    change, code_, words, annotated = ROW_CASES[case]
    path = write(change(clean_positions()), tmp_path)
    manifest = world["genomic"] if annotated else world["scores"]
    extra = ("--cache", world["cache"]) if annotated else ()
    for text in run_both(capsys, client, tmp_path, path, manifest, *extra,
                         api_kwargs={"cache": world["cache"]} if annotated else None):
        assert "positions.parquet" in text and code_ in text and words in text
        assert "--on-bad-rows quarantine" in text


def test_a_gene_past_its_chromosome_end_says_so(world, client, tmp_path, capsys):
    """Not "chromosome is not in the genome": chr1 is there, the gene GE runs past its end."""
    frame = clean_positions()
    frame.loc[14, ["gene_id", "position", "strand"]] = ["GE", 5850, "+"]
    for text in run_both(capsys, client, tmp_path, write(frame, tmp_path), world["genomic"],
                         "--cache", world["cache"], api_kwargs={"cache": world["cache"]}):
        assert "gene_beyond_sequence_end" in text and "chromosome_not_in_genome" not in text
        assert "gene GE (ends at 6400) runs past the end of chromosome 'chr1'" in text


# --- quarantine -----------------------------------------------------------------------------------
def all_bad(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Every row-level bad input at once: the frame and the expected reason codes."""
    bad = frame
    codes = []
    for change, code_, _, _ in ROW_CASES.values():
        bad = change(bad)
        codes.append(code_)
    codes.append("duplicate_position")  # the duplicate case adds two rows
    return bad, codes


def test_quarantine_writes_rejected_rows_with_reasons_and_goes_on(world, client, tmp_path, capsys):
    clean = clean_positions()
    bad, codes = all_bad(clean)
    path = write(bad, tmp_path)
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, client, "--positions", path, "--manifest", world["genomic"],
                            "--cache", world["cache"], "--out", str(out),
                            "--on-bad-rows", "quarantine")
    assert code == 0, err
    assert "rows rejected 12" in stdout
    success = json.loads((out / writer.SUCCESS_FILE).read_text())
    assert success["rows"] == {"in": len(bad), "written": len(bad) - 12, "rejected": 12}
    rejected = pd.read_parquet(out / "_rejected")
    assert sorted(reason_code(rejected["reason"])) == sorted(codes)
    assert (rejected["source"].str.endswith("positions.parquet")).all()
    assert set(["gene_id", "position", "donor_score"]) <= set(rejected.columns)
    written = pd.concat(pd.read_parquet(f) for f in writer.part_files(str(out)))
    expected_rows = clean.drop(index=[3, 4, 5, 6, 7, 8, 9, 12, 13, 14])  # 10, 11: their copies go
    expected_rows = expected_rows.sort_values(["gene_id", "position"])
    assert len(written) == len(expected_rows)
    # OUT is a clean dataset: readers of OUT see exactly the written rows (rejects in OUT/_rejected/)
    import dask.dataframe as dd

    whole = pd.read_parquet(out)
    assert len(whole) == len(expected_rows) and "reason" not in whole.columns
    assert len(dd.read_parquet(str(out))) == len(expected_rows)
    # the kept rows are enriched exactly as the core enriches the clean rows
    from dask_enrich.genome.cache import GenomicCache
    from dask_enrich.manifest import load_manifest

    reference, _ = enrich(expected_rows.reset_index(drop=True), load_manifest(world["genomic"]),
                          genomic=GenomicCache.open(world["cache"]))
    written = written.sort_values(["gene_id", "position"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(written[reference.columns], reference, check_dtype=False)


@pytest.mark.parametrize("exchange", ["staged", "p2p"])
def test_quarantine_through_the_python_api(world, client, tmp_path, exchange):
    bad, codes = all_bad(clean_positions())
    summary = api(client, write(bad, tmp_path), world["genomic"], str(tmp_path / "out"),
                  cache=world["cache"], on_bad_rows="quarantine", exchange_method=exchange)
    assert summary.rows_rejected == len(codes) == 12
    assert summary.rows_in == summary.rows_written + summary.rows_rejected == len(bad)
    rejected = pd.read_parquet(tmp_path / "out" / "_rejected")
    assert sorted(reason_code(rejected["reason"])) == sorted(codes)


def test_a_run_that_rejects_every_row_is_not_a_success(world, client, tmp_path, capsys):
    frame = clean_positions()
    frame["donor_score"] = np.nan
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, client, "--positions", write(frame, tmp_path), "--manifest",
                            world["genomic"], "--cache", world["cache"], "--out", str(out),
                            "--on-bad-rows", "quarantine")
    assert code == 2, err
    assert "every row (40) failed the input checks" in err and "_rejected" in err
    assert not (out / writer.SUCCESS_FILE).exists()
    assert len(pd.read_parquet(out / "_rejected")) == 40


def test_score_sum_far_from_one_is_a_warning_and_the_run_succeeds(world, client, tmp_path, capsys):
    frame = clean_positions()
    frame.loc[[2, 3, 4], ["donor_score", "acceptor_score", "neither_score"]] *= 0.8  # sums 0.8
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, client, "--positions", write(frame, tmp_path), "--manifest",
                            world["scores"], "--out", str(out))
    assert code == 0, err
    text = stdout + err  # in the summary or the log, even with --quiet
    assert "warning: 3 row(s) whose donor + acceptor + neither score is further than 0.05 from 1" in text
    success = json.loads((out / writer.SUCCESS_FILE).read_text())
    assert success["rows"]["rejected"] == 0 and success["warnings"]["score_sum"]["count"] == 3


def test_unknown_on_bad_rows_value_is_a_usage_error(world, client, tmp_path, capsys):
    code, _, err = cli(capsys, client, "--positions", write(clean_positions(), tmp_path),
                       "--manifest", world["scores"], "--out", str(tmp_path / "o"),
                       "--on-bad-rows", "ignore")
    assert code == 2 and "Traceback" not in err and "--on-bad-rows" in err


def test_a_clean_input_runs_and_records_the_invariant(world, client, tmp_path, capsys):
    """The control: the same world without a bad row succeeds."""
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, client, "--positions", write(clean_positions(), tmp_path),
                            "--manifest", world["genomic"], "--cache", world["cache"],
                            "--out", str(out))
    assert code == 0, err
    success = json.loads((out / writer.SUCCESS_FILE).read_text())
    assert success["rows"]["in"] == success["rows"]["written"] + success["rows"]["rejected"] == 40


def test_quarantine_counts_survive_a_resume(world, client, tmp_path, capsys):
    """Rejected rows of complete bins are counted again from their part records on --resume."""
    bad, codes = all_bad(clean_positions())
    path = write(bad, tmp_path)
    out = tmp_path / "out"
    args = ("--positions", path, "--manifest", world["genomic"], "--cache", world["cache"],
            "--out", str(out), "--on-bad-rows", "quarantine", "--partition-rows", "20")
    code, _, err = cli(capsys, client, *args)
    assert code == 0, err
    first = json.loads((out / writer.SUCCESS_FILE).read_text())
    parts = writer.part_files(str(out))
    assert len(parts) >= 2
    rejected_files = sorted(p.name for p in (out / "_rejected").iterdir())
    Path(parts[-1]).unlink()  # an interrupted run: one bin missing, no _SUCCESS.json
    (out / writer.SUCCESS_FILE).unlink()
    code, _, err = cli(capsys, client, *args, "--resume")
    assert code == 0, err
    again = json.loads((out / writer.SUCCESS_FILE).read_text())
    assert again["rows"] == first["rows"] == {"in": len(bad), "written": len(bad) - 12, "rejected": 12}
    assert again["partitions"]["resumed"] == len(parts) - 1
    assert sorted(p.name for p in (out / "_rejected").iterdir()) == rejected_files
    assert sorted(reason_code(pd.read_parquet(out / "_rejected")["reason"])) == sorted(codes)
    # a kept bin whose rejected rows are gone is redone: no rejected row is lost
    (out / "_rejected" / rejected_files[0]).unlink()
    (out / writer.SUCCESS_FILE).unlink()
    code, _, err = cli(capsys, client, *args, "--resume")
    assert code == 0, err
    third = json.loads((out / writer.SUCCESS_FILE).read_text())
    assert third["rows"] == first["rows"]
    assert third["partitions"]["redone"] == {
        rejected_files[0]: third["partitions"]["redone"][rejected_files[0]]}
    assert "rejected row(s) are not all in _rejected/" in third["partitions"]["redone"][rejected_files[0]]
    assert sorted(p.name for p in (out / "_rejected").iterdir()) == rejected_files
    assert sorted(reason_code(pd.read_parquet(out / "_rejected")["reason"])) == sorted(codes)


def test_bad_rows_of_a_many_file_input_name_their_file(world, client, tmp_path, capsys):
    """Positions split over three files: the message and the rejected rows name the bad row's file."""
    frame = clean_positions(60, seed=4)
    frame.loc[45, "donor_score"] = np.nan  # in the third file
    folder = tmp_path / "positions"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(60), 3)):
        frame.iloc[part].to_parquet(folder / f"f{i}.parquet", index=False)
    out = tmp_path / "out"
    code, _, err = cli(capsys, client, "--positions", str(folder), "--manifest", world["scores"],
                       "--out", str(out))
    message = check_clean_failure(code, err, out)
    assert "f2.parquet" in message and "f0.parquet" not in message and "score_missing" in message
    code, stdout, err = cli(capsys, client, "--positions", str(folder), "--manifest",
                            world["scores"], "--out", str(out), "--overwrite",
                            "--on-bad-rows", "quarantine")
    assert code == 0, err
    rejected = pd.read_parquet(out / "_rejected")
    assert len(rejected) == 1 and rejected["source"].iloc[0] == str(folder / "f2.parquet")
    assert "_source_file" not in pd.read_parquet(writer.part_files(str(out))[0]).columns


# --- property: random corruptions through the engine ------------------------------------------------
CORRUPTIONS = {  # row-local changes that make a clean row bad (each alone is enough)
    "nan": lambda f, i: f.loc.__setitem__((i, "donor_score"), np.nan),
    "negative": lambda f, i: f.loc.__setitem__((i, "acceptor_score"), -0.5),
    "above_one": lambda f, i: f.loc.__setitem__((i, "neither_score"), 2.0),
    "fraction": lambda f, i: f.loc.__setitem__((i, "position"), f.loc[i, "position"] + 0.5),
    "strand": lambda f, i: f.loc.__setitem__((i, "strand"), "?"),
    "outside": lambda f, i: f.loc.__setitem__((i, "position"), 5_500),
    "unknown_gene": lambda f, i: f.loc.__setitem__((i, "gene_id"), "NOPE"),
}


def test_random_corruptions_keep_the_invariant_and_enrich_the_clean_rows_as_a_clean_run(world, client):
    """Hypothesis: a clean frame, some rows corrupted (each made bad on purpose) and copies of some
    clean rows appended; with quarantine, exactly the corrupted rows and the copies are rejected, rows
    in = written + rejected, and the written rows equal the core's enrichment of the clean rows."""
    import tempfile

    from hypothesis import HealthCheck, given, settings, strategies as st

    from dask_enrich.genome.cache import GenomicCache
    from dask_enrich.manifest import load_manifest

    genomic = GenomicCache.open(world["cache"])
    manifest = load_manifest(world["genomic"])

    @settings(max_examples=6, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(n=st.integers(4, 60), seed=st.integers(0, 2**16), data=st.data())
    def check(n, seed, data):
        clean = clean_positions(n, seed=seed)
        frame = clean.copy()
        frame["position"] = frame["position"].astype(float)
        bad = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n // 2))
        for i in bad:
            CORRUPTIONS[data.draw(st.sampled_from(sorted(CORRUPTIONS)))](frame, i)
        good = [i for i in range(n) if i not in set(bad)]
        copies = data.draw(st.lists(st.sampled_from(good), max_size=5)) if good else []
        frame = pd.concat([frame, clean.iloc[copies]], ignore_index=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "positions.parquet"
            frame.to_parquet(path, index=False)
            summary = api(client, str(path), world["genomic"], str(Path(tmp) / "out"),
                          cache=world["cache"], on_bad_rows="quarantine")
            assert summary.rows_in == len(frame) == summary.rows_written + summary.rows_rejected
            assert summary.rows_rejected == len(bad) + len(copies)
            parts = writer.part_files(str(Path(tmp) / "out"))
            written = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        expected = clean.iloc[good].sort_values(["gene_id", "position"]).reset_index(drop=True)
        reference, _ = enrich(expected, manifest, genomic=genomic)
        written = written.sort_values(["gene_id", "position"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(written[reference.columns], reference, check_dtype=False)

    check()


# --- a track read for context ----------------------------------------------------------------------
def context_world(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Positions in GA without context columns, and a per-nucleotide track over GA; the track's
    rows at the first position's neighbours +1 and -2 are made bad (donor score 1.7, and missing)."""
    rng = np.random.default_rng(5)
    nt = np.arange(1001, 2001)
    d, a = rng.random(len(nt)) * 0.5, rng.random(len(nt)) * 0.4
    track = pd.DataFrame({"gene_id": "GA", "position": nt, "strand": "+", "donor_score": d,
                          "acceptor_score": a, "neither_score": 1 - d - a})
    positions = track[track["position"].isin([1100, 1500, 1800])].reset_index(drop=True)
    track.loc[track["position"] == 1101, "donor_score"] = 1.7
    track.loc[track["position"] == 1098, "acceptor_score"] = np.nan
    return positions, track


def test_bad_rows_of_a_context_track_fail_the_run_naming_the_track(world, client, tmp_path, capsys):
    positions, track = context_world(tmp_path)
    manifest = tmp_path / "ctx.txt"
    manifest.write_text("donor_score\ncontext_score_p1\ncontext_max\n")
    track_path = write(track, tmp_path, "track.parquet")
    message, error = run_both(capsys, client, tmp_path, write(positions, tmp_path), str(manifest),
                              "--track", track_path, "--cache", world["cache"],
                              api_kwargs={"track": track_path, "cache": world["cache"]})
    for text in (message, error):
        assert "track.parquet" in text and "score_above_one" in text and "score_missing" in text


def test_quarantined_track_rows_are_set_aside_and_never_used_as_context(world, client, tmp_path,
                                                                        capsys):
    positions, track = context_world(tmp_path)
    manifest = tmp_path / "ctx.txt"
    manifest.write_text("donor_score\ncontext_score_p1\ncontext_score_m2\ncontext_max\n")
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, client, "--positions", write(positions, tmp_path),
                            "--manifest", str(manifest), "--track", write(track, tmp_path, "t.parquet"),
                            "--cache", world["cache"], "--out", str(out),
                            "--on-bad-rows", "quarantine", "--missing", "impute")
    assert code == 0, err
    assert "track rows rejected 2" in stdout and "rows rejected 0" in stdout
    success = json.loads((out / writer.SUCCESS_FILE).read_text())
    assert success["rows"] == {"in": 3, "written": 3, "rejected": 0, "track": 1000}
    assert success["rejected"]["track_rows"] == 2
    assert success["rejected"]["track_reasons"] == {"score_above_one": 1, "score_missing": 1}
    set_aside = pd.read_parquet(out / "_rejected-track")
    assert sorted(set_aside["position"]) == [1098, 1101]
    assert (set_aside["source"].str.endswith("t.parquet")).all()
    # the first position's +1 and -2 context come from the imputed value, not from the bad rows
    written = pd.concat(pd.read_parquet(f) for f in writer.part_files(str(out)))
    first = written[written["position"] == 1100].iloc[0]
    assert first["context_score_p1"] != 1.7 and not np.isnan(first["context_score_m2"])
    assert success["imputed"] == {"context_score_p1": 1, "context_score_m2": 1, "context_max": 1}
    # another position's context is its neighbour's score in the track of its larger score
    second = written[written["position"] == 1500].iloc[0]
    t = track.set_index("position")
    kind = "donor_score" if t.loc[1500, "donor_score"] >= t.loc[1500, "acceptor_score"] else "acceptor_score"
    assert second["context_score_p1"] == t.loc[1501, kind]


# --- chromosome disagreeing with the annotation (issue 15) ----------------------------------------
def test_chromosome_mismatch_is_a_bad_row(world, client, tmp_path, capsys):
    """A row whose chrom names another chromosome than the annotation's for its gene: by default the
    run fails naming the file, the row and both chromosomes; with quarantine that row is rejected
    with its reason and the rest written (rows in = written + rejected). 'chr1' vs '1' agree."""
    frame = clean_positions().assign(chrom="chr1")
    frame.loc[2, "chrom"] = "1"  # the same chromosome under Ensembl naming: not a bad row
    frame.loc[5, "chrom"] = "chr2"
    path = write(frame, tmp_path)
    bad_row = f"gene_id={frame.loc[5, 'gene_id']} position={frame.loc[5, 'position']}"
    for text in run_both(capsys, client, tmp_path, path, world["genomic"], "--cache", world["cache"],
                         api_kwargs={"cache": world["cache"]}):
        assert "positions.parquet" in text and "chromosome_mismatch" in text and bad_row in text
        assert "chrom='chr2' but the annotation has 'chr1'" in text
    summary = api(client, path, world["genomic"], str(tmp_path / "out_q"), cache=world["cache"],
                  on_bad_rows="quarantine")
    assert summary.rows_in == len(frame) == summary.rows_written + summary.rows_rejected
    assert summary.rows_rejected == 1
    rejected = pd.concat(pd.read_parquet(p) for p in (tmp_path / "out_q").rglob("*.parquet")
                         if "rejected" in str(p.relative_to(tmp_path / "out_q")))
    assert reason_code(rejected["reason"]).tolist() == ["chromosome_mismatch"]
    assert rejected["position"].tolist() == [frame.loc[5, "position"]]
def test_an_exon_outside_its_gene_line_is_a_warning_of_build_cache_and_of_the_run(
        world, client, tmp_path, capsys):
    gtf = tmp_path / "a.gtf"
    lines = Path(world["gtf"]).read_text().splitlines()
    # GA's gene line is 1001..2000; one more transcript of GA with an exon from 950
    lines.append('chr1\ttest\texon\t950\t1100\t.\t+\t.\tgene_id "GA"; transcript_id "GA.2";')
    gtf.write_text("\n".join(lines) + "\n")
    assert main(["build-cache", "--genome", world["fasta"], "--annotation", str(gtf),
                 "--out", str(tmp_path / "cache"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "warning: 1 gene(s) with exons outside their gene line (GA)" in out
    summary = api(client, write(clean_positions(), tmp_path), world["scores"], str(tmp_path / "out"),
                  cache=str(tmp_path / "cache"))
    assert summary.warnings["exons_outside_gene_line"]["genes"] == ["GA"]
    success = json.loads((tmp_path / "out" / writer.SUCCESS_FILE).read_text())
    assert success["warnings"]["exons_outside_gene_line"]["count"] == 1
    assert any("exons outside their gene line (GA)" in line for line in summary.lines())

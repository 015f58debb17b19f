"""predict_base / predict-base on real genes of the bundled Arabidopsis slice.

References are independent of the code under test: exon coordinates parsed here from the GTF text
with a plain loop, the genome read here with gzip, and real biology (an intron starts with GT and
ends with AG on the transcribed strand).
"""
from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.basemodel import predict as bp
from dask_enrich.basemodel import spliceai as sa
from dask_enrich.cli import predict_base as command
from dask_enrich.errors import ConfigError, InputError

DATA = Path(__file__).resolve().parents[2] / "dask_enrich" / "data"
FASTA = DATA / "athal_chr1_1mb.fa.gz"
GTF = DATA / "athal_chr1_1mb.gtf.gz"
PLUS_GENE = "AT1G01160"  # + strand, 1,758 nt, 5 introns, full 5 kb flanks
MINUS_GENE = "AT1G01030"  # - strand, 2,066 nt, 1 intron
EDGE_GENE = "AT1G01010"  # + strand, starts at 3,631: 1,370 flank positions beyond the sequence start

try:
    sa.weights_dir()
    HAVE_WEIGHTS = True
except ConfigError:  # pragma: no cover
    HAVE_WEIGHTS = False
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="spliceai weights not installed")


@pytest.fixture(scope="module")
def genome_text() -> bytes:
    with gzip.open(FASTA, "rb") as f:
        return b"".join(line.strip() for line in f if not line.startswith(b">")).upper()


@pytest.fixture(scope="module")
def exons() -> dict[str, list[tuple[int, int, str, str]]]:
    """gene_id -> [(start, end, strand, transcript_id)] of its exon lines."""
    out: dict[str, list] = {}
    with gzip.open(GTF, "rt") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[2] != "exon":
                continue
            gene = re.search(r'gene_id "([^"]+)"', fields[8]).group(1)
            tx = re.search(r'transcript_id "([^"]+)"', fields[8]).group(1)
            out.setdefault(gene, []).append((int(fields[3]), int(fields[4]), fields[6], tx))
    return out


def _boundaries(exon_list) -> tuple[set[int], set[int]]:
    """Exon-side boundary nucleotides (donor, acceptor) of every intron, on the gene's strand."""
    donors, acceptors = set(), set()
    by_tx: dict[str, list] = {}
    for start, end, strand, tx in exon_list:
        by_tx.setdefault(tx, []).append((start, end, strand))
    for parts in by_tx.values():
        parts.sort()
        for (s1, e1, strand), (s2, e2, _) in zip(parts, parts[1:]):
            if strand == "+":
                donors.add(e1)  # last exon nucleotide before the intron
                acceptors.add(s2)  # first exon nucleotide after it
            else:
                donors.add(s2)
                acceptors.add(e1)
    return donors, acceptors


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    if not HAVE_WEIGHTS:
        pytest.skip("spliceai weights not installed")
    from distributed import Client, LocalCluster

    out = tmp_path_factory.mktemp("track") / "track.parquet"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            summary = bp.predict_base(FASTA, GTF, [MINUS_GENE, PLUS_GENE, EDGE_GENE], out, client=client)
    return pd.read_parquet(out), summary, out


@needs_weights
def test_track_layout(track) -> None:
    df, summary, _ = track
    assert list(df.columns) == bp.TRACK_COLUMNS
    assert {c: str(df[c].dtype) for c in ("position", "donor_score", "acceptor_score", "neither_score")} == {
        "position": "int64", "donor_score": "float32", "acceptor_score": "float32", "neither_score": "float32"}
    # one row per nucleotide of each gene span (GTF gene lines read by hand)
    spans = {}
    with gzip.open(GTF, "rt") as f:
        for line in f:
            fields = line.split("\t")
            if len(fields) >= 9 and fields[2] == "gene":
                gid = re.search(r'gene_id "([^"]+)"', fields[8]).group(1)
                spans[gid] = (int(fields[3]), int(fields[4]), fields[6])
    assert list(summary.columns) == bp.SUMMARY_COLUMNS
    assert list(summary["gene_id"]) == ["AT1G01010", "AT1G01030", "AT1G01160"]  # annotation order
    assert (summary["cpu_seconds"] > 0).all() and (summary["seconds"] > 0).all()
    for gid, rows in df.groupby("gene_id", sort=False):
        start, end, strand = spans[gid]
        np.testing.assert_array_equal(rows["position"].to_numpy(), np.arange(start, end + 1))
        assert set(rows["strand"]) == {strand} and set(rows["chrom"]) == {"NC_003070.9"}
    total = df[["donor_score", "acceptor_score", "neither_score"]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    padded = dict(zip(summary["gene_id"], summary["flank_padded"]))
    assert padded == {EDGE_GENE: 5000 - (3631 - 1), MINUS_GENE: 0, PLUS_GENE: 0}


@needs_weights
def test_track_encodings(track) -> None:
    """Positions delta-encoded (what a track scan decodes fastest), text columns as dictionaries,
    scores plain (a dictionary of float scores is abandoned after the first page), every column
    required (no definition levels to decode)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(track[2]).metadata
    assert all(meta.schema.column(i).max_definition_level == 0 for i in range(meta.num_columns))
    for g in range(meta.num_row_groups):
        columns = {meta.row_group(g).column(i).path_in_schema: meta.row_group(g).column(i)
                   for i in range(meta.num_columns)}
        assert "DELTA_BINARY_PACKED" in columns["position"].encodings
        for name in ("gene_id", "chrom", "strand"):
            assert "RLE_DICTIONARY" in columns[name].encodings
        for name in ("donor_score", "acceptor_score", "neither_score"):
            assert not columns[name].has_dictionary_page
        assert columns["position"].statistics.has_min_max


@needs_weights
@pytest.mark.parametrize("gene", [PLUS_GENE, MINUS_GENE])
def test_top_scores_land_on_annotated_splice_sites(track, exons, genome_text, gene) -> None:
    df, _, _ = track
    rows = df[df["gene_id"] == gene]
    donors, acceptors = _boundaries(exons[gene])
    strand = exons[gene][0][2]
    pos = rows["position"].to_numpy()
    top_donor = int(pos[np.argmax(rows["donor_score"].to_numpy())])
    top_acceptor = int(pos[np.argmax(rows["acceptor_score"].to_numpy())])
    assert top_donor in donors
    assert top_acceptor in acceptors
    # clear peaks: far above the background (median ~1e-6)
    assert rows["donor_score"].max() > 0.2 and rows["acceptor_score"].max() > 0.2
    g = genome_text  # g[p - 1] is 1-based position p
    if strand == "+":
        assert g[top_donor : top_donor + 2] == b"GT"  # intron starts right after the donor peak
        assert g[top_acceptor - 3 : top_acceptor - 1] == b"AG"  # and ends right before the acceptor
    else:
        assert g[top_donor - 3 : top_donor - 1] == b"AC"  # reverse complement of GT
        assert g[top_acceptor : top_acceptor + 2] == b"CT"  # reverse complement of AG
    # the project's annotation lists the intronic neighbour of each peak
    from dask_enrich.genome.gtf import read_gtf

    sites = read_gtf(GTF).splice_sites
    sites = sites[sites["gene_id"] == gene]
    step = 1 if strand == "+" else -1
    assert top_donor + step in set(sites.loc[sites["site_type"] == "donor", "position"])
    assert top_acceptor - step in set(sites.loc[sites["site_type"] == "acceptor", "position"])


class _FakeFasta:
    def __init__(self, seq: bytes) -> None:
        self.seq = seq

    def length(self, name: str) -> int:
        return len(self.seq)

    def fetch(self, name: str, start: int, end: int) -> np.ndarray:
        return np.frombuffer(self.seq[start - 1 : end], dtype=np.uint8)


def test_gene_window_pads_with_n_beyond_sequence_ends() -> None:
    fasta = _FakeFasta(b"ACGTACGTAC")
    seq, padded = bp.gene_window(fasta, "x", 3, 8, flank=4)
    assert bytes(seq) == b"NNACGTACGTACNN" and padded == 4
    seq, padded = bp.gene_window(fasta, "x", 5, 6, flank=2)
    assert bytes(seq) == b"GTACGT" and padded == 0  # positions 3..8
    with pytest.raises(InputError):
        bp.gene_window(fasta, "x", 5, 11)


def test_cli_help_and_errors(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="dask-enrich")
    sub = parser.add_subparsers(dest="command")
    command.register_cli(sub)
    with pytest.raises(SystemExit):
        parser.parse_args(["predict-base", "--help"])
    text = capsys.readouterr().out
    for option in ("--genome", "--annotation", "--genes", "--genes-file", "--out", "--scheduler", "--workers"):
        assert option in text
    with pytest.raises(SystemExit):  # --genes and --genes-file are exclusive
        parser.parse_args(["predict-base", "--genome", "g", "--annotation", "a", "--genes", "X",
                           "--genes-file", "f", "--out", "o"])
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--genes", "AT1G01010,NOT_A_GENE", "--out", str(tmp_path / "t.parquet")])
    assert args.handler(args) == InputError.exit_code
    assert "NOT_A_GENE" in capsys.readouterr().err
    assert not (tmp_path / "t.parquet").exists()
    args = parser.parse_args(["predict-base", "--genome", str(tmp_path / "none.fa"), "--annotation", str(GTF),
                              "--genes", "AT1G01010", "--out", str(tmp_path / "t.parquet")])
    assert args.handler(args) == InputError.exit_code
    gtf = tmp_path / "beyond.gtf"  # a gene past the end of the 1 Mb slice
    gtf.write_text('NC_003070.9\tx\tgene\t1000100\t1000900\t.\t+\t.\tgene_id "FAR";\n'
                   'NC_003070.9\tx\texon\t1000100\t1000900\t.\t+\t.\tgene_id "FAR"; transcript_id "FAR.1";\n')
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(gtf),
                              "--genes", "FAR", "--out", str(tmp_path / "t.parquet")])
    assert args.handler(args) == InputError.exit_code
    assert "FAR" in capsys.readouterr().err
    (tmp_path / "genes.txt").write_text("# comment\n\nAT1G01010\n AT1G01030 # trailing\n")
    assert bp.read_gene_list(tmp_path / "genes.txt") == ["AT1G01010", "AT1G01030"]
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--genes", "AT1G01010", "--workers", "0", "--out", str(tmp_path / "t.parquet")])
    assert args.handler(args) == ConfigError.exit_code
    # an existing output is refused before any work, unless --overwrite
    (tmp_path / "t.parquet").write_bytes(b"a user's file")
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--genes", "NOT_A_GENE", "--out", str(tmp_path / "t.parquet")])
    assert args.handler(args) == ConfigError.exit_code
    assert "exists: give --overwrite" in capsys.readouterr().err
    assert (tmp_path / "t.parquet").read_bytes() == b"a user's file"
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--genes", "NOT_A_GENE", "--out", str(tmp_path / "t.parquet"), "--overwrite"])
    assert args.handler(args) == InputError.exit_code  # past the refusal: the gene is checked


@needs_weights
@pytest.mark.distributed
def test_cli_runs_on_local_worker_processes(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="dask-enrich")
    command.register_cli(parser.add_subparsers(dest="command"))
    (tmp_path / "genes.txt").write_text(f"{MINUS_GENE}\n")
    out = tmp_path / "t.parquet"
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--genes-file", str(tmp_path / "genes.txt"), "--workers", "1", "--out", str(out)])
    assert args.handler(args) == 0
    assert "track written to" in capsys.readouterr().out
    df = pd.read_parquet(out)
    assert len(df) == 2066 and set(df["gene_id"]) == {MINUS_GENE}


def test_cli_predicts_every_gene_by_default_and_chrom_narrows(tmp_path, monkeypatch) -> None:
    """Without --genes, predict-base asks predict_base for every gene of the annotation (genes
    None), and --chrom passes the sequences to narrow it to."""
    seen = {}

    def fake_predict_base(genome, annotation, genes, out, **kw):
        seen["genes"], seen["chroms"] = genes, kw.get("chroms")
        return pd.DataFrame({"gene_id": ["g"], "length": [10], "flank_padded": [0]})

    monkeypatch.setattr(command, "predict_base", fake_predict_base)
    parser = argparse.ArgumentParser(prog="dask-enrich")
    command.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--out", str(tmp_path / "t.parquet")])
    assert args.genes is None and args.genes_file is None
    assert args.handler(args) == 0 and seen == {"genes": None, "chroms": None}
    args = parser.parse_args(["predict-base", "--genome", str(FASTA), "--annotation", str(GTF),
                              "--chrom", "NC_003070.9", "--out", str(tmp_path / "t.parquet")])
    assert args.handler(args) == 0 and seen == {"genes": None, "chroms": ["NC_003070.9"]}


def test_predict_base_chrom_filter_and_unknown_chrom(tmp_path) -> None:
    from dask_enrich.genome.gtf import read_gtf

    annotation = read_gtf(GTF)
    with pytest.raises(InputError, match="'chrX'"):
        bp.predict_base(FASTA, annotation, ["AT1G01010"], tmp_path / "t.parquet", chroms=["chrX"])


def _predict_cmd(out, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "dask_enrich.cli", "predict-base", "--genome", str(FASTA),
            "--annotation", str(GTF), "--genes", f"{EDGE_GENE},{MINUS_GENE}",
            "--workers", "1", "--partition-rows", "1", "--out", str(out), *extra]


def _parts(out) -> dict[str, pd.DataFrame]:
    import pyarrow.parquet as pq

    return {p.name: pq.read_table(p).to_pandas() for p in sorted(Path(out).glob("part-*.parquet"))}


@needs_weights
def test_interrupted_predict_base_resumes_to_the_same_output(tmp_path) -> None:
    """A directory --out: one part per gene partition (here one gene each). The run is killed
    (SIGKILL, its whole process group) after its first part appears; --resume keeps that part, predicts the other genes, and the
    output equals an uninterrupted run's, part for part and value for value."""
    import json
    import os
    import signal
    import subprocess
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    reference = subprocess.run(_predict_cmd(tmp_path / "ref"), capture_output=True, text=True,
                               env=env, timeout=300)
    assert reference.returncode == 0, reference.stderr
    expected = _parts(tmp_path / "ref")
    assert list(expected) == ["part-00000.parquet", "part-00001.parquet"]
    assert [set(frame["gene_id"]) for frame in expected.values()] == [{EDGE_GENE}, {MINUS_GENE}]

    out = tmp_path / "out"
    proc = subprocess.Popen(_predict_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("part-*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no part file appeared"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    kept = {name: (out / name).stat().st_mtime_ns for name in _parts(out)}
    assert len(kept) == 1 and not (out / "_SUCCESS.json").exists()

    again = subprocess.run(_predict_cmd(out), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 3 and "--resume" in again.stderr  # a non-empty OUT is refused
    resumed = subprocess.run(_predict_cmd(out, "--resume"), capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    success = json.loads((out / "_SUCCESS.json").read_text())
    assert success["partitions"]["resumed"] == len(kept)
    assert success["partitions"]["written"] == 2 - len(kept)
    got = _parts(out)
    assert list(got) == list(expected)
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True)
    for name, mtime in kept.items():  # the kept part was not rewritten
        assert (out / name).stat().st_mtime_ns == mtime
    import pyarrow.parquet as pq

    for name in got:  # the parts' columns required, as the one-file track's
        assert not any(f.nullable for f in pq.read_schema(out / name))

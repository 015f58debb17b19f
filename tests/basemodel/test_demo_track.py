"""The bundled demo track is real SpliceAI output aligned with the real annotation.

Checked against the GTF text parsed here (exon boundaries of every transcript) and the genome read
here: the layout (one row per span nucleotide), and that the highest-scoring positions of each
type are annotated splice sites on both strands (top-k accuracy well above chance, which is
about k / span ~ 1%). The slow test repeats the accuracy check on freshly predicted genes.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_enrich.basemodel import predict as bp
from dask_enrich.basemodel import spliceai as sa
from dask_enrich.errors import ConfigError

DATA = Path(__file__).resolve().parents[2] / "dask_enrich" / "data"
TRACK = DATA / "demo_track.parquet"
GENES = DATA / "demo_genes.txt"
GTF = DATA / "athal_chr1_1mb.gtf.gz"
FASTA = DATA / "athal_chr1_1mb.fa.gz"


def _gtf() -> tuple[dict, dict]:
    """gene spans {gene: (start, end, strand)} and exon-side boundary nucleotides
    {(gene, 'donor'|'acceptor'): set(positions)} parsed line by line."""
    spans, tx_exons = {}, {}
    with gzip.open(GTF, "rt") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9:
                continue
            gene = re.search(r'gene_id "([^"]+)"', fields[8]).group(1)
            if fields[2] == "gene":
                spans[gene] = (int(fields[3]), int(fields[4]), fields[6])
            elif fields[2] == "exon":
                tx = re.search(r'transcript_id "([^"]+)"', fields[8]).group(1)
                tx_exons.setdefault((gene, tx), []).append((int(fields[3]), int(fields[4]), fields[6]))
    sites: dict = {}
    for (gene, _), exons in tx_exons.items():
        exons.sort()
        for (s1, e1, strand), (s2, e2, _) in zip(exons, exons[1:]):
            donor, acceptor = (e1, s2) if strand == "+" else (s2, e1)
            sites.setdefault((gene, "donor"), set()).add(donor)
            sites.setdefault((gene, "acceptor"), set()).add(acceptor)
    return spans, sites


def _topk(track: pd.DataFrame, sites: dict) -> dict[tuple[str, str], float]:
    out = {}
    for site_type in ("donor", "acceptor"):
        for strand in ("+", "-"):
            t = track[track["strand"] == strand]
            truth = {(g, p) for g in t["gene_id"].unique() for p in sites.get((g, site_type), ())}
            k = len(truth)
            top = np.argsort(-t[f"{site_type}_score"].to_numpy(), kind="stable")[:k]
            hits = sum((g, int(p)) in truth for g, p in zip(t["gene_id"].to_numpy()[top], t["position"].to_numpy()[top]))
            out[(site_type, strand)] = hits / k
    return out


def test_demo_track_layout_and_accuracy() -> None:
    track = pd.read_parquet(TRACK)
    assert list(track.columns) == bp.TRACK_COLUMNS
    for c in ("donor_score", "acceptor_score", "neither_score"):
        assert track[c].dtype == np.float32
    genes = [ln.strip() for ln in GENES.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert list(track["gene_id"].unique()) == genes
    spans, sites = _gtf()
    strands = [spans[g][2] for g in genes]
    assert strands.count("+") == strands.count("-") == len(genes) // 2
    for gene, rows in track.groupby("gene_id", sort=False):
        start, end, strand = spans[gene]
        np.testing.assert_array_equal(rows["position"].to_numpy(), np.arange(start, end + 1))
        assert set(rows["strand"]) == {strand}
    assert 60_000 <= len(track) <= 100_000
    np.testing.assert_allclose(track[["donor_score", "acceptor_score", "neither_score"]].sum(axis=1), 1.0, atol=1e-5)
    acc = _topk(track, sites)
    assert min(acc.values()) > 0.5, acc  # chance is ~1%


try:
    sa.weights_dir()
    HAVE_WEIGHTS = True
except ConfigError:  # pragma: no cover
    HAVE_WEIGHTS = False


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_WEIGHTS, reason="spliceai weights not installed")
def test_fresh_predictions_hit_annotated_sites(tmp_path) -> None:
    from distributed import Client, LocalCluster

    spans, sites = _gtf()
    spliced = sorted(g for g in spans if (g, "donor") in sites and spans[g][1] - spans[g][0] < 4000)
    plus = [g for g in spliced if spans[g][2] == "+"][10:18]
    minus = [g for g in spliced if spans[g][2] == "-"][10:18]
    out = tmp_path / "t.parquet"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            bp.predict_base(FASTA, GTF, plus + minus, out, client=client)
    acc = _topk(pd.read_parquet(out), sites)
    assert min(acc.values()) > 0.5, acc

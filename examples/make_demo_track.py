"""Make the bundled demo SpliceAI track: dask_enrich/data/demo_track.parquet and demo_genes.txt.

How the committed files were made (real model output, nothing edited by hand):

    pip install --no-deps spliceai==1.3.1     # SpliceAI's released weights, without TensorFlow
    python examples/make_demo_track.py        # about a minute on 2 cores

1. Genes: from the bundled Arabidopsis slice (dask_enrich/data/athal_chr1_1mb.gtf.gz, parsed with
   ``dask_enrich.genome.read_gtf``), the genes that have at least 3 exons, overlap no other gene,
   are 2,000-5,000 nt long and have their full 5,000-nt SpliceAI context inside the slice
   (gene_start - 5000 >= 1 and gene_end + 5000 <= slice length, so no N padding is involved);
   12 per strand, evenly spaced along the slice (deterministic, no randomness).
2. Scores: ``dask_enrich.basemodel.predict_base`` on those genes (numpy port of SpliceAI-10k,
   mean of its five models, minus-strand genes reverse-complemented for the model and reported in
   forward genomic order), on a LocalCluster of worker processes.
3. Output: one row per nucleotide of each gene span (gene_id, chrom, strand, position 1-based,
   donor_score, acceptor_score, neither_score as float32), Parquet with zstd; the gene ids, one per
   line, in demo_genes.txt (usable as ``dask-enrich predict-base --genes-file``).

Recomputing gives the same scores up to float32 rounding of BLAS summation order.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dask_enrich.basemodel.predict import predict_base
from dask_enrich.basemodel.spliceai import FLANK
from dask_enrich.genome.fasta import IndexedFasta
from dask_enrich.genome.gtf import read_gtf

DATA = Path(__file__).resolve().parents[1] / "dask_enrich" / "data"
FASTA = DATA / "athal_chr1_1mb.fa.gz"
GTF = DATA / "athal_chr1_1mb.gtf.gz"
PER_STRAND = 12
MIN_LEN, MAX_LEN, MIN_EXONS = 2000, 5000, 3


def overlaps_another_gene(genes: pd.DataFrame) -> np.ndarray:
    """Per gene, whether another gene's span overlaps its span on either strand (not the
    ``num_overlaps`` feature, which counts same-strand eligible partners as training does)."""
    start, end = genes["gene_start"].to_numpy(), genes["gene_end"].to_numpy()
    others = np.zeros(len(genes), dtype=np.int64)
    for seqname in genes["seqname"].unique():  # a loop over chromosomes
        on = np.flatnonzero(genes["seqname"].to_numpy() == seqname)
        s, e = start[on], end[on]
        others[on] = np.searchsorted(np.sort(s), e, side="right") - np.searchsorted(np.sort(e), s) - 1
    return others > 0


def pick_demo_genes(genes: pd.DataFrame, slice_length: int, per_strand: int = PER_STRAND) -> pd.DataFrame:
    """The demo genes (see the module docstring), in genomic order."""
    ok = (
        (genes["num_exons"] >= MIN_EXONS)
        & ~overlaps_another_gene(genes)
        & genes["gene_length"].between(MIN_LEN, MAX_LEN)
        & (genes["gene_start"] - FLANK >= 1)
        & (genes["gene_end"] + FLANK <= slice_length)
    )
    cand = genes[ok].sort_values("gene_start")
    picked = []
    for strand in ("+", "-"):
        s = cand[cand["strand"] == strand]
        if len(s) < per_strand:
            raise SystemExit(f"only {len(s)} candidate genes on strand {strand}, need {per_strand}")
        idx = np.unique(np.linspace(0, len(s) - 1, per_strand).round().astype(int))
        picked.append(s.iloc[idx])
    return pd.concat(picked).sort_values("gene_start").reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="Make the bundled demo SpliceAI track.")
    ap.add_argument("--out-dir", default=str(DATA), help="where to write demo_track.parquet and demo_genes.txt")
    ap.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    args = ap.parse_args()
    out_dir = Path(args.out_dir)

    ann = read_gtf(GTF)
    fasta = IndexedFasta(FASTA)
    (seqname,) = fasta.names
    chosen = pick_demo_genes(ann.genes, fasta.length(seqname))
    total = int(chosen["gene_length"].sum())
    print(f"{len(chosen)} genes ({(chosen['strand'] == '+').sum()} +, {(chosen['strand'] == '-').sum()} -), "
          f"{total:,} nt of gene span")

    track = out_dir / "demo_track.parquet"
    t0 = time.perf_counter()
    summary = predict_base(FASTA, ann, chosen["gene_id"].tolist(), track, n_workers=args.workers)
    print(f"predicted in {time.perf_counter() - t0:.1f} s wall ({summary['seconds'].sum():.1f} worker s)")
    if int(summary["flank_padded"].sum()) != 0:
        raise SystemExit("a demo gene needed N padding: the selection rule is broken")

    lines = ["# Genes of dask_enrich/data/demo_track.parquet (made by examples/make_demo_track.py)"]
    lines += chosen["gene_id"].tolist()
    (out_dir / "demo_genes.txt").write_text("\n".join(lines) + "\n")

    meta = pq.ParquetFile(track).metadata
    print(f"wrote {track} ({track.stat().st_size / 1e6:.2f} MB, {meta.num_rows:,} rows) and demo_genes.txt")


if __name__ == "__main__":
    main()

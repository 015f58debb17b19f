"""Shared data of the skew tests: a training-like matrix built on real Arabidopsis genes.

The "training" matrix is the core's own output for positions on eight real genes of the bundled
1 Mb slice (four per strand: annotated splice sites, the gene ends and random positions), with the
bundled real SpliceAI track of those genes (``demo_track.parquet``; a synthetic Dirichlet track
when it is absent), plus the columns a MetaSpliceAI training matrix carries and the check must
ignore.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "dask_enrich" / "data"
SLICE_FASTA = DATA / "athal_chr1_1mb.fa.gz"
SLICE_GTF = DATA / "athal_chr1_1mb.gtf.gz"
MODEL_DIR = DATA / "demo_model"
DEMO_TRACK = DATA / "demo_track.parquet"
LABEL_COLUMNS = ("splice_type", "pred_type", "transcript_id", "label")


@dataclass
class TrainingSet:
    cache_dir: Path
    cache: object
    track_path: Path
    track: pd.DataFrame
    training: pd.DataFrame  # unperturbed, genomic positions, with label columns
    genes: pd.DataFrame  # gene_start, gene_end, strand of the chosen genes (index gene_id)


def build_cache_in(directory: Path):
    """The genomic cache of the slice, built under ``directory`` (FASTA symlinked there so its
    index files are not written into the package)."""
    from dask_enrich.genome.cache import build_cache

    directory.mkdir(parents=True, exist_ok=True)
    fasta = directory / SLICE_FASTA.name
    if not fasta.exists():
        os.symlink(SLICE_FASTA, fasta)
    return build_cache(fasta, SLICE_GTF, directory / "cache")


def choose_genes(gene_table: pd.DataFrame, per_strand: int = 4, max_length: int = 2500) -> pd.DataFrame:
    small = gene_table[(gene_table["gene_length"] < max_length) & (gene_table["num_exons"] > 1)]
    picked = [small[small["strand"] == s].head(per_strand) for s in ("+", "-")]
    return pd.concat(picked)[["gene_start", "gene_end", "strand"]]


def make_track(genes: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Dirichlet base-model scores for every nucleotide of each gene's span."""
    rng = np.random.default_rng(seed)
    parts = []
    for gene_id, (start, end, strand) in genes.iterrows():
        pos = np.arange(start, end + 1)
        p = rng.dirichlet([0.3, 0.3, 3.0], len(pos))
        parts.append(pd.DataFrame({"gene_id": gene_id, "strand": strand, "position": pos,
                                   "donor_score": p[:, 0], "acceptor_score": p[:, 1],
                                   "neither_score": p[:, 2]}))
    return pd.concat(parts, ignore_index=True)


def make_positions(cache, genes: pd.DataFrame, track: pd.DataFrame, per_gene: int = 14,
                   seed: int = 11) -> pd.DataFrame:
    """Annotated splice sites, both gene ends and random positions of each gene, with the track's
    scores at those positions."""
    rng = np.random.default_rng(seed)
    sites = cache.splice_sites
    chosen = []
    for gene_id, (start, end, _strand) in genes.iterrows():
        annotated = sites.loc[sites["gene_id"] == gene_id, "position"].to_numpy()
        annotated = annotated[(annotated >= start) & (annotated <= end)]
        random = rng.integers(start, end + 1, per_gene)
        pos = np.unique(np.concatenate([annotated, random, [start, start + 1, end]]))
        chosen.append(pd.DataFrame({"gene_id": gene_id, "position": pos}))
    positions = pd.concat(chosen, ignore_index=True)
    scores = track[["gene_id", "position", "donor_score", "acceptor_score", "neither_score"]]
    return positions.merge(scores, on=["gene_id", "position"], how="left", validate="1:1")


def build_training_set(directory: Path) -> TrainingSet:
    from dask_enrich.core import enrich
    from dask_enrich.manifest import load_manifest

    cache = build_cache_in(directory)
    if DEMO_TRACK.is_file():  # real SpliceAI scores over whole genes
        demo = pd.read_parquet(DEMO_TRACK)
        genes = choose_genes(cache.gene_table.loc[demo["gene_id"].unique()], max_length=3000)
        track = demo[demo["gene_id"].isin(genes.index)].reset_index(drop=True)
    else:
        genes = choose_genes(cache.gene_table)
        track = make_track(genes)
    track_path = directory / "track.parquet"
    track.to_parquet(track_path, index=False)
    positions = make_positions(cache, genes, track)
    manifest = load_manifest(MODEL_DIR)
    features, _ = enrich(positions, manifest, genomic=cache, track=track)
    rng = np.random.default_rng(3)
    labels = pd.DataFrame({
        "splice_type": rng.choice(["donor", "acceptor", "neither"], len(features)),
        "pred_type": rng.choice(["TP", "FP", "FN", "TN"], len(features)),
        "transcript_id": [f"{g}.1" for g in features["gene_id"]],
        "label": rng.integers(0, 3, len(features)),
    })
    training = pd.concat([features, labels], axis=1)
    # A training file does not keep the engine's column order: shuffle it.
    columns = list(training.columns)
    rng.shuffle(columns)
    return TrainingSet(directory / "cache", cache, track_path, track, training[columns], genes)

"""``dask-enrich demo``: the whole job on bundled real data, on a local Dask cluster.

Real inputs, shipped in ``dask_enrich/data``: a 1 Mb slice of *Arabidopsis thaliana* chromosome 1
(TAIR10, RefSeq) and its GTF; SpliceAI's per-nucleotide predictions for a set of its genes
(precomputed with ``dask-enrich predict-base``, the numpy port of SpliceAI's released weights); the
3-mer meta-model's 124-feature manifest with training statistics. The demo selects the uncertain
positions of the track (0.02 <= max(donor, acceptor) < 0.80), enriches them with all 124 features
(context from the track's neighbouring nucleotides, sequence and 3-mers from the genome, gene
structure from the annotation) and writes partitioned Parquet.
"""
from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from .options import DEFAULT_DEMO_WORKERS

DATA = Path(str(files("dask_enrich") / "data"))
GENOME = DATA / "athal_chr1_1mb.fa.gz"
ANNOTATION = DATA / "athal_chr1_1mb.gtf.gz"
TRACK = DATA / "demo_track.parquet"
MODEL_DIR = DATA / "demo_model"
#: Track rows per gene partition: the demo's 71 kb track spreads over a few partitions and workers.
DEMO_PARTITION_ROWS = 12_000
PREVIEW_COLUMNS = ["gene_id", "position", "strand", "donor_score", "acceptor_score",
                   "context_score_m1", "donor_is_local_peak", "gc_content", "3mer_GTA", "n_splice_sites"]


def default_cache_dir() -> Path:
    """Where genomic caches live between runs: $XDG_CACHE_HOME/dask-enrich (~/.cache/dask-enrich)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dask-enrich"


def run_demo(out: str | Path = "dask-enrich-demo", *, workers: int = DEFAULT_DEMO_WORKERS, log=print, progress=None,
             score: bool = False):
    """Run the demo into ``out`` (replacing an earlier demo output); returns the run summary.
    ``score``: apply the bundled meta-model in the same pass, in selective mode (every track
    position once: meta scores where uncertain, base scores elsewhere)."""
    from .engine.models import ScoreOptions
    from .engine.run import run_enrichment

    missing = [p.name for p in (GENOME, ANNOTATION, TRACK, MODEL_DIR) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"bundled demo data missing from {DATA}: {', '.join(missing)}")
    log(f"demo data: {TRACK.name} (SpliceAI track), {GENOME.name}, {ANNOTATION.name}, "
        f"model {MODEL_DIR.name}")
    return run_enrichment(
        None, MODEL_DIR, str(out), track=str(TRACK), genome=str(GENOME), annotation=str(ANNOTATION),
        cache_dir=str(default_cache_dir()), mode="overwrite", workers=workers, threads_per_worker=1,
        partition_rows=DEMO_PARTITION_ROWS, progress=progress, log=log,
        score=ScoreOptions(selective=True) if score else None)


def preview(out: str | Path, rows: int = 5) -> str:
    """A few rows and feature columns of the written output (re-scored rows of a scored demo)."""
    dataset = pq.ParquetDataset(str(out))
    if "rescored" in dataset.schema.names:
        frame = dataset.read().to_pandas()
        frame = frame[frame["rescored"]].head(rows).drop(columns=["chrom"], errors="ignore")
        return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    table = dataset.read(columns=[c for c in PREVIEW_COLUMNS if c in dataset.schema.names])
    frame = table.slice(0, rows).to_pandas()
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def agreement(out: str | Path) -> pd.DataFrame:
    """Top-k agreement with the annotated sites, base vs meta-where-uncertain scores, over the
    demo genes the meta-model did not train on (listed in its model.json)."""
    from .basemodel.sites import site_flags, sites_on_scored_nucleotide, topk_accuracy
    from .genome.cache import load_cached

    scored = pd.read_parquet(str(out), filters=[("gene_id", "in", _held_out())])
    run = json.loads((Path(out) / "_SUCCESS.json").read_text())
    cache = load_cached(run["inputs"]["cache"]["path"])  # the run's own genomic cache
    sites = sites_on_scored_nucleotide(cache.splice_sites, cache.gene_table["strand"])
    flags = site_flags(scored, sites)
    rows = []
    for kind in ("donor", "acceptor"):
        base, meta = scored[f"{kind}_score"].to_numpy(), scored[f"{kind}_meta"].to_numpy()
        rows.append({"site": kind, "annotated sites": int(flags[kind].sum()),
                     "top-k base (SpliceAI)": topk_accuracy(base, flags[kind]),
                     "top-k with meta scores": topk_accuracy(meta, flags[kind])})
    return pd.DataFrame(rows)


def _held_out() -> list[str]:
    return json.loads((MODEL_DIR / "model.json").read_text())["training"]["held_out_genes"]

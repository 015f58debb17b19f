"""Fixtures of the engine tests: one small real LocalCluster, the bundled slice's genomic cache,
and generators of positions inside the slice's real genes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[2] / "dask_enrich" / "data"
SLICE_FASTA = DATA / "athal_chr1_1mb.fa.gz"
SLICE_GTF = DATA / "athal_chr1_1mb.gtf.gz"
MODEL_DIR = DATA / "demo_model"  # the 124-feature 3-mer manifest


_SHARED: dict = {}


@pytest.fixture(scope="session")
def client():
    """2 worker processes x 1 thread (processes=True: tasks and arguments really are pickled).

    One cluster per session, shared by every module that imports this fixture."""
    from distributed import Client

    from dask_enrich.engine import make_local_cluster

    if "client" not in _SHARED:
        cluster = make_local_cluster(workers=2, threads_per_worker=1, processes=True)
        _SHARED.update(cluster=cluster, client=Client(cluster))
    yield _SHARED["client"]
    if "client" in _SHARED:
        _SHARED.pop("client").close()
        _SHARED.pop("cluster").close()


@pytest.fixture(scope="session")
def slice_cache(tmp_path_factory) -> str:
    """The genomic cache of the bundled real 1 Mb slice of A. thaliana chr1."""
    from dask_enrich.genome.cache import build_cache

    out = tmp_path_factory.mktemp("slice_cache")
    build_cache(SLICE_FASTA, SLICE_GTF, out)
    return str(out)


def positions_in_genes(genes: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` positions inside the genes of a gene table (index gene_id, gene_start, gene_end), in a
    shuffled order, with random scores and a unique ``row_id``."""
    rng = np.random.default_rng(seed)
    length = (genes["gene_end"] - genes["gene_start"] + 1).to_numpy()
    # unique (gene, position) pairs (a repeated pair is a bad row, duplicate_position): sample
    # nucleotides of the concatenated gene spans without replacement, then map them to their gene
    if n > length.sum():
        raise ValueError(f"{n} distinct positions asked of genes spanning {length.sum()} nt")
    flat = rng.choice(length.sum(), n, replace=False)
    pick = np.searchsorted(np.cumsum(length), flat, side="right")
    position = genes["gene_start"].to_numpy()[pick] + flat - (np.cumsum(length) - length)[pick]
    d, a = rng.random(n) * 0.6, rng.random(n) * 0.3
    frame = pd.DataFrame({
        "gene_id": pd.Series(genes.index.to_numpy()[pick], dtype="str"),
        "position": position.astype(np.int64),
        "donor_score": d, "acceptor_score": a, "neither_score": 1.0 - d - a,
    })
    for suffix in ("m2", "m1", "p1", "p2"):
        frame[f"context_score_{suffix}"] = rng.random(n) * 0.5
    frame["row_id"] = np.arange(n, dtype=np.int64)
    return frame


def full_track(genes: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A per-nucleotide track over every position of each gene's span (random scores)."""
    rng = np.random.default_rng(seed)
    length = (genes["gene_end"] - genes["gene_start"] + 1).to_numpy()
    gene = np.repeat(genes.index.to_numpy(), length)
    offset = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    position = np.repeat(genes["gene_start"].to_numpy(), length) + offset
    n = len(position)
    d = rng.random(n) ** 4
    a = rng.random(n) ** 4 * (1 - d)
    return pd.DataFrame({"gene_id": pd.Series(gene, dtype="str"), "position": position.astype(np.int64),
                         "donor_score": d, "acceptor_score": a, "neither_score": 1.0 - d - a})


def write_grouped(frame: pd.DataFrame, directory: Path, files: int, *, shuffle: bool = False
                  ) -> list[set[str]]:
    """Write ``frame`` as ``files`` Parquet files, each holding whole genes (with ``shuffle``, rows
    in random order inside a file, so a file's genes are not contiguous); returns each file's genes."""
    directory.mkdir()
    groups = []
    for i, genes in enumerate(np.array_split(frame["gene_id"].unique(), files)):
        rows = frame[frame["gene_id"].isin(genes)]
        if shuffle:
            rows = rows.sample(frac=1.0, random_state=i)
        rows.to_parquet(directory / f"part-{i}.parquet", index=False)
        groups.append(set(genes))
    return groups


def follows_input(out: Path) -> bool:
    """Whether the run that wrote ``out`` enriched each bin where it was read (its _SUCCESS.json)."""
    import json

    from dask_enrich.engine import writer

    return json.loads((Path(out) / writer.SUCCESS_FILE).read_text())["partitions"]["plan"]["follows_input"]

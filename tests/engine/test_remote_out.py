"""OUT on a non-local filesystem (memory://) with input that goes through the staged exchange, a
cache read through a URL, and the check that the workers can reach OUT before any work."""
from __future__ import annotations

import fsspec
import pandas as pd
import pytest

from dask_enrich.config import EnrichConfig
from dask_enrich.engine import run_enrichment, writer
from dask_enrich.errors import ConfigError
from dask_enrich.genome.cache import build_cache

from .conftest import MODEL_DIR, SLICE_FASTA, SLICE_GTF, positions_in_genes

KEEP = EnrichConfig(keep_columns=("row_id",))


def _read(out: str) -> pd.DataFrame:
    fs, _ = fsspec.core.url_to_fs(out)
    files = writer.part_files(out)  # paths on that filesystem
    assert files
    frames = []
    for f in files:
        with fs.open(f, "rb") as fh:
            frames.append(pd.read_parquet(fh))
    return pd.concat(frames, ignore_index=True).sort_values("row_id").reset_index(drop=True)


def test_memory_out_with_the_staged_exchange_and_a_cache_url(client, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    monkeypatch.setenv("DASK_ENRICH_REMOTE_CACHE", str(tmp_path / "downloads"))
    cache = build_cache(SLICE_FASTA, SLICE_GTF, tmp_path / "cache")
    cache_url = f"memory://i18-{tmp_path.name}/cache"
    build_cache(SLICE_FASTA, SLICE_GTF, cache_url)
    positions = positions_in_genes(cache.gene_table, 4_000, seed=3).sample(frac=1, random_state=0)
    positions.to_parquet(tmp_path / "p.parquet", row_group_size=1_000)  # shuffled: needs the exchange
    kw = dict(config=KEEP, partition_rows=800, exchange_method="staged")
    run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, str(tmp_path / "local"), cache=str(cache.path),
                   client=client, **kw)
    want = _read(str(tmp_path / "local"))

    out = f"memory://i18-{tmp_path.name}/out"
    # worker processes do not share this process's memory: refused before any work
    with pytest.raises(ConfigError, match=r"not reachable from 2 of 2 Dask worker\(s\)"):
        run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, out, cache=cache_url, client=client, **kw)
    fs = fsspec.filesystem("memory")
    assert not [p for p in fs.find(f"/i18-{tmp_path.name}/out") if "part-" in p]
    # threads of this process share it: the staged files keep the memory:// protocol
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cl, \
            Client(cl) as threads:
        summary = run_enrichment(str(tmp_path / "p.parquet"), MODEL_DIR, out, cache=cache_url,
                                 client=threads, mode="overwrite", **kw)
    assert summary.rows_written == 4_000 and summary.partitions > 1
    pd.testing.assert_frame_equal(_read(out), want)
    assert not [p for p in fs.find(f"/i18-{tmp_path.name}/out") if "_staging" in p or "probe" in p]
    fs.rm(f"/i18-{tmp_path.name}", recursive=True)

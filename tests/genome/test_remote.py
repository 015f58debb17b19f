"""Genome, annotation and cache through fsspec URLs (memory://, file://): the same cache as from
local paths; a cache written to and opened from a URL."""
from __future__ import annotations

import fsspec
import pandas as pd
import pytest

from dask_enrich.errors import InputError
from dask_enrich.genome.cache import GenomicCache, build_cache, load_cached
from tests.genome.conftest import SLICE_FASTA, SLICE_GTF, link_into


@pytest.fixture()
def remote(tmp_path, monkeypatch):
    monkeypatch.setenv("DASK_ENRICH_REMOTE_CACHE", str(tmp_path / "downloads"))
    fs = fsspec.filesystem("memory")
    root = f"/i18-{tmp_path.name}"
    fs.pipe_file(f"{root}/refs/genome.fa.gz", SLICE_FASTA.read_bytes())
    fs.pipe_file(f"{root}/refs/genes.gtf.gz", SLICE_GTF.read_bytes())
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


def test_genome_and_annotation_urls_give_the_local_cache(tmp_path, remote):
    local = build_cache(link_into(tmp_path / "fa", SLICE_FASTA), SLICE_GTF, tmp_path / "local")
    got = build_cache(f"{remote}/refs/genome.fa.gz", f"{remote}/refs/genes.gtf.gz", tmp_path / "url")
    pd.testing.assert_frame_equal(got.gene_table, local.gene_table)
    assert (got.path / "bases.npy").read_bytes() == (local.path / "bases.npy").read_bytes()
    assert got.fingerprint == local.fingerprint  # same bytes, same cache
    assert got.meta["urls"] == {"genome": f"{remote}/refs/genome.fa.gz", "annotation": f"{remote}/refs/genes.gtf.gz"}
    again = build_cache(f"file://{SLICE_FASTA}", f"file://{SLICE_GTF}", tmp_path / "url")
    assert again.fingerprint == got.fingerprint
    with pytest.raises(InputError, match="not found: memory://"):
        build_cache(None, f"{remote}/refs/nope.gtf", tmp_path / "x")


def test_cache_written_to_and_opened_from_a_url(tmp_path, remote):
    said: list[str] = []
    built = build_cache(f"{remote}/refs/genome.fa.gz", f"{remote}/refs/genes.gtf.gz",
                        f"{remote}/caches/c1", progress=said.append)
    assert any("copying the genomic cache to memory://" in m for m in said)
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{remote.removeprefix('memory://')}/caches/c1"))
    assert names == sorted(["bases.npy", "cache.json", "exons.parquet", "gene_keys.parquet", "genes.parquet",
                            "splice_sites.parquet"])
    opened = load_cached(f"{remote}/caches/c1")
    assert opened.fingerprint == built.fingerprint
    pd.testing.assert_frame_equal(opened.gene_table, built.gene_table)
    assert GenomicCache.open(f"{remote}/caches/c1").sequence_features(
        ["AT1G01010"], [3700], ["gc_content"])["gc_content"][0] == \
        built.sequence_features(["AT1G01010"], [3700], ["gc_content"])["gc_content"][0]
    said.clear()
    build_cache(f"{remote}/refs/genome.fa.gz", f"{remote}/refs/genes.gtf.gz", f"{remote}/caches/c1",
                progress=said.append)
    assert not any("copying" in m for m in said) and any("reusing" in m for m in said)
    with pytest.raises(InputError, match="not a genomic cache"):
        load_cached(f"{remote}/refs")

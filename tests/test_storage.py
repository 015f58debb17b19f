"""dask_enrich.storage: the one fsspec helper (url -> filesystem, local or not, listing, rename)."""
from __future__ import annotations

import gzip

from dask_enrich import storage


def test_local_and_memory_urls(tmp_path):
    fs, path = storage.url_to_fs(str(tmp_path / "a.txt"))
    assert storage.is_local(fs) and path == str(tmp_path / "a.txt")
    assert storage.full_path(fs, path) == path
    mem, key = storage.url_to_fs("memory://bucket/x.txt")
    assert not storage.is_local(mem)
    assert storage.full_path(mem, key) == "memory:///bucket/x.txt"  # fsspec roots memory paths at /
    assert storage.is_url("s3://b/k") and storage.is_url("memory://x")
    assert not storage.is_url("file:///tmp/x") and not storage.is_url("/tmp/x") and not storage.is_url(None)


def test_listing_rename_and_remove(tmp_path):
    fs, root = storage.url_to_fs(str(tmp_path))
    (tmp_path / "tmp.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    assert sorted(storage.listing(fs, root)) == ["sub", "tmp.json"]
    storage.rename(fs, str(tmp_path / "tmp.json"), str(tmp_path / "final.json"))
    assert sorted(storage.listing(fs, root)) == ["final.json", "sub"]
    storage.remove_quietly(fs, str(tmp_path / "final.json"))
    storage.remove_quietly(fs, str(tmp_path / "never-there"))  # no error
    assert storage.listing(fs, root) == ["sub"]
    mem, key = storage.url_to_fs("memory://storage-test/dir")
    mem.pipe_file(f"{key}/a.tmp", b"abc")
    storage.rename(mem, f"{key}/a.tmp", f"{key}/a")
    assert storage.listing(mem, key) == ["a"] and mem.cat_file(f"{key}/a") == b"abc"


def test_open_file_decompresses(tmp_path):
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with storage.open_file(str(tmp_path / "x.csv.gz"), compression="gzip") as handle:
        assert handle.read() == b"a,b\n1,2\n"

"""Genome, annotation and genomic cache given as fsspec URLs (``s3://``, ``gs://``, ``https://``,
``memory://``, ``file://``, ...), as positions and tracks already are.

They are read through fsspec and kept in a local cache, because the genome cache needs random
access (memory-mapped bases, FASTA indexes) and content hashes: a file is downloaded once into
:func:`local_root` (fsspec's ``filecache``, re-fetched when the remote file changes); a cache
directory is copied once per process that opens it, and again when its remote ``cache.json``
differs. ``file://`` URLs are plain local paths.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from ..errors import InputError
from ..storage import is_url, url_to_fs

#: Environment variable naming the local directory for downloaded inputs and caches.
ROOT_ENV = "DASK_ENRICH_REMOTE_CACHE"


def local_root() -> Path:
    """Where remote inputs are kept: ``$DASK_ENRICH_REMOTE_CACHE``, else ~/.cache/dask-enrich/remote."""
    return Path(os.environ.get(ROOT_ENV) or Path.home() / ".cache" / "dask-enrich" / "remote")


def local_file(path: str | Path | None, storage_options: dict[str, Any] | None = None) -> str | None:
    """A local path for ``path``: itself, a ``file://`` URL's path, or a URL's downloaded copy."""
    if path is None:
        return None
    text = str(path)
    if text.startswith("file://"):
        return text.removeprefix("file://")
    if not is_url(text):
        return text
    protocol = text.split("://", 1)[0]
    try:
        return fsspec.open_local(f"filecache::{text}", filecache={
            "cache_storage": str(local_root() / "files"), "check_files": True, "same_names": False},
            **{protocol: storage_options or {}})
    except FileNotFoundError:
        raise InputError(f"not found: {text}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {text}: {exc}") from exc


def local_cache_dir(url: str, storage_options: dict[str, Any] | None = None, meta_file: str = "cache.json") -> Path:
    """A local copy of the genomic cache directory at ``url`` (copied when absent or stale)."""
    fs, root = url_to_fs(url, storage_options)
    root = root.rstrip("/")
    try:
        remote_meta = fs.cat_file(f"{root}/{meta_file}")
    except FileNotFoundError:
        raise InputError(f"{url}: not a genomic cache (no {meta_file}); build it with "
                         "`dask-enrich build-cache`") from None
    target = local_root() / "caches" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if (target / meta_file).is_file() and (target / meta_file).read_bytes() == remote_meta:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
    try:
        for info in fs.find(root, detail=True).values():
            name = info["name"].rstrip("/")[len(root) + 1:]
            if not name or name.split("/")[0].startswith("."):
                continue  # locks and interrupted builds
            dest = work / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(info["name"], str(dest))
        (work / meta_file).write_bytes(remote_meta)  # the record read above, with the files after it
        old = None
        if target.exists():
            old = target.with_name(target.name + f".old-{os.getpid()}")
            os.replace(target, old)
        os.replace(work, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
        if (target / meta_file).is_file() and (target / meta_file).read_bytes() == remote_meta:
            return target  # another process copied it meanwhile
        raise
    return target


def upload_dir(local: Path, url: str, storage_options: dict[str, Any] | None = None,
               meta_file: str = "cache.json") -> None:
    """Copy a built cache directory (the files its record lists) to ``url``, the record last (a
    reader never sees a record whose files are not all there)."""
    import json

    fs, root = url_to_fs(url, storage_options)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    if fs.exists(f"{root}/{meta_file}"):
        fs.rm(f"{root}/{meta_file}")
    for name in json.loads((local / meta_file).read_text())["files"]:
        fs.put_file(str(local / name), f"{root}/{name}")
    fs.put_file(str(local / meta_file), f"{root}/{meta_file}")

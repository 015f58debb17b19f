"""fsspec paths, declared once: url -> (filesystem, path), local or not, listing, atomic rename.

Every local path or fsspec URL (``s3://``, ``gs://``, ``memory://``, ``file://``...) a run reads
or writes goes through these helpers, so that "is it local" and "how is a file replaced
atomically" have one answer.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec

FileSystem = fsspec.AbstractFileSystem


def url_to_fs(path: str | Path, storage_options: dict[str, Any] | None = None
              ) -> tuple[FileSystem, str]:
    """(filesystem, path without protocol) of a local path or fsspec URL."""
    return fsspec.core.url_to_fs(str(path), **(storage_options or {}))


def is_url(path: str | Path | None) -> bool:
    """Whether ``path`` is a URL other than ``file://``."""
    return path is not None and "://" in str(path) and not str(path).startswith("file://")


def is_local(fs: FileSystem) -> bool:
    """Whether ``fs`` is the local filesystem."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def full_path(fs: FileSystem, path: str) -> str:
    """``path`` as other processes can open it: itself on the local filesystem, else with its
    protocol (``s3://bucket/key``)."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def listing(fs: FileSystem, root: str) -> list[str]:
    """The names (last path component) of the entries of directory ``root``."""
    return [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]


def rename(fs: FileSystem, tmp: str, final: str) -> None:
    """Move ``tmp`` to ``final``: atomic ``os.replace`` on a local filesystem, ``fs.mv`` else
    (object stores have no rename; a reader sees the whole object or none)."""
    if is_local(fs):
        os.replace(tmp, final)  # atomic on one filesystem
    else:
        fs.mv(tmp, final)


def remove_quietly(fs: FileSystem, path: str) -> None:
    """Remove ``path`` if it exists; never raises (cleanup after a failure)."""
    try:
        if fs.exists(path):
            fs.rm(path)
    except Exception:  # noqa: BLE001 - cleanup must not hide the first error
        pass


def open_file(path: str, storage_options: dict[str, Any] | None = None,
              compression: str | None = None, mode: str = "rb") -> "fsspec.core.OpenFile":
    """An fsspec ``OpenFile`` of a local path or URL (``with open_file(...) as handle``),
    decompressing ``compression`` (``gzip``, ...) on the fly."""
    return fsspec.open(path, mode, compression=compression, **(storage_options or {}))

"""Before any work: can the workers reach OUT? A memory:// URL lives in one process, a local path
on one machine; a run whose workers cannot see OUT would write where the client never looks (or
fail half way in the staged exchange). One probe file answers it for every worker at once."""
from __future__ import annotations

import uuid
from typing import Any

from ..errors import ConfigError
from ..storage import url_to_fs


def _sees(url: str, storage_options: dict[str, Any] | None) -> bool:
    fs, path = url_to_fs(url, storage_options)
    try:
        return bool(fs.exists(path))
    except Exception:  # noqa: BLE001 - any failure to look is "cannot reach"
        return False


def check_workers_reach(client: Any, out: str, storage_options: dict[str, Any] | None = None) -> None:
    """ConfigError unless every current worker sees a probe file the client writes into ``out``."""
    fs, root = url_to_fs(out, storage_options)
    fs.makedirs(root, exist_ok=True)
    probe = f"{root.rstrip('/')}/.dask-enrich-probe-{uuid.uuid4().hex[:12]}"
    fs.pipe_file(probe, b"dask-enrich: can the workers read this?\n")
    url = probe if "://" not in str(out) else fs.unstrip_protocol(probe)
    try:
        seen = client.run(_sees, url, storage_options)
    finally:
        fs.rm(probe)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ConfigError(
            f"the output {out} is not reachable from {len(blind)} of {len(seen)} Dask worker(s) "
            f"(e.g. {blind[0]}): a memory:// URL exists only in one process and a local path only on "
            "one machine; give OUT on storage every worker shares (a shared filesystem, s3://, gs://, "
            "...), or run the workers as threads of this process (processes=False) for memory://")

"""dask-enrich's section of the Dask configuration: ``enrich.*``.

The defaults ship as ``dask_enrich/enrich.yaml`` and are merged with
``dask.config.update_defaults`` when the package is imported (as dask-jobqueue does for its
``jobqueue`` section), so a user's YAML (``enrich:`` in a file under Dask's config directories)
and environment variables (``DASK_ENRICH__PARTITION_ROWS``) override them; explicit arguments and
command-line options override both. :func:`get` reads one key, checked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import yaml

from . import options
from .errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("enrich.yaml")


def load_defaults() -> dict[str, Any]:
    """Merge the shipped ``enrich`` defaults into Dask's configuration; returns them."""
    with open(DEFAULTS_FILE) as handle:
        defaults = yaml.safe_load(handle)
    dask.config.update_defaults(defaults)
    return defaults


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        value = value.replace("_", "")
    number = int(value)
    if number != float(value) or number < 1:
        raise ValueError(value)
    return number


def _one_of(*allowed: Any):
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(value)
        return value
    return check


def _size(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(value)
    if isinstance(value, str) and value != "auto":
        from dask.utils import parse_bytes

        parse_bytes(value)  # raises ValueError on a bad size
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(value)
    return value


#: key -> (check returning the value, what it must be)
_CHECKS = {
    "partition-rows": (_whole, "a whole number >= 1"),
    "workers": (lambda v: None if v is None else _whole(v), "a whole number >= 1, or null"),
    "threads-per-worker": (_whole, "a whole number >= 1"),
    "memory-limit": (_size, "a size such as 4GiB, 'auto', or 0 (none)"),
    "missing": (_one_of(*options.MISSING), " or ".join(options.MISSING)),
    "cache-dir": (lambda v: None if v in (None, "") else _text(v), "a directory, or null"),
    "host": (_text, "an interface address such as 127.0.0.1"),
    "worker-start": (_one_of(*options.WORKER_STARTS), " or ".join(options.WORKER_STARTS)),
}


def get(key: str, given: Any = None) -> Any:
    """``given`` when it is not None (an explicit argument or option), else ``enrich.<key>`` of
    Dask's configuration, checked (:class:`ConfigError` naming the key and where to set it)."""
    if given is not None:
        return given
    value = dask.config.get(f"enrich.{key}")
    check, expected = _CHECKS[key]
    try:
        return check(value)
    except (TypeError, ValueError):
        env = "DASK_ENRICH__" + key.upper().replace("-", "_")
        raise ConfigError(f"enrich.{key} in Dask's configuration (a YAML file under "
                          f"{', '.join(map(str, dask.config.paths[-2:]))} or ${env}): expected "
                          f"{expected}, not {value!r}") from None


load_defaults()

"""Imports kept cheap: public names of a package imported on first use (PEP 562), so that
``import dask_enrich`` (as the command line does before it knows its command) imports no pandas,
distributed or engine; and the cyclic garbage collector paused while a process imports them."""
from __future__ import annotations

import contextlib
import gc
import importlib
from typing import Any, Callable, Iterator


def lazy_names(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` map to the submodule
    (relative, e.g. ``"engine.lazy"``) defining each; a name is imported once, then cached."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the block imports modules, then ``gc.freeze()``.

    Imports make almost no garbage, but they allocate enough objects to start the collector's
    passes over a growing heap (about 3% of the instructions of importing the engine, more of its
    time). Frozen, the imported modules' objects stay out of the later collections' reach (and a
    forked process's full collections leave their memory pages shared). The collector is on again
    afterwards if it was before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()

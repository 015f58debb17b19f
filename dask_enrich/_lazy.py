"""Imports kept cheap: public names of a package imported on first use (PEP 562), so that
``import dask_enrich`` (as the command line does before it knows its command) imports no pandas,
distributed or engine; the cyclic garbage collector paused while a process imports them; and
dask's collections imported lean in the command line's own processes: without scipy, which they
load only for integrations the engine never uses, and without the docstrings they derive from
pandas' and numpy's at import."""
from __future__ import annotations

import contextlib
import gc
import importlib
import sys
from typing import Any, Callable, Iterator

#: Imported by ``dask.array`` and ``dask.dataframe`` at their own import when installed, only to
#: register scipy's sparse matrices as containers (array chunks, frame metas) and to wrap
#: ``scipy.fftpack``: about 0.17 s of each process's start (client, forkserver) where scipy is
#: there, as it is with the ``models`` extra (scikit-learn, xgboost). Their other scipy
#: integrations register lazily, on the first sparse matrix they see.
UNUSED_AT_DASK_IMPORT = ("scipy",)


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


@contextlib.contextmanager
def dask_imported_without_scipy() -> Iterator[None]:
    """The block's imports see :data:`UNUSED_AT_DASK_IMPORT` as not installed (``None`` in
    ``sys.modules``) unless it is imported already; afterwards it imports as usual (a model's
    scikit-learn loads scipy in full). For the processes the command line owns (its own and the
    forkserver's), never at the import of the library: there dask's collections keep their sparse
    chunk types. The block must not import anything that needs scipy."""
    skipped = [name for name in UNUSED_AT_DASK_IMPORT if name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in skipped:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextlib.contextmanager
def dask_docstrings_not_derived() -> Iterator[None]:
    """The block's imports of dask's collections keep their methods' own docstrings instead of
    deriving them from pandas' and numpy's (``dask.utils.derived_from``): at ``dask.dataframe``'s
    import (with ``dask.array``) that derivation parses hundreds of docstrings and signatures,
    about 60% of its import time (0.40-0.61 -> 0.15-0.21 s here). What the decorator does besides
    is kept: a method the original class lacks still becomes dask's ``NotImplementedError`` stub.
    Afterwards ``derived_from`` is dask's own again; modules imported before are untouched."""
    import dask.utils

    derived_from = dask.utils.derived_from

    def own_docstring(original_klass: Any, version: Any = None, ua_args: Any = None,
                      skipblocks: int = 0, inconsistencies: Any = None) -> Callable[[Any], Any]:
        def wrapper(method: Any) -> Any:
            if hasattr(original_klass, method.__name__):
                return method
            return derived_from(original_klass, version, ua_args, skipblocks, inconsistencies)(method)
        return wrapper

    dask.utils.derived_from = own_docstring
    try:
        yield
    finally:
        if dask.utils.derived_from is own_docstring:
            dask.utils.derived_from = derived_from


@contextlib.contextmanager
def dask_imported_lean() -> Iterator[None]:
    """The imports of the processes the command line owns (its own and the forkserver's): dask's
    collections without scipy (:func:`dask_imported_without_scipy`) and without derived
    docstrings (:func:`dask_docstrings_not_derived`); never at the import of the library."""
    with dask_imported_without_scipy(), dask_docstrings_not_derived():
        yield

"""dask_enrich/engine/worker_preload.py: what the forkserver imports before it forks a worker."""
from __future__ import annotations

from ..test_lazy import _fresh_python, needs_scipy


@needs_scipy
def test_the_preload_imports_what_a_worker_needs_and_not_scipy():
    # in a fresh interpreter: importing the preload here would import dask without scipy's types
    printed = _fresh_python("""
        import sys, dask_enrich.engine.worker_preload as preload
        print(all(m in sys.modules for m in preload.MODULES), 'scipy' in sys.modules)
        import scipy.sparse
        print(scipy.sparse.eye(2).nnz)
    """)
    assert printed.split() == ["True", "False", "2"]

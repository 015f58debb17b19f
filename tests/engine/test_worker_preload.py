"""dask_enrich/engine/worker_preload.py: what the forkserver imports before it forks a worker."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy is not installed")
def test_the_preload_imports_what_a_worker_needs_and_not_scipy():
    # in a fresh interpreter: importing the preload here would import dask without scipy's types
    code = ("import sys, dask_enrich.engine.worker_preload as preload\n"
            "print(all(m in sys.modules for m in preload.MODULES), 'scipy' in sys.modules)\n"
            "import scipy.sparse\nprint(scipy.sparse.eye(2).nnz)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "2"]

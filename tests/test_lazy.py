"""dask_enrich/_lazy.py: the collector paused while a process imports; scipy left out of dask's
imports; dask's docstrings not derived."""
from __future__ import annotations

import gc
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from dask_enrich._lazy import collector_paused

needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None,
                                 reason="scipy is not installed (the models extra)")


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after(collector_on):
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_what_the_block_made_is_frozen_and_an_error_still_restores_the_collector(collector_on):
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError), collector_paused():
        made = [[] for _ in range(1000)]  # tracked containers, as a module's objects
        raise RuntimeError("import failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)


def test_a_collector_that_was_off_stays_off(collector_on):
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def _fresh_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (scipy not yet imported by anything)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_scipy
def test_dask_collections_import_without_scipy_and_scipy_imports_in_full_afterwards():
    printed = _fresh_python("""
        import sys
        from dask_enrich._lazy import dask_imported_without_scipy
        with dask_imported_without_scipy():
            import dask.dataframe, distributed
            try:
                import scipy.sparse
            except ImportError:
                print("refused inside")
        print("scipy" in sys.modules)
        import scipy.sparse
        print(scipy.sparse.csr_matrix([[1, 0]]).nnz)
    """)
    assert printed.splitlines() == ["refused inside", "False", "1"]


@needs_scipy
def test_scipy_imported_before_the_block_is_left_alone():
    printed = _fresh_python("""
        import scipy.sparse, sys
        from dask_enrich._lazy import dask_imported_without_scipy
        with dask_imported_without_scipy():
            import dask.array.chunk_types as chunk_types
        print(chunk_types.is_valid_chunk_type(scipy.sparse.csr_matrix), sys.modules["scipy"] is not None)
    """)
    assert printed == "True True"


def test_dask_collections_keep_their_own_docstrings_inside_and_derive_them_again_afterwards():
    printed = _fresh_python("""
        import dask.utils
        from dask_enrich._lazy import dask_imported_lean
        own = dask.utils.derived_from
        with dask_imported_lean():
            import dask.dataframe as dd
        print("copied from" in (dd.DataFrame.dropna.__doc__ or ""), dask.utils.derived_from is own)

        class Original:
            def method(self):
                "Original's docstring."

        @dask.utils.derived_from(Original)
        def method(self):
            "Dask's own."
        print("Original's docstring." in method.__doc__)
    """)
    assert printed.splitlines() == ["False True", "True"]


def test_without_derived_docstrings_a_method_the_original_lacks_is_still_refused():
    import dask.utils

    from dask_enrich._lazy import dask_docstrings_not_derived

    class Original:
        def present(self):
            "Original's docstring."

    with dask_docstrings_not_derived():
        derive = dask.utils.derived_from(Original)

        def present(self):
            return "dask's"

        def absent(self):
            return "dask's"

        kept, refused = derive(present), derive(absent)
    assert kept is present and kept.__doc__ is None
    with pytest.raises(NotImplementedError, match="doesn't support 'absent'"):
        refused(None)

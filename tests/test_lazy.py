"""dask_enrich/_lazy.py: the collector paused while a process imports."""
from __future__ import annotations

import gc

import pytest

from dask_enrich._lazy import collector_paused


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

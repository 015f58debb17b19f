"""Values parked on a worker's disk (engine/parked.py): read back equal, moved between processes
with their bytes, deleted when released, a write failure named."""
from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from dask_enrich.engine import parked as parked_mod
from dask_enrich.engine.parked import Parked
from dask_enrich.errors import RunFailure


@pytest.fixture
def parking(tmp_path, monkeypatch):
    """Parked files under tmp_path (a stand-in for the worker's local directory)."""
    monkeypatch.setattr(parked_mod, "parking_directory", lambda: str(tmp_path / "parked"))
    return tmp_path / "parked"


def _frame(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"gene_id": pd.Series([f"g{i % 7}" for i in range(n)], dtype="str"),
                         "position": np.arange(n, dtype=np.int64), "score": rng.random(n)})


def test_a_parked_frame_is_on_disk_and_reads_back_equal(parking):
    frame = _frame()
    kept = Parked(frame)
    assert os.path.dirname(kept.path) == str(parking) and os.path.getsize(kept.path) == kept.nbytes
    assert kept.nbytes > frame["position"].nbytes  # the rows are in the file
    pd.testing.assert_frame_equal(kept.get(), frame)
    pd.testing.assert_frame_equal(kept.get(), frame)  # read again: the file stays until released


def test_a_parked_value_moved_carries_its_bytes_and_its_file_goes_when_released(parking):
    frame = _frame()
    kept = Parked(frame)
    first = kept.path
    moved = pickle.loads(pickle.dumps(kept))  # as Dask moves it to another worker
    assert moved.path != first
    del kept
    gc.collect()
    assert not os.path.exists(first)  # released: its file deleted
    pd.testing.assert_frame_equal(moved.get(), frame)  # the moved copy has its own file
    second = moved.path
    del moved
    gc.collect()
    assert os.listdir(parking) == [] and not os.path.exists(second)


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setattr(parked_mod, "parking_directory", lambda: str(blocker / "parked"))
    with pytest.raises(RunFailure, match="cannot keep the scanned rows .*not-a-directory/parked/"):
        Parked(_frame())


def test_dask_counts_what_is_in_memory_not_the_file(parking):
    from dask.sizeof import sizeof

    frame = _frame(100_000)
    kept = Parked(frame)
    assert sizeof(kept) < 1000 < kept.nbytes


def test_outside_a_worker_the_system_temporary_directory_is_used():
    import tempfile

    assert parked_mod.parking_directory() == os.path.join(tempfile.gettempdir(),
                                                          parked_mod.PARKED_DIR)

"""Reading positions/tracks: formats, locations, dtypes, and the messages for missing columns."""
from __future__ import annotations

import gzip

import fsspec
import numpy as np
import pandas as pd
import pytest

from dask_enrich.errors import InputError
from dask_enrich.io import (POSITION_COLUMNS, check_columns, fingerprint, inspect_input,
                            normalise_frame, read_dask, read_pandas, wanted_columns)


def _frame(n: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "gene_id": [f"AT1G0{i % 3}" for i in range(n)],
        "position": np.arange(100, 100 + n, dtype=np.int64),
        "donor_score": rng.random(n), "acceptor_score": rng.random(n), "neither_score": rng.random(n),
        "strand": ["+"] * n, "sample": [f"s{i}" for i in range(n)],
    })


def _by_hand_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Every value equal, cell by cell, with canonical dtypes."""
    assert list(got.columns) == list(want.columns)
    assert str(got["gene_id"].dtype) == "str" and got["position"].dtype == np.int64
    assert got["donor_score"].dtype == np.float64
    for column in want.columns:
        for a, b in zip(got[column].tolist(), want[column].tolist()):
            assert a == b or (isinstance(a, float) and abs(a - b) < 1e-12), (column, a, b)


@pytest.mark.parametrize("layout", ["file", "dir", "glob", "csv", "tsv.gz", "csv.gz", "url"])
def test_formats_and_locations_read_the_same_rows(tmp_path, layout):
    frame = _frame()
    if layout == "file":
        frame.to_parquet(tmp_path / "p.parquet")
        path = str(tmp_path / "p.parquet")
    elif layout in ("dir", "glob"):
        (tmp_path / "d").mkdir()
        frame.iloc[:3].to_parquet(tmp_path / "d" / "a.parquet")
        frame.iloc[3:].to_parquet(tmp_path / "d" / "b.parquet")
        (tmp_path / "d" / "_SUCCESS").write_text("")  # ignored, like Spark/Dask markers
        path = str(tmp_path / "d") if layout == "dir" else str(tmp_path / "d" / "*.parquet")
    elif layout == "csv":
        frame.to_csv(tmp_path / "p.csv", index=False)
        path = str(tmp_path / "p.csv")
    elif layout == "tsv.gz":
        with gzip.open(tmp_path / "p.tsv.gz", "wt") as handle:
            frame.to_csv(handle, sep="\t", index=False)
        path = str(tmp_path / "p.tsv.gz")
    elif layout == "csv.gz":
        with gzip.open(tmp_path / "p.csv.gz", "wt") as handle:
            frame.to_csv(handle, index=False)
        path = str(tmp_path / "p.csv.gz")
    else:
        frame.to_parquet(tmp_path / "p.parquet")
        path = "file://" + str(tmp_path / "p.parquet")
    source = inspect_input(path)
    assert set(POSITION_COLUMNS) <= set(source.columns)
    columns = wanted_columns(source, POSITION_COLUMNS, ("sample",))
    assert columns == [*POSITION_COLUMNS, "strand", "sample"]
    _by_hand_equal(read_pandas(source, columns), frame[columns])
    got = read_dask(source, columns).compute(scheduler="sync").reset_index(drop=True)
    _by_hand_equal(got, frame[columns])


def test_memory_filesystem_url():
    fs = fsspec.filesystem("memory")
    with fs.open("/dask-enrich-test/p.csv", "w") as handle:
        _frame().to_csv(handle, index=False)
    source = inspect_input("memory://dask-enrich-test/p.csv")
    _by_hand_equal(read_pandas(source, list(POSITION_COLUMNS)), _frame()[list(POSITION_COLUMNS)])
    fs.rm("/dask-enrich-test", recursive=True)


def test_missing_column_names_file_column_and_close_name(tmp_path):
    frame = _frame().rename(columns={"donor_score": "donor_prob"})
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(InputError) as caught:
        check_columns(inspect_input(str(tmp_path / "p.parquet")), POSITION_COLUMNS)
    message = str(caught.value)
    assert str(tmp_path / "p.parquet") in message
    assert "'donor_score'" in message and "did you mean 'donor_prob'" in message


def test_missing_keep_column_is_named(tmp_path):
    _frame().to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(InputError, match="samples.*did you mean 'sample'"):
        wanted_columns(inspect_input(str(tmp_path / "p.csv")), POSITION_COLUMNS, ("samples",))


def test_absent_path_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        inspect_input(str(tmp_path / "nope.parquet"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.md").write_text("x")
    (tmp_path / "d" / "other.md").write_text("x")
    with pytest.raises(InputError, match="no Parquet/CSV/TSV"):
        inspect_input(str(tmp_path / "d"))


def test_normalise_positions():
    frame = pd.DataFrame({"gene_id": pd.Series(["g"] * 2, dtype=object), "position": [5.0, 7.0],
                          "donor_score": ["0.5", "0.25"]})
    out = normalise_frame(frame)
    assert out["position"].tolist() == [5, 7] and out["position"].dtype == np.int64
    assert out["donor_score"].tolist() == [0.5, 0.25] and str(out["gene_id"].dtype) == "str"
    with pytest.raises(InputError, match="position.*non-integer"):
        normalise_frame(pd.DataFrame({"position": [1.0, np.nan]}))
    with pytest.raises(InputError, match="position.*non-integer"):
        normalise_frame(pd.DataFrame({"position": [1.5]}))
    with pytest.raises(InputError, match="acceptor_score.*non-numeric"):
        normalise_frame(pd.DataFrame({"acceptor_score": ["x"]}))


def test_fingerprint_follows_the_file(tmp_path):
    path = tmp_path / "p.csv"
    _frame().to_csv(path, index=False)
    first = fingerprint(inspect_input(str(path)))
    assert fingerprint(inspect_input(str(path))) == first
    _frame(8).to_csv(path, index=False)
    assert fingerprint(inspect_input(str(path)))["sha256"] != first["sha256"]


@pytest.mark.parametrize("layout", ["parquet", "csv.gz", "tsv"])
def test_the_one_header_reader(tmp_path, layout):
    """file_columns and read_head: the header of any file of an input, and its first rows typed
    (canonical dtypes) or as pandas infers them."""
    from dask_enrich.io import file_columns, read_head

    frame = _frame()
    (tmp_path / "d").mkdir()
    if layout == "parquet":
        frame.to_parquet(tmp_path / "d" / "a.parquet")
        frame.drop(columns=["sample"]).to_parquet(tmp_path / "d" / "b.parquet")
    else:
        sep, suffix = ("\t", "tsv") if layout == "tsv" else (",", "csv.gz")
        frame.to_csv(tmp_path / "d" / f"a.{suffix}", sep=sep, index=False)
        frame.drop(columns=["sample"]).to_csv(tmp_path / "d" / f"b.{suffix}", sep=sep, index=False)
    source = inspect_input(str(tmp_path / "d"))
    names = ["gene_id", "position", "donor_score", "acceptor_score", "neither_score", "strand"]
    assert file_columns(source, source.files[0]) == (*names, "sample")
    assert file_columns(source, source.files[1]) == tuple(names)
    head = read_head(source, ["gene_id", "position", "donor_score"])
    assert list(head.columns) == ["gene_id", "position", "donor_score"]
    assert len(head) == (0 if layout == "parquet" else 7)
    assert head["donor_score"].dtype == np.float64 and head["position"].dtype == np.int64
    raw = read_head(source, typed=False)
    assert list(raw.columns) == [*names, "sample"]
    assert raw["position"].dtype == np.int64 and raw["donor_score"].dtype == np.float64


def test_read_head_names_an_unreadable_file(tmp_path):
    from dask_enrich.io import read_head

    (tmp_path / "p.csv").write_text("gene_id,position\n")
    source = inspect_input(str(tmp_path / "p.csv"))
    (tmp_path / "p.csv").write_bytes(b"\x00\x01\xff\xfe")  # replaced after inspection
    with pytest.raises(InputError, match=r"p\.csv: cannot be read"):
        read_head(source, ["gene_id", "position"])


def test_categorical_text_columns_read_as_str(tmp_path):
    """A Parquet file written from pandas categoricals (dictionary-typed text columns) reads as
    ``str`` with the same values, decoded by Arrow."""
    frame = _frame(50)
    categorical = frame.astype({"gene_id": "category", "strand": "category"})
    categorical.to_parquet(tmp_path / "p.parquet")
    source = inspect_input(str(tmp_path / "p.parquet"))
    columns = wanted_columns(source, POSITION_COLUMNS)
    got = read_dask(source, columns).compute(scheduler="sync").reset_index(drop=True)
    assert got["gene_id"].dtype == "str" and got["strand"].dtype == "str"
    _by_hand_equal(got, frame[columns])

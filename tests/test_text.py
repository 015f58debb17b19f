"""dask_enrich/text.py: membership of text values, as a plain Python test of each value says."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from dask_enrich.text import is_in

#: gene-id-like text, missing values (None, NaN) among them
texts = st.one_of(st.sampled_from(["G1", "G2", "g1", "G1.1", "", " ", "é", "G10"]), st.text(max_size=4),
                  st.none(), st.just(float("nan")))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _expected(values: list, allowed: list) -> list[bool]:
    present = {v for v in allowed if not _missing(v)}
    any_missing = any(_missing(v) for v in allowed)
    return [any_missing if _missing(v) else v in present for v in values]


@given(st.lists(texts, max_size=30), st.lists(texts, max_size=30),
       st.sampled_from(["list", "str", "object", "index", "category"]), st.sampled_from(["list", "set", "series"]))
def test_is_in_says_what_a_test_of_each_value_says(values, allowed, kind, allowed_kind):
    given_values = {"list": values, "str": pd.Series(values, dtype="str"),
                    "object": pd.Series(values, dtype=object), "index": pd.Index(values, dtype=object),
                    "category": pd.Series(values, dtype="category")}[kind]
    given_allowed = {"list": allowed, "set": {v for v in allowed if not _missing(v)} | (
        {None} if any(_missing(v) for v in allowed) else set()),
        "series": pd.Series(allowed, dtype=object)}[allowed_kind]
    got = is_in(given_values, given_allowed)
    assert isinstance(got, np.ndarray) and got.dtype == bool
    assert got.tolist() == _expected(values, allowed)


def test_values_that_are_not_text_are_tested_as_objects():
    assert is_in([1, 2, 3], {2, 3}).tolist() == [False, True, True]
    assert is_in(["1", "2"], [1, 2]).tolist() == [False, False]  # a number is not its text


def test_many_allowed_gene_ids_agree_with_pandas():
    ids = pd.Series([f"G{i}" for i in range(20_000)], dtype="str")
    wanted = ids[::3]
    assert (is_in(ids, wanted) == ids.isin(wanted).to_numpy()).all()

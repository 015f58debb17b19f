"""A bin's ``gene_id`` column factorised once, passed as a value to every step that needs it.

One bin's rows go through the plan's row check, the row checks, the core (gene-table lookup,
context) and the writer's per-gene digest; each used to hash every row's gene id again. The
engine factorises the column once (:meth:`GeneCodes.of`) and hands the result down; a step given
none factorises itself, as before. The codes hold only while the rows do: a step that drops or
reorders rows must not pass them on (:meth:`GeneCodes.checked` is the cheap guard).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class GeneCodes:
    """``codes``: int64 per row, the index of its gene id in ``uniques`` (-1: missing id);
    ``uniques``: the distinct gene ids as text (``str`` dtype), in order of first appearance."""

    codes: np.ndarray
    uniques: pd.Index

    @classmethod
    def of(cls, gene_ids: Any) -> "GeneCodes":
        """The gene ids of a bin's rows factorised (one hash pass; ids compared as text)."""
        ids = gene_ids if isinstance(gene_ids, (pd.Series, pd.Index)) else pd.Series(gene_ids)
        if not (pd.api.types.is_string_dtype(ids.dtype) and ids.dtype != object):
            ids = ids.astype("str")
        codes, uniques = pd.factorize(ids)
        return cls(np.asarray(codes, dtype=np.int64), pd.Index(uniques, dtype="str"))

    def __len__(self) -> int:
        return len(self.codes)

    def checked(self, rows: int) -> "GeneCodes":
        """These codes, given for a frame of ``rows`` rows: ValueError unless they have as many
        (codes of other rows passed by mistake)."""
        if len(self.codes) != rows:
            raise ValueError(f"gene codes of {len(self.codes)} rows given for {rows} rows")
        return self

    def counts(self) -> np.ndarray:
        """Rows of each gene of :attr:`uniques` (missing ids not counted)."""
        return np.bincount(self.codes[self.codes >= 0], minlength=len(self.uniques))

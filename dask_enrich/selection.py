"""Selecting the "uncertain" positions of a full base-prediction track (pure numpy/pandas, no Dask).

When the user gives only a full per-nucleotide track, the positions to enrich are the rows where
the base model is unsure. Two documented rules:

``band`` (the default)
    ``low <= max(donor_score, acceptor_score) < high``, with low = 0.02 and high = 0.80: the
    position looks somewhat like a splice site, but not confidently.
``entropy``
    Any of: the largest of the three scores (donor, acceptor, neither) is below ``max_below``
    (default 0.80); the normalised entropy of the three scores is above ``entropy_above`` (default
    0.9); the spread between the largest and the second-largest score is below ``spread_below``
    (default 0.1). The normalised entropy is ``-sum(p ln p) / ln 3`` with p the three scores divided
    by their sum (terms with p = 0 count 0); it is 1 when the three are equal. A row whose three
    scores sum to 0 counts as uncertain (nothing is known about it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import BASE_SCORES
from .errors import InputError
from .options import SELECTION, SelectRule, Selection  # noqa: F401 (declared there, kept importable)


def band_mask(donor: np.ndarray, acceptor: np.ndarray, low: float = SELECTION.low,
              high: float = SELECTION.high) -> np.ndarray:
    """``low <= max(donor, acceptor) < high`` for each row (NaN scores are never selected)."""
    top = np.maximum(np.asarray(donor, dtype=np.float64), np.asarray(acceptor, dtype=np.float64))
    return (top >= low) & (top < high)


def normalised_entropy(donor: np.ndarray, acceptor: np.ndarray, neither: np.ndarray) -> np.ndarray:
    """Entropy of the three scores renormalised to sum 1, divided by ln 3 (0..1; 1 for rows whose
    scores sum to 0)."""
    scores = np.column_stack([donor, acceptor, neither]).astype(np.float64)
    total = scores.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, scores / total, 1.0 / 3.0)
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1) / np.log(3.0)


def entropy_mask(donor: np.ndarray, acceptor: np.ndarray, neither: np.ndarray,
                 max_below: float = SELECTION.max_below, entropy_above: float = SELECTION.entropy_above,
                 spread_below: float = SELECTION.spread_below
                 ) -> np.ndarray:
    """Rows where the top score < ``max_below``, or the normalised entropy > ``entropy_above``, or
    the top-two spread < ``spread_below``."""
    scores = np.sort(np.column_stack([donor, acceptor, neither]).astype(np.float64), axis=1)
    top, second = scores[:, 2], scores[:, 1]
    valid = ~np.isnan(scores).any(axis=1)
    uncertain = ((top < max_below) | (normalised_entropy(donor, acceptor, neither) > entropy_above)
                 | ((top - second) < spread_below))
    return uncertain & valid


def select_mask(frame: pd.DataFrame, selection: Selection = Selection()) -> np.ndarray:
    """Boolean mask of the uncertain rows of a track frame under ``selection``."""
    def column(name: str) -> np.ndarray:
        if name not in frame.columns:
            raise InputError(f"track lacks column {name!r}, needed by the {selection.rule} selection rule")
        return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)

    donor, acceptor, neither = BASE_SCORES
    if selection.rule == "band":
        return band_mask(column(donor), column(acceptor), selection.low, selection.high)
    return entropy_mask(column(donor), column(acceptor), column(neither),
                        selection.max_below, selection.entropy_above, selection.spread_below)


def select_uncertain(frame: pd.DataFrame, selection: Selection = Selection()) -> pd.DataFrame:
    """The uncertain rows of ``frame`` (index and order kept)."""
    return frame[select_mask(frame, selection)]

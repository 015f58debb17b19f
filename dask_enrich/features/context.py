"""Context scores from a full per-nucleotide base-prediction track (pure numpy).

The context of a position is the base-model score of the nucleotides at offsets -2, -1, +1, +2 in
transcript orientation (on the minus strand, -1 is the next higher genomic coordinate): neighbouring
NUCLEOTIDES looked up in the track, never neighbouring rows of the input. A neighbour outside the
gene span is 0; one inside the span but absent from the track is missing (NaN, reported).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .registry import CONTEXT_OFFSETS

#: Positions are packed with the gene code into one int64 key: gene_code << POSITION_BITS | position.
POSITION_BITS = 40


def gene_codes_in(gene_ids: Any, genes: pd.Index) -> np.ndarray:
    """The index in ``genes`` of each row's gene id (-1 where absent or missing), each distinct
    id hashed once: ``pd.factorize`` of the rows (pyarrow's dictionary encoding for ``str``
    columns, no per-row Python strings), then one lookup of the distinct ids."""
    codes, uniques = pd.factorize(gene_ids)
    if not len(uniques):
        return np.full(len(codes), -1, dtype=np.int64)
    where = genes.get_indexer(pd.Index(uniques).astype(str))
    return np.where(codes >= 0, where[np.maximum(codes, 0)], -1).astype(np.int64)


def track_keys(gene_codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One sortable int64 key per (gene, position)."""
    return (gene_codes.astype(np.int64) << POSITION_BITS) | positions.astype(np.int64)


def choose_track(donor: np.ndarray, acceptor: np.ndarray, rule: str) -> np.ndarray:
    """True where the row's context comes from the donor track.

    ``larger``: the track of the larger of donor_score and acceptor_score (ties: donor);
    ``donor``/``acceptor``: always that track.
    """
    if rule == "donor":
        return np.ones(len(donor), dtype=bool)
    if rule == "acceptor":
        return np.zeros(len(donor), dtype=bool)
    return donor >= acceptor


def context_from_track(
    gene_codes: np.ndarray,
    positions: np.ndarray,
    minus: np.ndarray,
    use_donor: np.ndarray,
    span_start: np.ndarray,
    span_end: np.ndarray,
    track_gene_codes: np.ndarray,
    track_positions: np.ndarray,
    track_donor: np.ndarray,
    track_acceptor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(m2, m1, p1, p2) for each row, looked up in the track.

    Rows are given by gene code, genomic position, strand (``minus``), which track to use and the
    gene span (1-based inclusive). Track rows by gene code, position and both scores; the track need
    not be sorted. Result: float64 arrays with 0 outside the span and NaN where the track lacks an
    in-span neighbour.
    """
    order = np.argsort(track_keys(track_gene_codes, track_positions), kind="stable")
    sorted_keys = track_keys(track_gene_codes, track_positions)[order]
    donor = np.asarray(track_donor, dtype=np.float64)[order]
    acceptor = np.asarray(track_acceptor, dtype=np.float64)[order]
    direction = np.where(minus, -1, 1).astype(np.int64)
    out = []
    for offset in CONTEXT_OFFSETS.values():
        neighbour = positions + offset * direction
        inside = (neighbour >= span_start) & (neighbour <= span_end)
        keys = track_keys(gene_codes, np.where(inside, neighbour, 0))
        at = np.searchsorted(sorted_keys, keys)
        at_clipped = np.minimum(at, max(len(sorted_keys) - 1, 0))
        found = inside & (at < len(sorted_keys))
        if len(sorted_keys):
            found &= sorted_keys[at_clipped] == keys
        value = np.where(use_donor, donor[at_clipped] if len(donor) else 0.0,
                         acceptor[at_clipped] if len(acceptor) else 0.0)
        out.append(np.where(found, value, np.where(inside, np.nan, 0.0)))
    return out[0], out[1], out[2], out[3]

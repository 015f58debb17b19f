"""Gene -> bin packing: the partition plan of a run (pure numpy/pandas, no Dask).

Every gene goes to exactly one bin, so no gene is ever split across partitions. Genes are taken in
sorted gene-id order (or in the order given) and packed next-fit: a bin takes consecutive genes while their total rows stay
within ``target_rows``; a gene with ``target_rows`` rows or more gets a bin of its own. The packing
loop runs once per bin (a ``searchsorted`` on the cumulative sizes), never once per gene or row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError

#: Default target of rows per partition (positions plus track rows of its genes).
DEFAULT_PARTITION_ROWS = 200_000


def pack_next_fit(sizes: np.ndarray, target: int) -> np.ndarray:
    """Bin id of each item, packing items in order: a bin takes consecutive items while their sum
    stays <= ``target``; an item larger than ``target`` is alone. Bins are numbered 0, 1, ..."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if target < 1:
        raise ConfigError(f"partition rows must be at least 1, not {target}")
    if (sizes < 0).any():
        raise ValueError("sizes must not be negative")
    n = len(sizes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    inclusive = np.cumsum(sizes)
    starts = []
    start = 0
    while start < n:  # one iteration per bin
        starts.append(start)
        before = inclusive[start - 1] if start else 0
        end = int(np.searchsorted(inclusive, before + target, side="right"))
        start = max(end, start + 1)
    starts_arr = np.asarray(starts, dtype=np.int64)
    lengths = np.diff(np.append(starts_arr, n))
    return np.repeat(np.arange(len(starts_arr), dtype=np.int64), lengths)


@dataclass(frozen=True)
class PartitionPlan:
    """Which bin (output partition) each gene goes to."""

    genes: pd.Index  # unique gene ids, in packing order
    sizes: np.ndarray  # rows per gene (int64), the packing weight
    bins: np.ndarray  # bin id per gene (int64), non-decreasing
    target_rows: int

    @property
    def n_bins(self) -> int:
        """Number of bins; at least 1 (an empty input still writes one, empty, file)."""
        return int(self.bins[-1]) + 1 if len(self.bins) else 1

    @property
    def bin_rows(self) -> np.ndarray:
        """Total weight of each bin."""
        return np.bincount(self.bins, weights=self.sizes, minlength=self.n_bins).astype(np.int64)

    def bin_of(self, gene_ids: Any) -> np.ndarray:
        """Bin id for each gene id (-1 for a gene the plan does not know)."""
        codes, uniques = pd.factorize(np.asarray(gene_ids, dtype=object)
                                      if not isinstance(gene_ids, (pd.Series, pd.Index)) else gene_ids)
        index = self.genes.get_indexer(pd.Index(uniques, dtype=self.genes.dtype))
        per_unique = np.append(self.bins, -1)[index]  # index -1 (unknown) -> the appended -1
        return np.append(per_unique, -1)[codes].astype(np.int64)  # code -1 (missing id) -> -1

    @property
    def divisions(self) -> tuple[int, ...]:
        """Dask divisions that make each bin id exactly one partition."""
        return tuple(range(self.n_bins)) + (self.n_bins - 1,)

    def summary(self) -> dict[str, Any]:
        rows = self.bin_rows
        return {"bins": self.n_bins, "genes": len(self.genes), "target_rows": self.target_rows,
                "rows": int(self.sizes.sum()), "max_bin_rows": int(rows.max()) if len(rows) else 0,
                "largest_gene_rows": int(self.sizes.max()) if len(self.sizes) else 0}


def plan_partitions(gene_sizes: pd.Series, target_rows: int = DEFAULT_PARTITION_ROWS, *,
                    keep_order: bool = False) -> PartitionPlan:
    """The plan for genes with these sizes (a Series: gene id -> rows).

    Genes are packed in sorted id order, or, with ``keep_order``, in the order given (the engine
    passes the order of first appearance in the input, so that input already grouped by gene maps
    to bins without reordering rows).
    """
    if target_rows < 1:
        raise ConfigError(f"--partition-rows must be at least 1, not {target_rows}")
    if gene_sizes.index.hasnans:
        raise ValueError("gene ids must not be missing")
    if not gene_sizes.index.is_unique:
        gene_sizes = gene_sizes.groupby(level=0, sort=False).sum()
    ordered = gene_sizes if keep_order else gene_sizes.sort_index()
    sizes = ordered.to_numpy(dtype=np.int64)
    return PartitionPlan(pd.Index(ordered.index.astype("str"), dtype="str"), sizes,
                         pack_next_fit(sizes, target_rows), int(target_rows))

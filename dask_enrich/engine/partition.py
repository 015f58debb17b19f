"""Gene -> bin packing: the partition plan of a run (pure numpy/pandas, no Dask).

Every gene goes to exactly one bin, so no gene is ever split across partitions. Genes are taken in
sorted gene-id order (or in the order given) and packed next-fit: a bin takes consecutive genes while their total rows stay
within ``target_rows``; a gene with ``target_rows`` rows or more gets a bin of its own. The packing
loop runs once per bin (a ``searchsorted`` on the cumulative sizes), never once per gene or row.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import ConfigError, RunFailure
from ..gene_codes import GeneCodes
from ..options import DEFAULT_PARTITION_ROWS  # noqa: F401 (re-exported: the engine default)

#: Input grouped by gene is enriched where it is read when that gives at most this many times the
#: bins of packing genes across the input partitions (else small partitions go through the exchange)
LOCAL_BINS_FACTOR = 1.5
#: ... and when it is in at least this many input partitions (or bins): one partition of many bins
#: goes through the exchange. A constant, not the cluster's thread count: the plan must not change
#: with the cluster (a run resumed on another number of workers keeps its parts).
MIN_WHERE_READ_PARTS = 2


def pack_next_fit(sizes: np.ndarray, target: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Bin id of each item, packing items in order: a bin takes consecutive items while their sum
    stays <= ``target``; an item larger than ``target`` is alone. Bins are numbered 0, 1, ...
    With ``groups`` (a label per item, equal labels consecutive), a bin never spans two groups."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if target < 1:
        raise ConfigError(f"partition rows must be at least 1, not {target}")
    if (sizes < 0).any():
        raise ValueError("sizes must not be negative")
    n = len(sizes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    inclusive = np.cumsum(sizes)
    if groups is None:
        group_ends = np.array([n], dtype=np.int64)
    else:
        groups = np.asarray(groups)
        group_ends = np.append(np.flatnonzero(groups[1:] != groups[:-1]) + 1, n)
    starts = []
    start = 0
    while start < n:  # one iteration per bin
        starts.append(start)
        before = inclusive[start - 1] if start else 0
        end = int(np.searchsorted(inclusive, before + target, side="right"))
        group_end = int(group_ends[np.searchsorted(group_ends, start, side="right")])
        start = min(max(end, start + 1), group_end)
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
    #: input partition holding all rows of each bin, when the input is grouped by gene (each gene's
    #: rows in one input partition); such bins are enriched where they are read, with no exchange
    bin_parts: np.ndarray | None = None
    #: rows of the input each gene must arrive with (positions, or the track's rows when the
    #: positions are selected from it), checked per gene in every bin (:meth:`check_bin_rows`)
    rows: np.ndarray | None = None

    def gene_range(self, bin_id: int) -> tuple[int, int]:
        """The genes of bin ``bin_id``: ``genes[start:end]`` (a bin's genes are consecutive)."""
        start, end = np.searchsorted(self.bins, [bin_id, bin_id + 1])
        return int(start), int(end)

    def bin_digest(self, bin_id: int) -> str:
        """A digest of bin ``bin_id``'s exact gene list (in order) and of each gene's input rows:
        a part file records it, and ``--resume`` keeps a part only when its plan's bin has the
        same digest."""
        start, end = self.gene_range(bin_id)
        digest = hashlib.sha256("\0".join(self.genes[start:end]).encode())
        if self.rows is not None:
            digest.update(np.asarray(self.rows[start:end], dtype="<i8").tobytes())
        return digest.hexdigest()[:32]

    def digest(self) -> str:
        """A digest of the whole plan (genes, bins, rows, target, input partitions)."""
        digest = hashlib.sha256("\0".join(self.genes).encode())
        for array in (self.bins, self.rows, self.bin_parts):
            digest.update(b"|" + (b"-" if array is None else np.asarray(array, "<i8").tobytes()))
        digest.update(str(self.target_rows).encode())
        return digest.hexdigest()[:32]

    def check_bin_rows(self, bin_id: int, gene_ids: Any, genes: GeneCodes | None = None) -> None:
        """RunFailure unless the rows that reached bin ``bin_id`` are exactly its genes' input rows
        (:attr:`rows`), gene by gene: names the first gene with too few, too many or foreign rows.
        ``genes``: ``gene_ids`` already factorised (the bin's :class:`GeneCodes`), else done here."""
        if self.rows is None or bin_id < 0:
            return
        start, end = self.gene_range(bin_id)
        if genes is not None:
            codes, uniques = genes.checked(len(gene_ids)).codes, genes.uniques
        else:
            codes, uniques = pd.factorize(gene_ids)  # one hash pass; the plan lookup per gene only
        index = self.genes.get_indexer(pd.Index(uniques, dtype=self.genes.dtype))
        foreign = (index < start) | (index >= end)
        if foreign.any() or (len(codes) and codes.min() < 0):
            gene = uniques[int(np.flatnonzero(foreign)[0])] if foreign.any() else "(missing id)"
            raise RunFailure(f"partition {bin_id}: rows of gene {gene} reached it, but the plan puts "
                             "that gene in another partition (rows mixed between partitions)")
        got = np.zeros(end - start, dtype=np.int64)
        got[index - start] = np.bincount(codes, minlength=len(uniques))
        want = np.asarray(self.rows[start:end], dtype=np.int64)
        wrong = np.flatnonzero(got != want)
        if len(wrong):
            i = int(wrong[0])
            raise RunFailure(f"partition {bin_id}: gene {self.genes[start + i]}: {int(got[i]):,} row(s) "
                             f"reached it but the input has {int(want[i]):,} (rows lost or duplicated"
                             f"{f'; {len(wrong) - 1} more gene(s)' if len(wrong) > 1 else ''})")

    def with_rows(self, counts: pd.Series) -> "PartitionPlan":
        """This plan with each gene's input rows taken from ``counts`` (gene id -> rows)."""
        rows = counts.reindex(self.genes).fillna(0).to_numpy(dtype=np.int64)
        return PartitionPlan(self.genes, self.sizes, self.bins, self.target_rows, self.bin_parts, rows)

    @property
    def follows_input(self) -> bool:
        """Whether every bin lies within one input partition (see ``bin_parts``)."""
        return self.bin_parts is not None

    def bins_of_part(self, part: int) -> np.ndarray:
        """The bins read from input partition ``part`` (only when :attr:`follows_input`)."""
        if self.bin_parts is None:
            raise ValueError("this plan's bins do not follow the input partitions")
        return np.flatnonzero(self.bin_parts == part)

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
                "largest_gene_rows": int(self.sizes.max()) if len(self.sizes) else 0,
                "follows_input": self.follows_input, "digest": self.digest()}


def plan_partitions(gene_sizes: pd.Series, target_rows: int = DEFAULT_PARTITION_ROWS, *,
                    keep_order: bool = False, gene_parts: pd.Series | None = None) -> PartitionPlan:
    """The plan for genes with these sizes (a Series: gene id -> rows).

    Genes are packed in sorted id order, or, with ``keep_order``, in the order given (the engine
    passes the order of first appearance in the input, so that input already grouped by gene maps
    to bins without reordering rows). ``gene_parts`` (gene id -> the one input partition holding
    all its rows, given in the same order as ``gene_sizes``) keeps each bin within one input
    partition and records it in ``bin_parts``; it implies ``keep_order``.
    """
    if target_rows < 1:
        raise ConfigError(f"--partition-rows must be at least 1, not {target_rows}")
    if gene_sizes.index.hasnans:
        raise ValueError("gene ids must not be missing")
    if not gene_sizes.index.is_unique:
        gene_sizes = gene_sizes.groupby(level=0, sort=False).sum()
    if gene_parts is not None:
        parts = gene_parts.reindex(gene_sizes.index).to_numpy()
        if pd.isna(parts).any() or (len(parts) > 1 and bool((np.diff(parts.astype(np.int64)) < 0).any())):
            raise ValueError("gene_parts must give each gene's input partition, in partition order")
        parts = parts.astype(np.int64)
        sizes = gene_sizes.to_numpy(dtype=np.int64)
        bins = pack_next_fit(sizes, target_rows, groups=parts)
        first = np.flatnonzero(np.diff(bins, prepend=-1)) if len(bins) else np.zeros(0, np.int64)
        return PartitionPlan(pd.Index(gene_sizes.index.astype("str"), dtype="str"), sizes, bins,
                             int(target_rows), bin_parts=parts[first])
    ordered = gene_sizes if keep_order else gene_sizes.sort_index()
    sizes = ordered.to_numpy(dtype=np.int64)
    return PartitionPlan(pd.Index(ordered.index.astype("str"), dtype="str"), sizes,
                         pack_next_fit(sizes, target_rows), int(target_rows))


def choose_plan(weights: pd.Series, partition_rows: int, exchange_method: str,
                gene_parts: pd.Series | None, say: Callable[[str], None]) -> PartitionPlan:
    """The partition plan: a pure function of the rows per gene, ``--partition-rows``, the
    exchange setting and the input's partitioning (never of the live cluster, so that a resumed
    run on another number of workers has the same bins).

    Genes are packed in order of first appearance. With ``auto``, an input grouped by gene (each
    gene's rows in one input partition, as a per-gene or per-chromosome writer leaves them) is
    instead enriched where it is read, bins packed within input partitions, with no exchange at
    all, unless its partitions are so small that small genes would no longer be packed together
    (more than :data:`LOCAL_BINS_FACTOR` times the bins) or it is one partition of several bins
    (one task would do all the work)."""
    plan = plan_partitions(weights, partition_rows, keep_order=True)
    if exchange_method != "auto" or gene_parts is None or not len(weights):
        return plan
    where_read = plan_partitions(weights, partition_rows, gene_parts=gene_parts)
    parts = len(np.unique(where_read.bin_parts))
    if where_read.n_bins > LOCAL_BINS_FACTOR * plan.n_bins + 1:
        say(f"input grouped by gene, but in partitions much smaller than --partition-rows "
            f"({where_read.n_bins:,} bins where read, {plan.n_bins:,} packed): exchanging rows")
        return plan
    if parts < min(MIN_WHERE_READ_PARTS, plan.n_bins):
        say(f"input grouped by gene, but in {parts} partition(s) for {plan.n_bins} bins: exchanging "
            "rows so that the bins are enriched in parallel")
        return plan
    return where_read


def make_plan(inputs: Any, partition_rows: int, exchange_method: str,
              say: Callable[[str], None]) -> PartitionPlan:
    """The plan of a run's inputs (``inputs.RunInputs``): :func:`choose_plan` on the genes' packing
    weights, with the rows each gene must arrive with in its bin (checked gene by gene on the
    workers)."""
    plan = choose_plan(inputs.weights.astype(np.int64), partition_rows, exchange_method,
                       inputs.gene_parts, say)
    return plan.with_rows(inputs.counts)

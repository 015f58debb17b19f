"""``--selective`` on a scanned Parquet track: every track row written (or rejected), the features
and the meta-model computed for the uncertain rows only.

The track is scanned first (``trackscan_stage.scan_track``, as for track-only selection): every
row checked vectorised, the selected rows, their context rows and the bad rows kept on the
workers, one partition per piece, and the rows per gene and piece. The plan is made from every
row of each gene, as a full read makes it (so the bins, and the rows of each part file, are the
same). Then, with no exchange of the rows:

* :func:`split_piece` (a task per piece) reads the piece's rows of the run's track columns with
  pyarrow (text columns as dictionaries), drops the scan's bad rows (by ``_row``) and cuts the
  rest, and the scan's rows of the piece, by bin (on the runs of the gene dictionary's codes
  when each bin is a range of rows, else numpy on a code per row);
* :func:`enrich_scanned` (in a bin's task, :func:`process_scanned_bin`: the steps of
  ``tasks.enrich_bin``, then ``tasks.write_bin``) puts its pieces' parts together
  (:class:`ScannedRows`), checks the rows against the annotation (``validate.annotation_rejects``,
  numpy over the dictionary codes: the checks the scan does not make), enriches the selected rows
  with their context rows only, predicts, and writes every good row: the base scores streamed
  through, the meta scores where uncertain (``scoring.selective_scores``); the bad rows go to
  ``OUT/_rejected/`` as a full read's bin checks write them.

When the plan's bins follow the pieces (every gene in one piece), one task per piece splits it and
processes its bins in turn; otherwise a bin's task takes its part of each piece holding its genes
(one or two for a track in gene runs). A bin with a row the annotation rejects (or a repeated row
whose copy it might reject) is checked and enriched as a full read does it, from the same rows
(:func:`_as_full_read`): exact, at today's cost, for those bins only. A track whose rows are not
in gene runs across its pieces (shuffled across files) is read in full (``inputs.selective_inputs``
returns None): every bin would need a part of every piece.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import validate
from ..core import enrich
from ..io import InputSource, normalise_frame, text_decoded
from ..trackscan import (
    PIECE,
    ROW,
    check_warnings,
    dictionary_codes,
    read_piece_columns,
    score_sum_deviations,
)
from . import models, quarantine
from .exchange import Exchange
from .partition import PartitionPlan
from .tasks import BinResult, EnrichedBin, _drop_bin, enrich_bin, sorted_bin, write_bin

#: The scan's row ids: (piece, row within it).
ROW_IDS = [PIECE, ROW]


@dataclass
class ScannedRows:
    """A bin's rows of a scanned track, from the pieces holding its genes (in piece order).

    ``table``: the good rows (the scan's checks) with the run's track columns (text columns as
    dictionaries), ``_piece`` and ``_row``; ``selected``, ``context``, ``rejected``: the scan's
    selected, context and bad rows of the bin's genes (with ``_piece`` and ``_row``)."""

    table: pa.Table
    selected: pd.DataFrame
    context: pd.DataFrame
    rejected: pd.DataFrame

    def __sizeof__(self) -> int:  # what Dask weighs moving it by
        frames = (self.selected, self.context, self.rejected)
        return int(self.table.nbytes + sum(f.memory_usage(index=False).sum() for f in frames))

    @classmethod
    def concat(cls, parts: Sequence["ScannedRows | None"]) -> "ScannedRows":
        """The parts (of pieces in order) as one."""
        parts = [p for p in parts if p is not None]
        if len(parts) == 1:
            return parts[0]
        return cls(pa.concat_tables([p.table for p in parts]),
                   *(pd.concat([getattr(p, k) for p in parts], ignore_index=True)
                     for k in ("selected", "context", "rejected")))


def _by_bin(frame: pd.DataFrame, plan: PartitionPlan) -> dict[int, pd.DataFrame]:
    """The rows of a (small) frame by bin of their gene."""
    if not len(frame):
        return {}
    bins = plan.bin_of(frame["gene_id"])
    order = np.argsort(bins, kind="stable")
    bins = bins[order]
    starts = np.concatenate([[0], np.flatnonzero(bins[1:] != bins[:-1]) + 1])
    ends = np.append(starts[1:], len(bins))
    return {int(bins[a]): frame.iloc[order[a:b]].reset_index(drop=True)
            for a, b in zip(starts, ends) if bins[a] >= 0}


def _code_runs(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first row of each run of rows with one dictionary code, the run's code (-1: null), the
    values the codes index, as str) of a text column, found chunk by chunk on the dictionary
    indices as stored (no code per row made, no dictionaries unified: the values are the chunks'
    dictionaries one after another, so a value may have several codes; a run may continue in the
    next chunk)."""
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    starts, codes, texts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, object)]
    offset = first = 0
    for chunk in column.chunks:
        if len(chunk):
            indices = chunk.indices.fill_null(-1) if chunk.indices.null_count else chunk.indices
            local = indices.to_numpy(zero_copy_only=False)
            begin = np.concatenate([[0], np.flatnonzero(local[1:] != local[:-1]) + 1])
            local = local[begin].astype(np.int64)
            starts.append(offset + begin)
            codes.append(np.where(local >= 0, local + first, -1))
            texts.append(dictionary_codes(pa.chunked_array([chunk]), with_codes=False)[1])
            first += len(texts[-1])
        offset += len(chunk)
    return np.concatenate(starts), np.concatenate(codes), np.concatenate(texts)


def _with_row_ids(table: pa.Table, index: int, rows: np.ndarray) -> pa.Table:
    """``table`` (rows ``rows`` of piece ``index``) with the scan's row ids ``_piece``, ``_row``."""
    table = table.append_column(PIECE, pa.array(np.full(len(rows), index, dtype=np.int64)))
    return table.append_column(ROW, pa.array(rows))


def _bin_ranges(table: pa.Table, plan: PartitionPlan, done: frozenset[int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """(bins, first row, end row) of each bin's rows of a piece when each bin's kept rows (genes
    of the plan, bins not ``done``) are one range of rows, the bins in order, and whether the
    kept rows are the piece's first rows, in order; None otherwise. Found on the runs of gene
    codes: no work per row."""
    starts, codes, genes = _code_runs(table.column("gene_id"))
    ends = np.append(starts[1:], table.num_rows)
    bins = np.append(plan.bin_of(genes), -1)[codes]  # code -1 (no gene id: refused) -> -1
    kept = bins >= 0
    if done:
        kept &= ~np.isin(bins, np.fromiter(done, dtype=np.int64))
    bins, starts, ends = bins[kept], starts[kept], ends[kept]
    same = bins[1:] == bins[:-1]
    if bool((bins[1:] < bins[:-1]).any()) or bool((ends[:-1][same] != starts[1:][same]).any()):
        return None  # bins out of order, or rows of another bin (or dropped) inside a bin's
    first = np.concatenate([[0], np.flatnonzero(~same) + 1]).astype(np.int64)
    last = np.append(first[1:], len(bins)) - 1
    if not len(bins):
        first = last = np.zeros(0, np.int64)
    starts, ends = starts[first], ends[last]
    prefix = not len(starts) or (starts[0] == 0 and bool((ends[:-1] == starts[1:]).all()))
    return bins[first], starts, ends, bool(prefix)


def split_piece(source: InputSource, piece: tuple, index: int, selected: pd.DataFrame,
                context: pd.DataFrame, rejected: pd.DataFrame, plan: PartitionPlan,
                done: frozenset[int], columns: Sequence[str], compact: bool = True
                ) -> dict[int, ScannedRows]:
    """One piece's rows cut by bin (bins of ``done`` left out): its good rows of ``columns`` read
    with pyarrow (the scan's bad rows, by ``_row``, dropped) and the scan's rows of the piece.
    ``compact``: each bin's table its own copy (a slice would carry the whole piece's buffers
    when it moves to another worker); else slices where the rows are in bin order already.

    A piece without bad rows whose bins are ranges of rows (a track in gene runs) is cut on its
    runs of gene codes (:func:`_bin_ranges`); any other by a bin per row (:func:`_split_rows`)."""
    table = read_piece_columns(source, piece, columns)
    ranges = None if len(rejected) else _bin_ranges(table, plan, done)
    if ranges is None:
        tables = _split_rows(table, index, rejected, plan, done, compact)
        empty = _with_row_ids(table.slice(0, 0), index, np.zeros(0, np.int64))
    else:
        bins, starts, ends, prefix = ranges
        in_place = not compact and prefix  # every row kept, in order: slices of the piece
        tables = {int(b): _with_row_ids(table.slice(int(a), int(e - a)) if in_place else
                                        table.take(pa.array(np.arange(a, e, dtype=np.int64))),
                                        index, np.arange(a, e, dtype=np.int64))
                  for b, a, e in zip(bins, starts, ends)}
        empty = _with_row_ids(table.slice(0, 0), index, np.zeros(0, np.int64))
    frames = [_by_bin(f, plan) for f in (selected, context, rejected)]
    wanted = set(tables).union(*frames) - set(done)
    return {b: ScannedRows(tables.get(b, empty),
                           *(f.get(b, frame.iloc[:0]) for f, frame in
                             zip(frames, (selected, context, rejected))))
            for b in sorted(wanted)}


def _split_rows(table: pa.Table, index: int, rejected: pd.DataFrame, plan: PartitionPlan,
                done: frozenset[int], compact: bool) -> dict[int, pa.Table]:
    """:func:`split_piece`'s tables of each bin found with a bin per row: any piece."""
    n = table.num_rows
    codes, genes = dictionary_codes(table.column("gene_id"))
    bins = np.append(plan.bin_of(genes), -1)[codes]  # code -1 (no gene id: refused) -> -1
    keep = bins >= 0
    keep[rejected[ROW].to_numpy(np.int64)] = False
    if done:
        keep &= ~np.isin(bins, np.fromiter(done, dtype=np.int64))
    table = _with_row_ids(table, index, np.arange(n, dtype=np.int64))
    take = np.flatnonzero(keep)
    bins = bins[take]
    if len(bins) > 1 and bool((bins[1:] < bins[:-1]).any()):  # genes not in bin order
        order = np.argsort(bins, kind="stable")
        take, bins = take[order], bins[order]
    starts = np.concatenate([[0], np.flatnonzero(bins[1:] != bins[:-1]) + 1]) if len(bins) else \
        np.zeros(0, np.int64)
    ends = np.append(starts[1:], len(bins))
    in_place = not compact and bool((take == np.arange(len(take))).all())  # every row, in order
    return {int(bins[a]): (table.slice(int(a), int(b - a)) if in_place
                           else table.take(pa.array(take[a:b]))) for a, b in zip(starts, ends)}


def _to_frame(table: pa.Table, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of ``table`` as pandas with the canonical dtypes of a read (text as ``str``)."""
    return normalise_frame(text_decoded(table.select(list(columns))).to_pandas(), "track")


def _text(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(codes, values) of a text column's dictionary (None: no such column)."""
    return dictionary_codes(table.column(column)) if column in table.column_names else None


def _runs(*codes: np.ndarray | None) -> np.ndarray:
    """The first row of each run of rows with the same codes in every array given."""
    arrays = [c for c in codes if c is not None]
    n = len(arrays[0])
    change = np.zeros(max(n - 1, 0), dtype=bool)
    for c in arrays:
        change |= c[1:] != c[:-1]
    return np.concatenate([[0], np.flatnonzero(change) + 1]) if n else np.zeros(0, np.int64)


def _gene_rows(gene_table: pd.DataFrame, names: pd.Index) -> tuple[pd.DataFrame, np.ndarray]:
    """The annotation's rows of the genes ``names`` (the work of a check then grows with the
    bin's genes, not the annotation's) and each name's row in it (-1: absent)."""
    row = gene_table.index.get_indexer(names)
    used = np.unique(row[row >= 0])
    local = np.full(len(row), -1, dtype=np.int64)
    local[row >= 0] = np.searchsorted(used, row[row >= 0])
    return gene_table.iloc[used], local


def _unplaceable(table: pa.Table, codes: np.ndarray, genes: np.ndarray, position: np.ndarray,
                 repeats: pd.DataFrame, annotation: dict[str, Any], ctx: Any) -> bool:
    """Whether the annotation rejects a good row of the bin, or a row the scan rejected as a
    repeat (its copy's strand or chromosome may differ). A run of rows of one gene, strand and
    chromosome is checked at its lowest and highest position (the rest of the checks are the same
    for each row of a run): a few rows per gene for a track in gene runs."""
    kw = {"coordinates": ctx.config.coordinates, "genome_names": annotation["genome_names"],
          "has_sequence_for": annotation["has_sequence_for"]}
    names = pd.Index(genes, dtype=object)
    if len(repeats):
        repeated = repeats["gene_id"].astype(str).to_numpy(dtype=object)
        repeated_genes = pd.Index(pd.unique(repeated), dtype=object)
        names = names.append(repeated_genes)
    gene_table, row = _gene_rows(annotation["gene_table"], names)  # the bin's genes only
    strand, chrom = _text(table, "strand"), _text(table, "chrom")
    starts = _runs(codes, *(t[0] if t is not None else None for t in (strand, chrom)))
    if len(starts) and 2 * len(starts) < len(codes):
        pick = np.concatenate([starts, starts])
        at = np.concatenate([np.minimum.reduceat(position, starts),
                             np.maximum.reduceat(position, starts)])
    else:
        pick, at = np.arange(len(codes)), position
    minus = (np.append(strand[1].astype(str) == "-", False)[strand[0][pick]]
             if strand is not None else None)
    chroms = (pd.Series(pd.Categorical.from_codes(chrom[0][pick], pd.Index(chrom[1], dtype=object)))
              if chrom is not None else None)
    if validate.annotation_rejects(gene_table, row[codes[pick]], at, chrom=chroms, minus=minus,
                                   **kw).any():
        return True
    if not len(repeats):
        return False
    return bool(validate.annotation_rejects(
        gene_table, row[len(genes):][repeated_genes.get_indexer(repeated)],
        repeats["position"].to_numpy(np.int64),
        chrom=repeats["chrom"] if "chrom" in repeats.columns else None,
        minus=(repeats["strand"] == "-").to_numpy() if "strand" in repeats.columns else None,
        **kw).any())


def _check_rows(plan: PartitionPlan, bin_id: int, codes: np.ndarray, genes: np.ndarray,
                rejected: pd.DataFrame) -> None:
    """``plan.check_bin_rows`` of the good and the bad rows (as categories: no string per row);
    the rows per gene counted on the codes first (:func:`_rows_as_planned`): the check is made
    again, to name the gene, only when they differ from the plan's."""
    if _rows_as_planned(plan, bin_id, codes, genes, rejected):
        return
    names = pd.Index(genes, dtype=object)
    bad = rejected["gene_id"].astype(str).to_numpy(dtype=object)
    names = names.append(pd.Index(pd.unique(bad), dtype=object).difference(names))
    all_codes = np.concatenate([codes, names.get_indexer(bad)]) if len(bad) else codes
    plan.check_bin_rows(bin_id, pd.Categorical.from_codes(all_codes, names))


def _rows_as_planned(plan: PartitionPlan, bin_id: int, codes: np.ndarray, genes: np.ndarray,
                     rejected: pd.DataFrame) -> bool:
    """Whether ``plan.check_bin_rows`` passes the rows (dictionary ``codes`` into ``genes``, and
    the bad rows): every row has a gene id of the bin's, each gene as many rows as the plan has
    (a bincount of the codes and a lookup per dictionary value; False: not shown)."""
    if plan.rows is None or bin_id < 0:
        return True
    names = pd.Index(genes, dtype=plan.genes.dtype)
    if (len(codes) and codes.min() < 0) or not names.is_unique:
        return False
    start, end = plan.gene_range(bin_id)
    index = plan.genes.get_indexer(names)
    counts = np.bincount(codes, minlength=len(genes))
    bad = (plan.genes.get_indexer(pd.Index(rejected["gene_id"].astype(str).to_numpy(dtype=object),
                                           dtype=plan.genes.dtype))
           if len(rejected) else np.zeros(0, np.int64))
    index = np.concatenate([index[counts > 0], bad])
    if bool(((index < start) | (index >= end)).any()):
        return False
    got = np.bincount(index - start, minlength=end - start,
                      weights=np.concatenate([counts[counts > 0], np.ones(len(bad))]))
    return bool((got == np.asarray(plan.rows[start:end], dtype=np.int64)).all())


def _as_full_read(rows: ScannedRows, ctx: Any, bin_id: int, genomic: Any) -> EnrichedBin:
    """The bin as a full read checks and enriches it (``tasks.enrich_bin`` on every row of its
    genes, in input order): for a bin with rows the annotation rejects."""
    columns = list(ctx.position_columns)
    good = _to_frame(rows.table, [*columns, *ROW_IDS])
    inverse = {v: k for k, v in validate.clash_renames(columns).items()}
    bad = rows.rejected.drop(columns=[validate.REASON, validate.SOURCE]).rename(columns=inverse)
    frame = pd.concat([good, bad[[*columns, *ROW_IDS]]], ignore_index=True)
    frame = frame.sort_values(ROW_IDS, kind="stable").drop(columns=ROW_IDS).reset_index(drop=True)
    return enrich_bin(None, frame, replace(ctx, track_scanned=False), bin_id, genomic=genomic)


def _plan_order(plan: PartitionPlan, codes: np.ndarray, genes: np.ndarray,
                position: np.ndarray) -> np.ndarray | None:
    """The order of ``tasks.sorted_bin`` (genes in plan order, then position) of the rows, or None
    when they are in it already (found on the runs of codes: their genes in rising plan order,
    the positions falling only where a run starts)."""
    rank = plan.genes.get_indexer(pd.Index(genes, dtype=plan.genes.dtype))
    if len(codes) < 2:
        return None
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    if bool((np.diff(rank[codes[np.concatenate([[0], change])]]) > 0).all()):
        run_start = np.zeros(len(codes), dtype=bool)
        run_start[change] = True
        if bool(run_start[np.flatnonzero(np.diff(position) < 0) + 1].all()):
            return None
    rank = rank[codes]
    step_rank, step_pos = np.diff(rank), np.diff(position)
    if bool(((step_rank > 0) | ((step_rank == 0) & (step_pos >= 0))).all()):
        return None
    return np.lexsort((position, rank))


def _rejected_rows(rows: ScannedRows, ctx: Any, bin_id: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """The bin's bad rows in input order (written to ``OUT/_rejected/`` as the bin checks of a full
    read write them; ``--on-bad-rows error``: refused) and their counts by reason."""
    rejected = rows.rejected
    if not len(rejected):
        return rejected, {}
    rejected = rejected.sort_values(ROW_IDS, kind="stable").drop(columns=ROW_IDS)
    rejected = rejected.reset_index(drop=True)
    if ctx.checks.on_bad_rows != "quarantine":
        validate.raise_for_bad_rows(rejected, ctx.checks.source)
    quarantine.write_rejected(rejected, ctx.out, bin_id, ctx.fingerprint, ctx.storage_options)
    codes = validate.reason_code(rejected[validate.REASON]).value_counts()
    return rejected, {str(k): int(v) for k, v in codes.items()}


def _score_sum_deviations(table: pa.Table) -> np.ndarray:
    """|donor + acceptor + neither - 1| of the rows further than ``split_bad_rows``' tolerance
    from 1 (``trackscan.score_sum_deviations`` on the scores as read)."""
    if not all(c in table.column_names for c in validate.SCORE_COLUMNS) or not table.num_rows:
        return np.zeros(0)
    scores = (np.asarray(table.column(c).to_numpy()) for c in validate.SCORE_COLUMNS)
    return score_sum_deviations(*scores)[1]


def _streams(table: pa.Table, ctx: Any) -> bool:
    """Whether the bin's rows can go from read to write as Arrow (``scoring.selective_table``):
    no keep-columns, an integer ``position`` and floating-point scores (what a read normalises
    without a check that could fail), else pandas as a full read has them."""
    names = table.column_names
    return (not ctx.config.keep_columns and "position" in names
            and pa.types.is_signed_integer(table.schema.field("position").type)
            and all(pa.types.is_floating(table.schema.field(c).type)
                    for c in validate.SCORE_COLUMNS if c in names))


def enrich_scanned(rows: ScannedRows, ctx: Any, bin_id: int, genomic: Any = None) -> EnrichedBin:
    """One bin of ``--selective`` on a scanned track (see the module docs): the
    ``tasks.EnrichedBin`` a full read of the bin's rows gives (``tasks.enrich_bin``)."""
    genomic = genomic if genomic is not None else ctx.genomic()
    table = rows.table
    codes, genes = dictionary_codes(table.column("gene_id"))
    position = np.asarray(table.column("position").to_numpy(), dtype=np.int64)
    _check_rows(ctx.plan, bin_id, codes, genes, rows.rejected)  # every row of its genes, exactly
    annotation = quarantine.annotation_checks(ctx.checks, ctx.config, genomic)
    if annotation["gene_table"] is not None:
        reasons = validate.reason_code(rows.rejected[validate.REASON]) if len(rows.rejected) \
            else pd.Series([], dtype="str")
        repeats = rows.rejected[(reasons == "duplicate_position").to_numpy()]
        if _unplaceable(table, codes, genes, position, repeats, annotation, ctx):
            return _as_full_read(rows, ctx, bin_id, genomic)
    rejected, counts = _rejected_rows(rows, ctx, bin_id)
    repeated = counts.get("duplicate_position", 0)
    checks = {"warnings": check_warnings(repeated, _score_sum_deviations(table)), "rejected": counts}
    order = _plan_order(ctx.plan, codes, genes, position)
    written = table if order is None else table.take(pa.array(order))
    columns = [c for c in ctx.position_columns if c in table.column_names]
    # every good row, in plan order (as a full read's bin); streamed through as Arrow
    every = written.select(columns) if _streams(written, ctx) else _to_frame(written, columns)
    positions = sorted_bin(_drop_bin(rows.selected), ctx.plan)
    context = sorted_bin(_drop_bin(rows.context), ctx.plan)
    out, report = enrich(positions, ctx.manifest, genomic=genomic, track=context, config=ctx.config)
    frames = models.finish_bin(out, positions, context, ctx, rows=every)
    return EnrichedBin(frames, report, checks, table.num_rows + len(rejected), len(rejected),
                       positions, every)


# --- the graph --------------------------------------------------------------------------------------
def process_scanned_bin(rows: ScannedRows, ctx: Any, bin_id: int) -> BinResult:
    """One bin, start to end (as ``tasks.process_bin``): :func:`enrich_scanned`, then each
    target's part file written."""
    start = time.perf_counter()
    return write_bin(enrich_scanned(rows, ctx, bin_id), ctx, bin_id, start)


def _piece_bins(source: InputSource, piece: tuple, index: int, selected: pd.DataFrame,
                context: pd.DataFrame, rejected: pd.DataFrame, ctx: Any) -> list[BinResult]:
    """A piece split, then each of its bins processed in turn (the plan's bins follow the pieces:
    the piece is in memory only while its own bins are worked on)."""
    parts = split_piece(source, piece, index, selected, context, rejected, ctx.plan, ctx.done,
                        ctx.position_columns, compact=False)
    return [process_scanned_bin(parts[b], ctx, int(b)) for b in ctx.plan.bins_of_part(index)
            if b not in ctx.done]


def _part(parts: dict[int, ScannedRows], bin_id: int) -> ScannedRows | None:
    return parts.get(bin_id)


def _bin(parts: list[ScannedRows | None], ctx: Any, bin_id: int) -> list[BinResult]:
    return [process_scanned_bin(ScannedRows.concat(parts), ctx, bin_id)]


class SelectiveScan(Exchange):
    """The graph of ``--selective`` on a scanned track (see the module docs): a task per piece
    (split, then its bins) when the bins follow the pieces; else a split task per piece and a
    task per bin taking its part of each piece holding its genes. Each bin is processed by
    :func:`process_scanned_bin` (``task``, the engine's ``tasks.process_bin``, is not used: the
    bins receive no frames)."""

    name = "selective-scan"

    def graph(self, inputs: Any, ctx: Any, task: Any) -> list[Any]:
        import dask

        scan, source, plan = inputs.scan, inputs.sources.track, ctx.plan
        frames = [f.to_delayed() for f in (scan.selected, scan.context, scan.rejected)]
        ctx_key = dask.delayed(ctx, pure=True, traverse=False)
        if plan.follows_input:
            run = dask.delayed(_piece_bins, pure=True)
            tasks = []
            for p, piece in enumerate(scan.piece_list):
                bins = plan.bins_of_part(p)
                if set(bins.tolist()) <= ctx.done:
                    continue
                tasks.append(run(source, piece, p, *(f[p] for f in frames), ctx_key,
                                 dask_key_name=self.part_key("track", p, bins)))
            return tasks
        pairs = scan.per_piece[["gene_id", "piece"]].assign(bin=plan.bin_of(scan.per_piece["gene_id"]))
        pairs = pairs[(pairs["bin"] >= 0) & ~pairs["bin"].isin(list(ctx.done))]
        pieces_of = pairs.drop_duplicates(["bin", "piece"]).groupby("bin")["piece"].agg(sorted)
        plan_key = dask.delayed(plan, pure=True, traverse=False)
        split = dask.delayed(split_piece, pure=True)
        splits = {p: split(source, scan.piece_list[p], p, *(f[p] for f in frames), plan_key,
                           ctx.done, tuple(ctx.position_columns),
                           dask_key_name=self.split_key("track", p))
                  for p in sorted(set(pairs["piece"].tolist()))}
        part, run = dask.delayed(_part, pure=True), dask.delayed(_bin, pure=True)
        return [run([part(splits[p], b) for p in pieces_of[b]], ctx_key, b,
                    dask_key_name=self.bin_key(b))
                for b in range(plan.n_bins) if b not in ctx.done]

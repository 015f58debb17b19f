"""One task per bin: :func:`process_bin` does check -> order -> enrich -> each model's finish -> write,
and returns a small typed :class:`BinResult` (the only data that reaches the client).

Every exchange (``exchange.py``: where-read, staged, p2p) maps this one function over the bins
(``--selective`` on a scanned track: ``selective.process_scanned_bin``, the same steps on the rows
each bin reads itself, and :func:`write_bin`);
the lazy API (``lazy.py``) and ``skew``'s local recompute call :func:`enrich_bin` (the same steps
without the write) directly. Nothing rides beside the rows: the report, the row counts and the
check info are fields of the returned records.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..core import EnrichReport, enrich
from ..errors import RunFailure
from ..gene_codes import GeneCodes
from .. import validate
from ..selection import select_mask
from ..trackscan import CONTEXT_ROW_COLUMNS
from . import models, quarantine
from .context import RunContext
from .inputs import SCAN_ROW_IDS
from .partition import PartitionPlan

#: The column of each row's bin id, added by the p2p exchange (dropped before enrichment).
BIN = "_bin"


@dataclass(frozen=True)
class EnrichedBin:
    """One bin enriched: one frame per target (the enriched frame itself when there is none),
    the bin's report and row-check info, its input rows and rejected rows."""

    frames: tuple[pd.DataFrame, ...]
    report: EnrichReport
    checks: Mapping[str, Any]
    rows_in: int
    rows_rejected: int
    positions: pd.DataFrame  # the checked positions, in the order written
    track: pd.DataFrame | None  # the checked track rows, in plan order
    genes: GeneCodes | None = None  # the gene ids of every frame's rows factorised (None: unknown)


@dataclass(frozen=True)
class BinResult:
    """What one bin did: the record each task returns to the client (or, ``resumed``, a kept
    part's record read back from its footer)."""

    bin: int
    rows_in: int
    rows_written: int
    rows_rejected: int
    report: EnrichReport = field(default_factory=EnrichReport)
    checks: Mapping[str, Any] = field(default_factory=dict)  # warnings, rejected counts by reason
    seconds: float = 0.0
    resumed: bool = False

    @classmethod
    def kept(cls, bin_id: int, record: Mapping[str, Any]) -> "BinResult":
        """The result of a bin kept from an earlier run (``--resume``), from its part's record."""
        report = dict(record["report"])
        checks = report.pop(quarantine.CHECKS_KEY, None) or {}
        return cls(int(bin_id), int(record.get("rows_in", record["rows"])), int(record["rows"]),
                   int(record.get("rows_rejected", 0)), EnrichReport(**report), checks, resumed=True)


def check_row_counts(rows_in: int, written: int, rejected: int, where: str = "") -> None:
    """The run's invariant: every row read is written or rejected, exactly once."""
    if rows_in != written + rejected:
        raise RunFailure(f"{where}row count invariant failed: rows in {rows_in} != written {written} "
                         f"+ rejected {rejected}")


def sorted_bin(frame: pd.DataFrame, plan: PartitionPlan) -> pd.DataFrame:
    """The bin's rows in plan order of their genes (the input's first-appearance order), then by
    position (stable), with a fresh RangeIndex: the same deterministic order whatever the exchange
    delivered. Rows already in that order (input grouped by gene, sorted) are not copied."""
    return sorted_bin_with(frame, plan)[0]


def sorted_bin_with(frame: pd.DataFrame, plan: PartitionPlan, genes: GeneCodes | None = None
                    ) -> tuple[pd.DataFrame, GeneCodes | None]:
    """:func:`sorted_bin` of a frame whose gene ids ``genes`` are already factorised (None:
    factorised here if needed), and those codes when no row moved (None when rows moved)."""
    frame = frame.reset_index(drop=True)
    if BIN in frame.columns:
        frame = frame.drop(columns=BIN)
    if genes is not None:
        genes = genes.checked(len(frame))
    if in_plan_order(frame, plan, genes):
        return frame, genes
    codes, uniques = ((genes.codes, genes.uniques) if genes is not None
                      else pd.factorize(frame["gene_id"]))
    rank = plan.genes.get_indexer(pd.Index(uniques, dtype=plan.genes.dtype))
    rank = np.where(rank < 0, len(plan.genes) + np.arange(len(uniques)), rank)  # genes outside
    position = frame["position"].to_numpy(np.int64)
    return frame.take(np.lexsort((position, rank[codes]))).reset_index(drop=True), None


def in_plan_order(frame: pd.DataFrame, plan: PartitionPlan, genes: GeneCodes | None = None) -> bool:
    """Whether the rows are already in :func:`sorted_bin`'s order, found without factorising
    every row: each gene one run of rows, the runs in plan order, positions rising in each run.
    ``genes``: the rows' gene ids factorised (the runs found on the integer codes)."""
    if len(frame) < 2:
        return True
    if genes is not None:
        if genes.codes.min() < 0:  # a missing id
            return False
        change = genes.codes[1:] != genes.codes[:-1]
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        run_genes = genes.uniques[genes.codes[starts]]
    else:
        if frame["gene_id"].hasnans:
            return False
        gene = frame["gene_id"].array
        change = np.asarray(gene[1:] != gene[:-1], dtype=bool)
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        run_genes = gene[starts]
    rank = plan.genes.get_indexer(pd.Index(run_genes, dtype=plan.genes.dtype))
    if (rank < 0).any() or (len(rank) > 1 and bool((rank[1:] <= rank[:-1]).any())):
        return False  # a gene outside the plan, or in several runs, or runs out of plan order
    position = frame["position"].to_numpy(np.int64)
    return bool((change | (position[1:] >= position[:-1])).all())


def _check_rows(rows: pd.DataFrame, ctx: RunContext, bin_id: int, genomic: Any,
                genes: GeneCodes | None = None) -> tuple[pd.DataFrame, int, dict[str, Any]]:
    """The bin's rows checked (bad ones: the run fails, or they go to OUT/_rejected/);
    ``genes``: the rows' gene ids already factorised."""
    return quarantine.check_bin(rows, ctx.checks, bin_id=bin_id, config=ctx.config,
                                genomic=genomic, out=ctx.out, fingerprint=ctx.fingerprint,
                                storage_options=ctx.storage_options, genes=genes)


def _check_track(track: pd.DataFrame, ctx: RunContext, bin_id: int
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A track read for context, checked: bad rows refused or set aside in OUT/_rejected-track/."""
    track, _, info = quarantine.check_bin(
        track, ctx.track_checks, bin_id=bin_id, config=ctx.config, genomic=None, out=ctx.out,
        fingerprint=ctx.fingerprint, storage_options=ctx.storage_options,
        rejected_dir=quarantine.TRACK_REJECTED_DIR)
    return track, info


def _drop_bin(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    ids = [c for c in (BIN, *SCAN_ROW_IDS) if c in frame.columns]
    return frame.drop(columns=ids) if ids else frame


def _scanned_track(track: pd.DataFrame, ctx: RunContext, bin_id: int
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A scanned track's rows in a bin (``inputs.scanned_inputs``): its context rows, checked by
    the scan, and its bad rows (a ``reason`` each), written in input order to
    ``OUT/_rejected-track/`` as a full read's track check writes them."""
    context = [c for c in CONTEXT_ROW_COLUMNS if c in track.columns]
    if validate.REASON not in track.columns:
        return _drop_bin(track)[context], {}
    bad = track[validate.REASON].notna().to_numpy()
    info: dict[str, Any] = {}
    if bad.any():
        rejected = track[bad].sort_values(list(SCAN_ROW_IDS), kind="stable")
        rejected = _drop_bin(rejected)
        quarantine.write_rejected(rejected, ctx.out, bin_id, ctx.fingerprint, ctx.storage_options,
                                  quarantine.TRACK_REJECTED_DIR)
        codes = validate.reason_code(rejected[validate.REASON]).value_counts()
        info["rejected"] = {str(k): int(v) for k, v in codes.items()}
    return _drop_bin(track[~bad])[context], info


def enrich_bin(positions: pd.DataFrame | None, track: pd.DataFrame | None, ctx: RunContext,
               bin_id: int = -1, *, genomic: Any = None) -> EnrichedBin:
    """Check, order and enrich one bin with the pure core, then each model's finish (scoring,
    its columns): ``positions`` None means the positions are the track's uncertain rows.
    ``genomic``: a genomic cache already open in this process (else ``ctx.genomic()``)."""
    genomic = genomic if genomic is not None else ctx.genomic()
    # the positions' gene ids factorised once, for every step below while no row is dropped or moved
    genes = GeneCodes.of(positions["gene_id"]) if positions is not None and not ctx.selective else None
    # exactly the rows of the bin's genes, gene by gene (what the plan counted): nothing lost or mixed
    ctx.plan.check_bin_rows(bin_id, (track if positions is None else positions)["gene_id"], genes)
    track_info: dict[str, Any] = {}
    if track is not None and not ctx.track_scanned:
        track = _drop_bin(track)
    if ctx.selective:  # every track row is written (base or meta scores) or rejected: check them all
        rows_in = len(track)
        track, rejected, checks = _check_rows(track, ctx, bin_id, genomic)
    elif track is not None and ctx.track_scanned:  # context rows checked by the scan
        track, track_info = _scanned_track(track, ctx, bin_id)
    elif track is not None:  # the track's rows give context
        track, track_info = _check_track(track, ctx, bin_id)
    track = sorted_bin(track, ctx.plan) if track is not None else None
    if positions is None:  # track only: the positions are the track's uncertain rows
        positions = track[select_mask(track, ctx.selection)][list(ctx.position_columns)]
    positions = _drop_bin(positions)
    if not ctx.selective:
        rows_in = len(positions)
        positions, rejected, checks = _check_rows(positions, ctx, bin_id, genomic, genes)
    genes = genes if rejected == 0 else None  # rows dropped: the codes are no longer theirs
    positions, genes = sorted_bin_with(positions, ctx.plan, genes)
    if genes is None and not ctx.selective:
        genes = GeneCodes.of(positions["gene_id"])
    out, report = enrich(positions, ctx.manifest, genomic=genomic, track=track, config=ctx.config,
                         genes=genes)
    frames = models.finish_bin(out, positions, track, ctx)  # scoring; one frame per model
    same_rows = all(frame is out for frame in frames)  # else scored or selective frames
    return EnrichedBin(frames, report, quarantine.with_track_info(checks, track_info), rows_in,
                       rejected, positions, track, genes if same_rows else None)


def process_bin(positions: pd.DataFrame | None, track: pd.DataFrame | None, ctx: RunContext,
                bin_id: int) -> BinResult:
    """One bin, start to end: :func:`enrich_bin`, then each target's part file written (its
    rejected rows first, by the checks); returns the bin's :class:`BinResult`."""
    start = time.perf_counter()
    return write_bin(enrich_bin(positions, track, ctx, bin_id), ctx, bin_id, start)


def write_bin(done: EnrichedBin, ctx: RunContext, bin_id: int, start: float) -> BinResult:
    """Each target's part file of an enriched bin written (its rejected rows were written by its
    checks); the bin's :class:`BinResult` (``start``: when its task began)."""
    footer = {**done.report.to_dict(), quarantine.CHECKS_KEY: done.checks}
    written = models.write_part(done.frames, ctx, bin_id, footer, rows_in=done.rows_in,
                                rows_rejected=done.rows_rejected, genes=done.genes)
    check_row_counts(done.rows_in, written, done.rows_rejected, f"bin {bin_id}: ")
    return BinResult(int(bin_id), done.rows_in, written, done.rows_rejected, done.report,
                     done.checks, time.perf_counter() - start)

"""The track read at the floor, on Dask: a scan task per track piece, a targeted second pass.

:func:`scan_track` maps :func:`dask_enrich.trackscan.scan_piece` over the track's pieces (one task
each; its result stays on its worker, its rows parked on the worker's disk by
:mod:`~dask_enrich.engine.parked` until a bin needs them; only a small summary comes back),
combines the rows per gene on the client, and asks only the pieces that can hold a neighbour a
piece could not find itself (a gene split across row groups or files, found from the per-piece
position ranges of the genes) or a gene's end row (its span, when no annotation gives it). The
result, :class:`TrackScanResult`, holds the selected rows, their context rows and the bad rows as
Dask DataFrames of one partition per piece (made from the parked rows when a bin needs them), the
rows per gene and the bad-row counts: the input of the engine's plan and exchange in place of the
whole track.

Unsorted tracks work: a piece whose rows are not in (gene, position) order costs one sort of its
int64 keys; a gene whose rows are spread over many pieces makes the second pass ask each of them
(at most as much reading as the first pass: position, gene_id as dictionary, scores).
Repeats of a (gene_id, position) *across* pieces (the same key in two files) are looked for where
a gene's good position ranges in two pieces overlap (the keys of those genes only, as int64:
nothing for a track sorted within its genes; every key for a track shuffled across files, sorted in
one task): the later copies are rejected (``duplicate_position``) and the first copies join the
context rows, so that the result still equals the full read.

:func:`track_context` is the same for positions given with a track: only the pieces whose row-group
statistics may hold the positions' genes are read, and of them only the floor columns.

How the engine uses it (the seam where the inputs become Dask collections and rows per gene):
track-only selection calls ``scan_track(client, track_source, ScanSpec(tuple(track_columns),
selection, config, lenient=False, source=quarantine.source_name(track_source)))`` and then runs as
for positions given with a track: ``result.selected`` as the positions (plan weights and exact
rows per gene: ``result.genes["selected"]``), ``result.context`` as the track (drop ``_piece`` and
``_row`` after the exchange, once a bin's rows are in (``_piece``, ``_row``) order), the bad track
rows (``result.rejected``, counts in ``result.rejected_counts``, ``result.warnings`` as
``track_*`` warnings) instead of those the bins' track checks would find; ``result.rows`` is the
track's row count. The selected rows still get the full row checks of positions in their bin.
``--selective`` (``inputs.selective_inputs``, ``engine/selective.py``) scans the same way, then
plans from every row of each gene (``genes["rows"]``, ``genes["piece"]``) and has each bin read its
genes' rows from the pieces (``per_piece``, ``piece_list``) that hold them, without the bad rows.
"""
from __future__ import annotations

import contextlib
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .. import validate
from ..errors import InputError
from ..io import InputSource, input_pieces
from ..text import is_in
from ..trackscan import (
    CONTEXT_ROW_COLUMNS,
    PIECE,
    ROW,
    GeneLookup,
    ScanSpec,
    TrackScan,
    check_warnings,
    empty_gene_table,
    find_repeats,
    lookup_and_keys,
    lookup_genes,
    lookup_piece,
    pieces_holding,
    position_keys,
    reason_counts,
    repeat_rows,
    rows_of_piece,
    scan_piece,
    warnings_without,
)
from .parked import Parked


@dataclass
class _Kept:
    """What a scan (or gene lookup) task leaves on its worker for the second pass and the bins:
    the small summary the client asks for in memory; the frames (selected, context and bad rows)
    and the rows whose scores do not sum to 1 (every row, in a track without softmax) parked on
    the worker's disk (:class:`~dask_enrich.engine.parked.Parked`), so that a worker's memory does
    not grow with the pieces it scanned."""

    piece: int
    summary: dict[str, Any]
    repeats: int
    off_sums: Parked
    frames: dict[str, Parked]

    def frame(self, name: str) -> pd.DataFrame:
        """One of the frames (``selected``, ``context``, ``rejected``), read from its file."""
        return self.frames[name].get()

    def warnings_without(self, rows: np.ndarray) -> dict[str, Any]:
        return warnings_without(self.repeats, self.off_sums.get(), rows)


def _kept(found: TrackScan | GeneLookup, piece: int) -> _Kept:
    """``found`` as its worker keeps it (its frames parked)."""
    summary = _summary(found) if isinstance(found, TrackScan) else _lookup_summary(found)
    names = ("context", "rejected") + (("selected",) if isinstance(found, TrackScan) else ())
    return _Kept(piece, summary, found.repeats, Parked(found.off_sums),
                 {n: Parked(getattr(found, n)) for n in names})


@contextlib.contextmanager
def scan_memory_pool() -> Iterator[None]:
    """Arrow's mimalloc pool as the default while a task reads a whole track piece (where pyarrow
    has it), then the worker's own again. A LocalCluster's workers allocate Arrow's buffers from
    the system heap (``cluster.WORKER_MALLOC_ENV``), which suits the positions path; a scan's
    row-group reads and passes over them take about 13% less CPU with mimalloc (10 pieces of 5M
    rows per worker, 2 workers, 3 runs: 1.95-2.50 -> 1.74-1.94 CPU s). Each buffer is freed to
    the pool it came from, so the switch only chooses where new buffers come from."""
    import pyarrow as pa

    try:
        pool = pa.mimalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _scan_kept(source: InputSource, piece: tuple, piece_index: int, spec: ScanSpec) -> _Kept:
    """The scan task: :func:`~dask_enrich.trackscan.scan_piece`, kept."""
    with scan_memory_pool():
        return _kept(scan_piece(source, piece, piece_index, spec), piece_index)


def _lookup_kept(source: InputSource, piece: tuple, piece_index: int, spec: ScanSpec,
                 genes: np.ndarray, *keys: Any) -> _Kept:
    """The gene lookup task of :func:`track_context`: :func:`~dask_enrich.trackscan.lookup_genes`,
    kept."""
    with scan_memory_pool():
        return _kept(lookup_genes(source, piece, spec, genes, *keys), piece_index)


def _summary_of(kept: _Kept) -> dict[str, Any]:
    return kept.summary


def _register_sizes() -> None:
    """Dask's ``sizeof`` of what a scan task leaves on its worker: its summary (the rest is on
    disk), not the ~50 bytes of a dataclass by default."""
    from dask.sizeof import sizeof

    @sizeof.register(_Kept)
    def _kept_size(kept: _Kept) -> int:
        return int(sizeof(kept.summary) + sizeof(kept.off_sums)
                   + sum(sizeof(p) for p in kept.frames.values()))


_register_sizes()


@dataclass
class TrackScanResult:
    """The track as the engine's plan needs it (see the module docs).

    ``selected``/``context``/``rejected``: Dask DataFrames, one partition per piece in piece order,
    each with ``_piece`` and ``_row`` (drop them before enrich; sorting a bin's rows by them gives
    input order). ``genes``: per gene in order of first appearance: ``rows`` (every track row),
    ``good``, ``selected``, ``min_position``/``max_position`` (good rows; -1 when none), ``pieces``
    (how many pieces hold it) and ``piece`` (the first): with ``rows`` and, when every gene is in
    one piece, ``piece``, what ``run._gene_counts`` gives today (same pieces, same blocksize).
    ``rejected_counts``: bad rows by reason code; ``warnings``: as ``split_bad_rows`` gives them,
    merged; ``rows``: track rows; ``timings``: seconds per step; ``second_pass``: pieces and keys
    asked; ``cross_piece_repeats``: rows rejected as repeats of an earlier piece's row (included in
    the counts and the rejected rows)."""

    selected: Any
    context: Any
    rejected: Any
    genes: pd.DataFrame
    rejected_counts: dict[str, int]
    warnings: dict[str, Any]
    rows: int
    pieces: int
    sorted: bool
    timings: dict[str, float] = field(default_factory=dict)
    second_pass: dict[str, int] = field(default_factory=dict)
    cross_piece_repeats: int = 0
    #: rows per gene and piece (``genes``' columns per piece, with ``piece``): which pieces hold
    #: each gene's rows (good or bad)
    per_piece: pd.DataFrame = field(default_factory=empty_gene_table)
    #: the pieces themselves (:func:`dask_enrich.io.input_pieces`), in piece order
    piece_list: list = field(default_factory=list)

    @property
    def in_gene_runs(self) -> bool:
        """Whether the track's rows lie in gene runs across the pieces: a gene split across
        pieces only where one piece ends and the next begins (at most pieces - 1 more (gene,
        piece) pairs than genes), as in a track sorted or grouped by gene."""
        return len(self.per_piece) <= len(self.genes) + max(self.pieces - 1, 0)


_NO_KEYS = pd.DataFrame({"gene_id": pd.Series([], dtype="str"),
                         "position": pd.Series([], dtype="int64")})


def _summary(scan: TrackScan) -> dict[str, Any]:
    """The small part of a scan the client needs."""
    return {"rows": scan.rows, "genes": scan.genes, "missing": scan.missing,
            "rejected": reason_counts(scan.rejected), "warnings": scan.warnings,
            "null_gene_rows": scan.null_gene_rows, "sorted": scan.sorted}


def _tagged(frame: pd.DataFrame, piece: int, drop: np.ndarray | None = None) -> pd.DataFrame:
    """The frame with its ``_piece`` (before ``_row``), without the rows numbered ``drop``."""
    if drop is not None and len(drop):
        frame = frame[~np.isin(frame[ROW].to_numpy(), drop)]
    frame = frame.reset_index(drop=True)
    frame.insert(len(frame.columns) - 1, PIECE, np.full(len(frame), piece, dtype=np.int64))
    return frame


def _selected(scan: _Kept, drop: np.ndarray | None = None) -> pd.DataFrame:
    return _tagged(scan.frame("selected"), scan.piece, drop)


def _dropped_selected(scan: _Kept, drop: np.ndarray) -> pd.Series:
    """Selected rows per gene that repeat an earlier piece's row."""
    selected = scan.frame("selected")
    hit = selected[np.isin(selected[ROW].to_numpy(), drop)]
    return hit.groupby("gene_id", sort=False).size()


def _rejected(holder: _Kept, piece: int, *more: pd.DataFrame) -> pd.DataFrame:
    """A piece's bad rows (of a scan or a gene lookup) and its rows repeating earlier pieces'."""
    frame = holder.frame("rejected")
    if more:
        frame = pd.concat([frame, *more], ignore_index=True).sort_values(ROW, kind="stable")
    return _tagged(frame, piece)


def _context(holder: _Kept, piece: int, drop: np.ndarray | None, *found: pd.DataFrame) -> pd.DataFrame:
    """A piece's context rows (of a scan or a gene lookup) and those found in it for other
    pieces, each row once, in piece order, without the rows repeating an earlier piece's row."""
    frame = holder.frame("context")
    frame = pd.concat([frame, *found], ignore_index=True) if found else frame
    if found:
        frame = frame.drop_duplicates(ROW).sort_values(ROW, kind="stable")
    return _tagged(frame, piece, drop)


def _warnings_without(holder: _Kept, rows: np.ndarray) -> dict[str, Any]:
    return holder.warnings_without(rows)


@dataclass
class _SecondPass:
    """The targeted reads after the first one: {piece: futures of context rows found in it},
    {piece: rows repeating an earlier piece's row}, the pieces searched for repeats."""

    found: dict[int, list]
    later: dict[int, np.ndarray]
    holders: set[int]

    @property
    def repeats(self) -> int:
        return int(sum(len(r) for r in self.later.values()))

    @property
    def futures(self) -> list:
        """The reads of the second pass."""
        return [f for found in self.found.values() for f in found]


def _second_pass(client: Any, source: InputSource, pieces: list, spec: ScanSpec,
                 per_piece: pd.DataFrame, requests: dict[int, pd.DataFrame], check_repeats: bool
                 ) -> _SecondPass:
    """Ask each piece for its ``requests`` (keys) and, where a gene's good position ranges in two
    pieces overlap, for its good keys there (one read per piece); the later copies of a key held
    by several pieces are repeats (rejected), the first copies join the context rows."""
    found: dict[int, list] = {}
    region = _overlaps(per_piece if check_repeats else per_piece.iloc[:0])
    holders = set(per_piece.loc[is_in(per_piece["gene_id"], region["gene_id"])
                                & (per_piece["good"] > 0), "piece"].tolist()) if len(region) else set()
    key_parts = []
    for j in sorted(set(requests) | holders):  # one read of each piece asked
        if j in holders:
            both = client.submit(lookup_and_keys, source, pieces[j], spec,
                                 requests.get(j, _NO_KEYS), region, pure=False)
            found.setdefault(j, []).append(client.submit(operator.getitem, both, 0, pure=False))
            key_parts.append(client.submit(_pair, j, client.submit(operator.getitem, both, 1,
                                                                   pure=False), pure=False))
        else:
            found.setdefault(j, []).append(client.submit(lookup_piece, source, pieces[j], spec,
                                                         requests[j], pure=False))
    later, first = (client.submit(find_repeats, *key_parts, pure=False).result() if key_parts
                    else ({}, {}))
    context_columns = [c for c in CONTEXT_ROW_COLUMNS if c in source.columns]
    for j, rows in first.items():  # the first copy of a repeated key: the row a full read keeps
        found.setdefault(j, []).append(client.submit(rows_of_piece, source, pieces[j], spec, rows,
                                                     context_columns, pure=False))
    return _SecondPass(found, later, holders)


def _finish(client: Any, source: InputSource, pieces: list, spec: ScanSpec, holders: dict[int, Any],
            second: _SecondPass, counts: dict[str, int], piece_warnings: dict[int, dict]
            ) -> tuple[list, list, dict[int, Any], dict[str, int], dict[str, Any]]:
    """Per piece of ``holders`` (kept scans or gene lookups): its context and rejected partitions
    with the repeats across pieces applied, as Delayed (made from the parked frames when a bin
    needs them); the merged counts and warnings. Waits for the reads of the second pass."""
    import dask

    later = second.later
    repeated = {i: client.submit(repeat_rows, source, pieces[i], spec, later[i], pure=False)
                for i in later}
    _raise_failed(second.futures + list(repeated.values()))  # nothing brought here
    context, reject = dask.delayed(_context, pure=True), dask.delayed(_rejected, pure=True)
    contexts = [context(h, i, later.get(i), *second.found.get(i, [])) for i, h in holders.items()]
    rejected = [reject(h, i, *([repeated[i]] if i in repeated else [])) for i, h in holders.items()]
    counts = dict(counts)
    piece_warnings = dict(piece_warnings)
    if second.repeats:  # the repeats are bad rows too: counts and warnings say so
        counts["duplicate_position"] = counts.get("duplicate_position", 0) + second.repeats
        redone = client.gather([client.submit(_warnings_without, holders[i], later[i], pure=False)
                                for i in later])
        piece_warnings.update(zip(later, redone, strict=True))
        piece_warnings[-1] = check_warnings(second.repeats, np.zeros(0))
    warnings: dict[str, Any] = {}
    for w in piece_warnings.values():
        warnings = validate.merge_warnings(warnings, w)
    return contexts, rejected, repeated, counts, warnings


def _raise_failed(futures: list) -> None:
    """Wait for ``futures`` and raise the first one's error, if any failed (their results stay on
    the workers)."""
    from distributed import wait

    wait(futures)
    for future in futures:
        if future.status == "error":
            future.result()  # raises its exception


def _frames(client: Any, *parts: list) -> list:
    """A Dask DataFrame of each list of Delayed pandas frames (its meta from its first frame; the
    metas in one round trip)."""
    import dask
    import dask.dataframe as dd

    metas = client.gather(client.compute([dask.delayed(_empty)(p[0]) for p in parts]))
    return [dd.from_delayed(p, meta=meta, verify_meta=False)
            for p, meta in zip(parts, metas, strict=True)]


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0]


def _overlaps(per_piece: pd.DataFrame) -> pd.DataFrame:
    """(gene_id, lo, hi) per gene whose good position ranges in two pieces overlap: the region a
    repeated key could lie in."""
    ranges = per_piece[per_piece["good"] > 0]
    multi = ranges[ranges.duplicated("gene_id", keep=False)]
    if not len(multi):
        return pd.DataFrame({"gene_id": pd.Series([], dtype="str"), "lo": [], "hi": []})
    multi = multi.sort_values(["gene_id", "min_position"], kind="stable")
    prev_hi = multi.groupby("gene_id", sort=False)["max_position"].cummax().shift(1)
    same = multi["gene_id"].eq(multi["gene_id"].shift(1))
    hit = same & (multi["min_position"] <= prev_hi)
    genes = multi.loc[hit, "gene_id"].unique()
    region = multi[is_in(multi["gene_id"], genes)]
    return (region.groupby("gene_id", sort=False)
            .agg(lo=("min_position", "min"), hi=("max_position", "max")).reset_index())


def scan_track(client: Any, source: InputSource, spec: ScanSpec, *,
               blocksize: str | int | None = "128MiB", check_repeats: bool = True) -> TrackScanResult:
    """Scan the track ``source`` on ``client``'s cluster (see the module docs).

    ``spec``: :class:`~dask_enrich.trackscan.ScanSpec` (the run's track columns, selection rule,
    config, leniency, the bad rows' source name). ``blocksize``: the pieces' size, as
    :func:`dask_enrich.io.input_pieces`. ``check_repeats=False`` skips the search for a key
    repeated across pieces (the result may then differ from the full read if there is one).
    Raises InputError as today's read does (unreadable piece, a row without a gene id)."""
    import dask

    timings: dict[str, float] = {}
    t = time.perf_counter()
    _, pieces, _ = input_pieces(source, spec.columns, blocksize=blocksize, lenient=spec.lenient)
    scans = [client.submit(_scan_kept, source, piece, i, spec, pure=False)
             for i, piece in enumerate(pieces)]
    summaries = client.gather(client.map(_summary_of, scans, pure=False))
    timings["scan"] = time.perf_counter() - t

    t = time.perf_counter()
    null_rows = sum(s["null_gene_rows"] for s in summaries)
    if null_rows:
        raise InputError(f"{source.label} {source.path}: {null_rows} row(s) have no gene_id")
    per_piece = _per_piece([s["genes"] for s in summaries])
    genes = _combine_genes(per_piece)
    counts: dict[str, int] = {}
    for s in summaries:
        for code, count in s["rejected"].items():
            counts[code] = counts.get(code, 0) + int(count)
    requests = _requests(summaries, per_piece, genes)
    timings["combine"] = time.perf_counter() - t

    t = time.perf_counter()
    second = _second_pass(client, source, pieces, spec, per_piece, requests, check_repeats)
    contexts, rejected, repeated, counts, warnings = _finish(
        client, source, pieces, spec, dict(enumerate(scans)), second, counts,
        {i: s["warnings"] for i, s in enumerate(summaries)})
    select = dask.delayed(_selected, pure=True)
    selected = [select(scans[i], second.later.get(i)) for i in range(len(pieces))]
    if second.repeats:  # rows per gene without the repeats
        later = second.later
        good_off = client.gather([client.submit(_gene_sizes, repeated[i], pure=False) for i in later])
        selected_off = client.gather([client.submit(_dropped_selected, scans[i], later[i], pure=False)
                                      for i in later])
        genes = _without_repeats(genes, good_off, selected_off)
    timings["second_pass"] = time.perf_counter() - t
    selected, contexts, rejected = _frames(client, selected, contexts, rejected)
    return TrackScanResult(
        selected=selected, context=contexts, rejected=rejected, genes=genes,
        rejected_counts=counts, warnings=warnings,
        rows=int(sum(s["rows"] for s in summaries)), pieces=len(pieces),
        sorted=all(s["sorted"] for s in summaries), timings=timings,
        second_pass={"pieces": len(requests), "keys": int(sum(len(k) for k in requests.values())),
                     "repeat_check_pieces": len(second.holders)},
        cross_piece_repeats=second.repeats, per_piece=per_piece, piece_list=list(pieces))


def _per_piece(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The pieces' rows-per-gene tables as one, with each row's ``piece``."""
    return pd.concat([empty_gene_table().assign(piece=pd.Series([], dtype="int64"))]
                     + [t.assign(piece=i) for i, t in enumerate(tables)], ignore_index=True)


def _combine_genes(per_piece: pd.DataFrame) -> pd.DataFrame:
    """Rows per gene over the pieces, in order of first appearance."""
    by = per_piece.groupby("gene_id", sort=False)
    good = per_piece[per_piece["good"] > 0].groupby("gene_id", sort=False)
    genes = by.agg(rows=("rows", "sum"), good=("good", "sum"), selected=("selected", "sum"),
                   pieces=("piece", "nunique"), piece=("piece", "first"))
    genes["min_position"] = good["min_position"].min().reindex(genes.index).fillna(-1).astype(np.int64)
    genes["max_position"] = good["max_position"].max().reindex(genes.index).fillna(-1).astype(np.int64)
    genes = genes.reset_index()
    genes["gene_id"] = genes["gene_id"].astype("str")
    return genes[["gene_id", "rows", "good", "selected", "min_position", "max_position", "pieces",
                  "piece"]]


def _requests(summaries: list[dict[str, Any]], per_piece: pd.DataFrame, genes: pd.DataFrame
              ) -> dict[int, pd.DataFrame]:
    """The keys each piece is asked for in the second pass: {piece: (gene_id, position)}.

    A neighbour key a piece could not find goes to every other piece whose good rows of the gene
    span it; a gene's end rows (lowest and highest position) go to the first piece holding them,
    unless that piece has selected rows of the gene (its scan kept its end rows)."""
    ranges = per_piece.loc[per_piece["good"] > 0, ["gene_id", "piece", "min_position", "max_position"]]
    asks = []
    missing = [s["missing"].assign(source=i) for i, s in enumerate(summaries) if len(s["missing"])]
    if missing:
        keys = pd.concat(missing, ignore_index=True)
        keys = keys[is_in(keys["gene_id"], ranges.loc[ranges.duplicated("gene_id", keep=False),
                                                    "gene_id"])]
        cand = keys.merge(ranges, on="gene_id")
        cand = cand[(cand["piece"] != cand["source"]) & (cand["position"] >= cand["min_position"])
                    & (cand["position"] <= cand["max_position"])]
        asks.append(cand[["piece", "gene_id", "position"]])
    chosen = genes.loc[genes["selected"] > 0, ["gene_id", "min_position", "max_position"]]
    if len(chosen):
        kept = per_piece.loc[per_piece["selected"] > 0, ["gene_id", "piece"]]  # its scan kept its ends
        for col in ("min_position", "max_position"):
            at = ranges.merge(chosen[["gene_id", col]], on=["gene_id", col])
            at = at.drop_duplicates("gene_id", keep="first")  # the first piece holding it
            at = at.merge(kept, on=["gene_id", "piece"], how="left", indicator=True)
            at = at[at["_merge"] == "left_only"]
            asks.append(pd.DataFrame({"piece": at["piece"].to_numpy(np.int64),
                                      "gene_id": at["gene_id"].astype("str"),
                                      "position": at[col].to_numpy(np.int64)}))
    if not asks:
        return {}
    every = pd.concat(asks, ignore_index=True).drop_duplicates()
    return {int(p): part[["gene_id", "position"]].reset_index(drop=True)
            for p, part in every.groupby("piece", sort=True)}


def _without_repeats(genes: pd.DataFrame, good_off: list[pd.Series], selected_off: list[pd.Series]
                     ) -> pd.DataFrame:
    """The per-gene table with the cross-piece repeats taken off ``good`` and ``selected``."""
    genes = genes.set_index("gene_id")
    for column, parts in (("good", good_off), ("selected", selected_off)):
        for counts in parts:
            genes.loc[counts.index, column] -= counts.to_numpy()
    return genes.reset_index()


def _gene_sizes(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("gene_id", sort=False).size()


def _pair(piece: int, keys: Any) -> tuple[int, Any]:
    return piece, keys


# --- positions given with a track ----------------------------------------------------------------
@dataclass
class TrackContextResult:
    """The track rows that given positions' context needs (see :func:`track_context`).

    ``context``: a Dask DataFrame of one partition per track piece read, in piece order
    (:data:`~dask_enrich.trackscan.CONTEXT_ROW_COLUMNS` present, ``_piece``, ``_row``);
    ``rejected``: the bad track rows of the positions' genes (as the engine rejects them today),
    one partition per piece read; ``rejected_counts``, ``warnings``: of those rows;
    ``pieces``/``pieces_read``: the track's pieces and those read; ``cross_piece_repeats``: rows
    rejected as repeats of an earlier piece's row."""

    context: Any
    rejected: Any
    rejected_counts: dict[str, int]
    warnings: dict[str, Any]
    pieces: int
    pieces_read: int
    timings: dict[str, float] = field(default_factory=dict)
    cross_piece_repeats: int = 0
    #: rows per gene of the positions' genes in the track (as :attr:`TrackScanResult.genes`)
    genes: pd.DataFrame = field(default_factory=empty_gene_table)


def _genes_of(frame: pd.DataFrame) -> np.ndarray:
    return pd.unique(frame["gene_id"].astype(str).to_numpy(dtype=object))


def _lookup_summary(found: Any) -> dict[str, Any]:
    return {"genes": found.genes, "rejected": reason_counts(found.rejected), "warnings": found.warnings}


def track_context(client: Any, source: InputSource, spec: ScanSpec, positions: Any, *,
                  blocksize: str | int | None = "128MiB", check_repeats: bool = True
                  ) -> TrackContextResult:
    """The context rows of ``positions`` (a Dask or pandas DataFrame with ``gene_id`` and
    ``position``) from the track ``source``: per position partition a task makes the int64 keys of
    the neighbours (p-2..p+2), the client learns only the genes, picks the track pieces whose
    row-group statistics may hold them (footers), and one task per such piece reads those row
    groups (position, gene_id as dictionary, scores), checks the genes' rows and returns the rows
    asked for and the genes' end rows; repeats across pieces as :func:`scan_track`. The work grows
    with the rows of the positions' genes, at the floor columns; a track sorted by gene lets the
    statistics skip the rest."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if isinstance(positions, pd.DataFrame):
        parts = [client.scatter(positions[["gene_id", "position"]])]
    else:
        parts = client.compute(positions[["gene_id", "position"]].to_delayed())
    gene_lists = client.gather(client.map(_genes_of, parts, pure=False))
    genes = np.asarray(pd.unique(np.concatenate(gene_lists)) if gene_lists else [], dtype=object)
    keys = client.map(position_keys, parts, genes=genes, pure=False)
    _, pieces, _ = input_pieces(source, spec.columns, blocksize=blocksize, lenient=spec.lenient)
    asked = pieces_holding(source, pieces, genes) or [0]  # none: an empty lookup gives the meta
    timings["plan"] = time.perf_counter() - t
    t = time.perf_counter()
    found = {j: client.submit(_lookup_kept, source, pieces[j], j, spec, genes, *keys, pure=False)
             for j in asked}
    gathered = client.gather([client.submit(_summary_of, found[j], pure=False) for j in asked])
    summaries = dict(zip(asked, gathered, strict=True))
    counts: dict[str, int] = {}
    for summary in summaries.values():
        for code, n in summary["rejected"].items():
            counts[code] = counts.get(code, 0) + n
    per_piece = pd.concat([_per_piece([]), *[summaries[j]["genes"].assign(piece=j) for j in asked]],
                          ignore_index=True)
    second = _second_pass(client, source, pieces, spec, per_piece, {}, check_repeats)
    contexts, rejected, _, counts, warnings = _finish(
        client, source, pieces, spec, found, second, counts,
        {j: summaries[j]["warnings"] for j in asked})
    contexts, rejected = _frames(client, contexts, rejected)
    timings["lookup"] = time.perf_counter() - t
    return TrackContextResult(
        context=contexts, rejected=rejected,
        rejected_counts=counts, warnings=warnings, pieces=len(pieces), pieces_read=len(asked),
        timings=timings, cross_piece_repeats=second.repeats, genes=_combine_genes(per_piece))

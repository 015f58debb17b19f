"""The run's inputs on the client: schema checks, the rows per gene, and :func:`read_inputs`, the one
step where the inputs become Dask collections with their gene counts.

* :func:`check_source` runs :func:`dask_enrich.validate.check_columns` from an input's columns and
  dtypes (Parquet footer, or the first CSV rows), before any heavy work; :func:`check_files_have`
  the columns of every file of a multi-file input.
* :func:`gene_counts`: rows per gene id (one pass over ``gene_id``), and the input partition of each
  gene when the input is grouped by gene.
* :func:`read_inputs` -> :class:`RunInputs`: the positions and track as Dask DataFrames, their
  gene counts and the input partition of each gene (what the plan is made from).
"""
from __future__ import annotations

import gzip
import hashlib
import io as _io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .. import settings as dask_settings
from .. import validate
from ..errors import ConfigError, InputError
from ..columns import CONTEXT_TRACK_OPTIONAL, POSITION_COLUMNS, TRACK_COLUMNS
from ..io import (
    InputSource,
    input_pieces,
    inspect_input,
    read_dask,
    wanted_columns,
)
from ..storage import url_to_fs
from ..trackscan import PIECE, ROW
from .quarantine import FILE_COLUMN, source_name


def source_dtypes(source: InputSource) -> dict[str, Any]:
    """The input's columns and their raw dtypes, read cheaply (Parquet footer of the first file, or
    the first 100 rows of the first CSV file, types inferred)."""
    fs, path = url_to_fs(source.files[0], source.storage_options)
    try:
        if source.format == "parquet":
            with fs.open(path, "rb") as handle:
                empty = pq.ParquetFile(handle).schema_arrow.empty_table()
            return empty.to_pandas().dtypes.to_dict()
        with fs.open(path, "rb") as raw:
            handle = gzip.GzipFile(fileobj=raw) if source.compression == "gzip" else raw
            head = b"".join(line for _, line in zip(range(101), handle))
        frame = pd.read_csv(_io.BytesIO(head), sep=source.sep, nrows=100)
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame.dtypes.to_dict()
    except Exception as exc:  # unreadable or corrupt: one clean message naming the file
        raise InputError(f"{source.label} file {source.files[0]}: cannot be read "
                         f"({type(exc).__name__}: {exc})") from None


def check_source(source: InputSource, kind: str = "positions") -> None:
    """InputError naming the file and every missing (with a close-name suggestion) or mistyped
    required column of ``source`` (``kind``: ``positions`` or ``track``)."""
    validate.check_columns(source_dtypes(source), source=source_name(source), kind=kind)


def _file_columns(source: InputSource, file: str) -> list[str]:
    """The column names of one file of ``source`` (Parquet footer, or the CSV header line)."""
    fs, path = url_to_fs(file, source.storage_options)
    with fs.open(path, "rb") as raw:
        if source.format == "parquet":
            return list(pq.ParquetFile(raw).schema_arrow.names)
        handle = gzip.GzipFile(fileobj=raw) if source.compression == "gzip" else raw
        header = handle.readline().decode("utf-8-sig").rstrip("\r\n")
    return [c.strip() for c in header.split(source.sep)]


def check_files_have(source: InputSource | None, columns: Any) -> None:
    """InputError naming the first file of a multi-file input that lacks a column the run reads
    (the checks so far saw only the first file's columns). Footers or header lines only, read
    in parallel."""
    if source is None or len(source.files) < 2:
        return
    from concurrent.futures import ThreadPoolExecutor

    wanted = list(dict.fromkeys(columns))

    def missing(file: str) -> list[str]:
        try:
            have = set(_file_columns(source, file))
        except Exception as exc:
            raise InputError(f"{source.label} file {file}: cannot be read "
                             f"({type(exc).__name__}: {exc})") from None
        return [c for c in wanted if c not in have]

    with ThreadPoolExecutor(max_workers=min(16, len(source.files) - 1)) as pool:
        for file, absent in zip(source.files[1:], pool.map(missing, source.files[1:])):
            if absent:
                raise InputError(f"{source.label} file {file}: lacks column(s) "
                                 f"{', '.join(map(repr, absent))} (the first file of {source.path}, "
                                 f"{source.files[0]}, has them)")


def check_rows_present(rows: int, source: InputSource) -> None:
    """InputError when the input holds no rows."""
    validate.check_not_empty(int(rows), source=source_name(source), kind=source.label)


def absolute(path: str | None) -> str | None:
    """A local path made absolute on the client (workers resolve relative paths against their own
    working directories); URLs and None unchanged."""
    if path is None:
        return None
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return text
    import os

    if text.startswith("file://"):
        return "file://" + os.path.abspath(text.removeprefix("file://"))
    return os.path.abspath(text)


def check_sources(pos_source: InputSource | None, track_source: InputSource | None) -> None:
    """The schema checks of a run's inputs (client side, before any work)."""
    if pos_source is not None:
        check_source(pos_source, "positions")
    if track_source is not None:
        check_source(track_source, "track")


def check_counts(pos_source: InputSource | None, pos_counts: "pd.Series | None",
                 track_source: InputSource | None, track_counts: "pd.Series | None") -> None:
    """InputError when the input the positions come from holds no rows."""
    if pos_source is not None and pos_counts is not None:
        check_rows_present(int(pos_counts.sum()), pos_source)
    elif track_source is not None and track_counts is not None:
        check_rows_present(int(track_counts.sum()), track_source)


def read_options(source: InputSource) -> dict[str, Any]:
    """``read_dask`` options of the positions: lenient positions (checked per row), and each row's
    file when there are several (so that a bad row's message and reason name its file)."""
    return {"lenient": True, "file_column": FILE_COLUMN if len(source.files) > 1 else None}


# --- the run's inputs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSources:
    """The run's input files, resolved and checked on the client (names, dtypes, every file's
    columns) before any work, with the columns the run reads of each."""

    positions: InputSource | None
    track: InputSource | None
    position_columns: tuple[str, ...]
    track_columns: tuple[str, ...] | None

    @property
    def track_only(self) -> bool:
        """The positions are the uncertain rows of the track."""
        return self.positions is None

    @property
    def main(self) -> InputSource:
        """The input the positions come from (the positions, or the track)."""
        return self.track if self.positions is None else self.positions

    def options(self, label: str) -> dict[str, Any]:
        """``read_dask`` options of the positions (lenient, each row's file) and of a track read
        for context (the same: checked row by row); a track alone is read strictly."""
        if label == "positions":
            return read_options(self.positions)
        return read_options(self.track) if self.positions is not None else {}

    def columns(self, label: str) -> list[str]:
        return list(self.position_columns if label == "positions" else self.track_columns)

    def pieces(self) -> tuple[str, Any, list]:
        """(label, reader, pieces) of the main input: the same pieces as its Dask collection,
        read inside a task (enriching where read)."""
        label = "track" if self.track_only else "positions"
        reader, pieces, _ = input_pieces(self.main, self.columns(label), **self.options(label))
        return label, reader, pieces


def resolve_sources(positions: str | None, track: str | None, keep_columns: Any,
                    storage_options: dict[str, Any] | None = None) -> InputSources:
    """Inspect the inputs and check their columns (client side, before any work)."""
    pos_source = None if positions is None else inspect_input(positions, label="positions",
                                                               storage_options=storage_options)
    track_source = None if track is None else inspect_input(track, label="track",
                                                            storage_options=storage_options)
    check_sources(pos_source, track_source)  # names, dtypes (footers / first rows)
    track_columns = None
    if pos_source is None:
        position_columns = tuple(wanted_columns(track_source, POSITION_COLUMNS, keep_columns))
        track_columns = position_columns
    else:
        position_columns = tuple(wanted_columns(pos_source, POSITION_COLUMNS, keep_columns))
        if track_source is not None:
            track_columns = tuple(c for c in wanted_columns(track_source, TRACK_COLUMNS)
                                  if c in (*TRACK_COLUMNS, *CONTEXT_TRACK_OPTIONAL))
    check_files_have(pos_source or track_source, position_columns)
    if pos_source is not None and track_source is not None:
        check_files_have(track_source, track_columns)
    return InputSources(pos_source, track_source, position_columns, track_columns)


def _count_genes(frame: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    """Rows per gene id of one partition, in order of first appearance (missing ids included),
    with the partition's number."""
    codes, uniques = pd.factorize(frame["gene_id"], use_na_sentinel=False)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    part = partition_info["number"] if partition_info else -1
    return pd.DataFrame({"gene_id": pd.Series(uniques, dtype="str"), "rows": counts,
                         "part": np.full(len(uniques), part, dtype=np.int64)})


def gene_counts(source: InputSource) -> tuple[pd.Series, pd.Series | None]:
    """Rows per gene id, in order of first appearance in the input, from one pass over the
    ``gene_id`` column only; and, when the input is grouped by gene (every gene's rows in one input
    partition), the input partition of each gene (else None)."""
    genes = read_dask(source, ["gene_id"])
    meta = pd.DataFrame({"gene_id": pd.Series([], dtype="str"), "rows": pd.Series([], dtype="int64"),
                         "part": pd.Series([], dtype="int64")})
    per_part = genes.map_partitions(_count_genes, meta=meta).compute()
    counts = per_part.groupby("gene_id", sort=False, dropna=False)["rows"].sum()
    if counts.index.hasnans:
        missing = int(counts[counts.index.isna()].sum())
        raise InputError(f"{source.label} {source.path}: {missing} row(s) have no gene_id")
    counts.index = pd.Index(counts.index, dtype="str")
    gene_parts = None
    if len(counts) == len(per_part) and (per_part["part"] >= 0).all():  # no gene in two partitions
        gene_parts = pd.Series(per_part["part"].to_numpy(), index=counts.index)
    return counts.astype(np.int64), gene_parts


#: The scan's row ids (piece, row within it): dropped before a bin is enriched.
SCAN_ROW_IDS = (PIECE, ROW)
#: A selected row and its four context neighbours (p-2..p+2): the most rows it brings to its bin.
CONTEXT_ROWS_PER_SELECTED = 5


@dataclass(frozen=True)
class RunInputs:
    """The inputs as Dask collections, with their rows per gene (in order of first appearance)
    and, for an input grouped by gene, each gene's input partition: what the plan is made from."""

    sources: InputSources
    positions: Any  # dask DataFrame or None
    track: Any
    pos_counts: pd.Series | None = None
    pos_parts: pd.Series | None = None
    track_counts: pd.Series | None = None
    track_parts: pd.Series | None = None
    #: track-only selection read at the floor (``trackscan_stage.scan_track``): ``positions`` are the
    #: selected rows, ``track`` their context rows (both checked by the scan), ``track_counts``
    #: every track row per gene (the packing weights, as a full read gives them)
    scan: Any = None
    #: the track's rows when the track was not counted gene by gene (positions with a scanned
    #: track: from the Parquet footers)
    track_rows: int | None = None
    #: ``--selective`` on a scanned track (:func:`selective_inputs`): no Dask collection of the
    #: rows; each bin reads its genes' rows from the track's pieces (``engine/selective.py``)
    selective: bool = False
    #: the track's columns and dtypes as a full read gives them (when ``track`` is None)
    track_meta: pd.DataFrame | None = None

    def frame(self, label: str) -> Any:
        return self.positions if label == "positions" else self.track

    def meta(self, label: str) -> pd.DataFrame:
        """The columns and dtypes of the rows a bin receives (without the scan's row ids)."""
        frame = self.frame(label)
        meta = frame._meta if frame is not None or label == "positions" else self.track_meta
        return meta.drop(columns=[c for c in SCAN_ROW_IDS if c in meta.columns])

    @property
    def partitions(self) -> int:
        """The input partitions the bins are made from."""
        if self.selective:
            return int(self.scan.pieces)
        return sum(f.npartitions for f in (self.positions, self.track) if f is not None)

    @property
    def counts(self) -> pd.Series:
        """Rows per gene of the input the positions come from (what each bin must receive)."""
        return self.pos_counts if self.pos_counts is not None else self.track_counts

    @property
    def weights(self) -> pd.Series:
        """The packing weight of each gene: its positions' rows, plus its track rows (which its
        bin holds too); the genes of the track alone when the positions are selected from it."""
        if self.pos_counts is None:
            return self.track_counts
        if self.scan is not None and self.sources.track_only:
            return self.scan_weights
        if self.scan is not None:  # positions with a scanned track: their context rows only
            return self.context_weights
        if self.track_counts is None:
            return self.pos_counts
        return (self.pos_counts + self.track_counts.reindex(self.pos_counts.index).fillna(0)
                .astype(np.int64)).astype(np.int64)

    @property
    def scan_weights(self) -> pd.Series:
        """A scanned track's packing weights: the rows each gene's bin receives, bounded from the
        scan's counts: each selected row and its four neighbours, the gene's two end rows (its
        span) and its bad rows (written to ``_rejected-track/`` by the bin)."""
        genes = self.scan.genes
        rows = (CONTEXT_ROWS_PER_SELECTED * genes["selected"] + 2 + genes["rows"] - genes["good"])
        return pd.Series(rows.to_numpy(np.int64), index=self.track_counts.index)

    @property
    def context_weights(self) -> pd.Series:
        """Positions given with a scanned track: the positions' rows plus the track rows each gene's
        bin receives, bounded as :attr:`scan_weights` (each position's neighbours and the gene's
        end rows, at most its good rows; its bad rows): not every track row of the gene, as a full
        read brings."""
        genes = self.scan.genes
        track = pd.Series(genes["rows"].to_numpy(np.int64), index=self.track_counts.index)
        good = pd.Series(genes["good"].to_numpy(np.int64), index=self.track_counts.index)
        index = self.pos_counts.index
        track, good = (s.reindex(index).fillna(0).astype(np.int64) for s in (track, good))
        context = np.minimum(good, CONTEXT_ROWS_PER_SELECTED * self.pos_counts + 2)
        return (self.pos_counts + context + track - good).astype(np.int64)

    @property
    def gene_parts(self) -> pd.Series | None:
        """The input partition of each gene when one input alone is read and grouped by gene."""
        if self.selective:
            return self.track_parts
        if self.scan is not None and self.sources.track_only:  # the scan's pieces
            return self.pos_parts
        if self.track is None:
            return self.pos_parts
        return self.track_parts if self.positions is None and self.scan is None else None


def scan_applies(sources: InputSources, selective: bool) -> bool:
    """Whether the track is read at the floor (:func:`scanned_inputs`, :func:`context_inputs`,
    and with ``selective`` :func:`selective_inputs`): a Parquet track."""
    return sources.track is not None and sources.track.format == "parquet"


def context_inputs(sources: InputSources, client: Any, spec: Any, on_bad_rows: str = "error"
                   ) -> RunInputs:
    """Positions given with a Parquet track: the positions read in full, the track only where
    their genes' rows lie (row groups found by their statistics; ``trackscan_stage.track_context``),
    at the floor columns; every track row of those genes checked, as a full read checks them."""
    from .trackscan_stage import track_context

    positions = read_dask(sources.positions, sources.columns("positions"),
                          **sources.options("positions"))
    pos_counts, pos_parts = gene_counts(sources.positions)
    check_counts(sources.positions, pos_counts, None, None)  # empty positions
    result = track_context(client, sources.track, spec, positions[["gene_id", "position"]])
    track = _refuse_or_carry(result, on_bad_rows, spec.source)
    genes = result.genes  # rows per gene of the track (counts; the bins' weights: context_weights)
    track_counts = pd.Series(genes["rows"].to_numpy(np.int64),
                             index=pd.Index(genes["gene_id"].astype(str), dtype="str"))
    return RunInputs(sources, positions, track, pos_counts, pos_parts, track_counts, scan=result,
                     track_rows=footer_rows(sources.track))


def footer_rows(source: InputSource) -> int:
    """The rows of a Parquet input, from its files' footers (no data read)."""
    total = 0
    for file in source.files:
        fs, path = url_to_fs(file, source.storage_options)
        with fs.open(path, "rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def _refuse(result: Any, on_bad_rows: str, source: str) -> None:
    """``--on-bad-rows error``: the scan's bad rows refused, one InputError before any bin."""
    if result.rejected_counts and on_bad_rows != "quarantine":
        validate.raise_for_bad_rows(result.rejected.drop(columns=list(SCAN_ROW_IDS)).compute(),
                                    source)


def _refuse_or_carry(result: Any, on_bad_rows: str, source: str) -> Any:
    """The scan's context rows; its bad rows refused (``error``: one InputError before any bin) or
    appended to them, each to be written by its bin to ``OUT/_rejected-track/`` (``quarantine``)."""
    if not result.rejected_counts:
        return result.context
    _refuse(result, on_bad_rows, source)
    return _with_rejected(result.context, result.rejected)


def scanned_inputs(sources: InputSources, client: Any, spec: Any, on_bad_rows: str = "error"
                   ) -> RunInputs:
    """Track-only selection at the floor: the track's pieces scanned where they lie (score columns,
    position and gene id as a dictionary; every row checked vectorised), then only the selected
    rows and their context rows become Dask collections. Bad track rows: the run fails on them
    (``--on-bad-rows error``) or they are written to ``OUT/_rejected-track/`` by the run."""
    from .trackscan_stage import scan_track

    result = scan_track(client, sources.track, spec)
    genes = result.genes
    index = pd.Index(genes["gene_id"].astype(str), dtype="str")
    track_counts = pd.Series(genes["rows"].to_numpy(np.int64), index=index)
    selected = pd.Series(genes["selected"].to_numpy(np.int64), index=index)
    check_counts(None, None, sources.track, track_counts)  # empty track
    track = _refuse_or_carry(result, on_bad_rows, spec.source)
    return RunInputs(sources, result.selected, track, selected, _one_piece_each(genes, index),
                     track_counts, None, scan=result)


def _one_piece_each(genes: pd.DataFrame, index: pd.Index) -> pd.Series | None:
    """Each gene's piece, when every gene lies in one piece of the scan (the bins may then follow
    the pieces, as a full read's partitions); else None."""
    if len(genes) and bool((genes["pieces"] == 1).all()):
        return pd.Series(genes["piece"].to_numpy(np.int64), index=index)
    return None


def selective_inputs(sources: InputSources, client: Any, spec: Any, on_bad_rows: str = "error"
                     ) -> RunInputs | None:
    """``--selective`` on a Parquet track: the track scanned as for track-only selection (every row
    checked vectorised; the selected rows, their context rows and the bad rows kept on the
    workers), the plan made from every row of each gene (each is written or rejected) as a full
    read makes it. None when the track's rows are not in gene runs across its pieces (a track
    shuffled across files): the caller reads it in full, as before."""
    from ..io import input_pieces
    from .trackscan_stage import scan_track

    result = scan_track(client, sources.track, spec)
    if not result.in_gene_runs:
        return None
    genes = result.genes
    index = pd.Index(genes["gene_id"].astype(str), dtype="str")
    track_counts = pd.Series(genes["rows"].to_numpy(np.int64), index=index)
    track_parts = _one_piece_each(genes, index)
    check_counts(None, None, sources.track, track_counts)  # empty track
    _refuse(result, on_bad_rows, spec.source)
    _, _, meta = input_pieces(sources.track, sources.columns("track"), **sources.options("track"))
    return RunInputs(sources, None, None, None, None, track_counts, track_parts, scan=result,
                     selective=True, track_meta=meta)


def _context_and_rejected(context: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """One piece's bad rows (a ``reason`` each; their columns, in their order), then its context
    rows (a subset of those columns)."""
    return pd.concat([rejected, context], ignore_index=True)


def _with_rejected(context: Any, rejected: Any) -> Any:
    """The scan's context rows with its bad rows (a ``reason`` each) appended piece by piece: each
    bin's task writes its genes' bad rows to ``OUT/_rejected-track/`` (resume keeps them with it)."""
    import dask
    import dask.dataframe as dd

    meta = _context_and_rejected(context._meta, rejected._meta)
    join = dask.delayed(_context_and_rejected, pure=True)
    parts = [join(c, r) for c, r in zip(context.to_delayed(), rejected.to_delayed(), strict=True)]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def read_inputs(sources: InputSources) -> RunInputs:
    """The one step where the inputs become Dask collections plus their gene counts (one pass over
    ``gene_id`` of each); InputError when the input the positions come from holds no rows."""
    frames = {label: read_dask(source, sources.columns(label), **sources.options(label))
              for label, source in (("positions", sources.positions), ("track", sources.track))
              if source is not None}
    counted = {label: gene_counts(source)
               for label, source in (("positions", sources.positions), ("track", sources.track))
               if source is not None}
    pos_counts, pos_parts = counted.get("positions", (None, None))
    track_counts, track_parts = counted.get("track", (None, None))
    check_counts(sources.positions, pos_counts, sources.track, track_counts)  # empty input
    return RunInputs(sources, frames.get("positions"), frames.get("track"), pos_counts, pos_parts,
                     track_counts, track_parts)


def resolve_cache(cache: str | None, genome: str | None, annotation: str | None, out: str,
                  cache_dir: str | None = None, log: Callable[[str], None] | None = None,
                  gene_key: str | None = None, seq_aliases: str | None = None) -> str | None:
    """The genomic cache directory of a run: ``cache`` as given, or built (or reused) from
    ``genome`` and ``annotation`` (with ``gene_key`` and ``seq_aliases``, see
    :func:`~dask_enrich.genome.cache.build_cache`) under ``cache_dir`` (default:
    ``.dask-enrich-cache`` beside OUT)."""
    if cache is not None:
        if genome is not None or annotation is not None:
            raise ConfigError("give either --cache or --genome/--annotation, not both")
        if gene_key is not None or seq_aliases is not None:
            raise ConfigError("--gene-key and --seq-aliases apply when the cache is built: give them "
                              "to `dask-enrich build-cache`, or give --genome/--annotation instead of --cache")
        from ..genome.remote import is_url, local_cache_dir

        if is_url(cache):  # the workers copy it too, when they first open it
            local_cache_dir(str(cache))
            return str(cache)
        if not Path(cache).is_dir():
            raise InputError(f"genomic cache {cache}: no such directory (build it with "
                             "`dask-enrich build-cache`)")
        return str(cache)
    if genome is None and annotation is None:
        return None
    if annotation is None:
        raise ConfigError("--genome needs --annotation too (the gene spans and strands come from it); "
                          "--annotation alone gives the genomic features without sequence")
    from ..genome.cache import build_cache
    from ..genome.remote import local_file

    genome, annotation, seq_aliases = (local_file(x) for x in (genome, annotation, seq_aliases))
    cache_dir = dask_settings.get("cache-dir", cache_dir)
    if cache_dir is not None and "://" not in str(cache_dir):  # absolute: workers open it by path
        cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    if cache_dir is None:
        local_out = "://" not in str(out) or str(out).startswith("file://")
        parent = Path(str(out).removeprefix("file://")).resolve().parent if local_out else Path.home() / ".cache"
        cache_dir = str(parent / ".dask-enrich-cache")
    options = [gene_key, _file_key(seq_aliases)] if gene_key or seq_aliases else []
    key = hashlib.sha256(json.dumps(
        [_file_key(genome), _file_key(annotation), *options], default=str).encode()).hexdigest()[:16]
    target = f"{str(cache_dir).rstrip('/')}/{key}" if "://" in str(cache_dir) else Path(cache_dir) / key
    if log:
        log(f"genomic cache {target} (from {genome or '-'} and {annotation})")
    build_cache(genome, annotation, target, progress=log, gene_key=gene_key, seq_aliases=seq_aliases)
    return str(target)


def _file_key(path: str | None) -> list[Any] | None:
    if path is None:
        return None
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]

"""``enrich_dask``: a Dask DataFrame of positions in, a lazy Dask DataFrame of features out.

Each partition of the input is enriched by the engine's own bin function
(``tasks.enrich_bin``: the row checks, the gene-then-position order, the pure core), so
``enrich_dask`` and ``run_enrichment`` compute the same values by one code path. The graph holds
one small context key (manifest, config, the cache's *path*, the track's file list) and one task
per input partition: the genomic cache is opened on the worker by path (once per process) and
each task reads the track rows of its own genes from the track's files (for Parquet, only the
pieces whose gene id statistics can hold them), so neither the cache nor the track is ever in
the graph. Nothing is computed until the result is: ``.compute()``,
``.to_parquet()``, ``.persist()``, further ``map_partitions`` all work on it.

The partitions are by gene: Dask's lazy shuffle on ``gene_id`` (a gene is never split; ``run``'s
size-based packing would need a pass over the data before the graph exists), or the input's own
partitions with ``by_gene=False`` when they already hold whole genes.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import EnrichConfig
from ..core import check_inputs, check_position_columns, output_meta
from ..errors import ConfigError
from ..columns import CONTEXT_TRACK_OPTIONAL, POSITION_COLUMNS, TRACK_COLUMNS
from ..io import (
    column_order,
    input_pieces,
    inspect_input,
    wanted_columns,
)
from ..manifest import Manifest, load_manifest
from ..text import is_in
from . import quarantine
from .context import RunContext
from .inputs import read_options, resolve_cache
from .partition import PartitionPlan
from .tasks import enrich_bin


def _gene_ranges(source: Any, pieces: list) -> list[tuple[str, str] | None]:
    """Per Parquet piece of the track, the (smallest, largest) gene id its row groups hold, from
    the footers' statistics (None: unknown, the piece is always read; CSV pieces too)."""
    import pyarrow.parquet as pq

    if source.format != "parquet":
        return [None] * len(pieces)
    ranges: list[tuple[str, str] | None] = []
    footers: dict[str, Any] = {}
    for file, groups in pieces:
        try:
            if file not in footers:
                footers[file] = pq.ParquetFile(file).metadata
            metadata = footers[file]
            column = metadata.schema.to_arrow_schema().get_field_index("gene_id")
            stats = [metadata.row_group(g).column(column).statistics
                     for g in (groups if groups is not None else range(metadata.num_row_groups))]
            if not stats or any(s is None or not s.has_min_max for s in stats):
                ranges.append(None)
            else:
                ranges.append((min(str(s.min) for s in stats), max(str(s.max) for s in stats)))
        except Exception:  # a remote or unusual file: read it
            ranges.append(None)
    return ranges


def _read_track_rows(genes: np.ndarray, reader: Any, pieces: list,
                     ranges: list[tuple[str, str] | None]) -> pd.DataFrame | None:
    """The track rows of ``genes``, read on the worker from the pieces whose gene id range can
    hold one of them (a track grouped or sorted by gene: only its pieces of those genes)."""
    wanted = np.sort(pd.unique(pd.Series(genes, dtype="str")).astype(str))
    frames = []
    for piece, extent in zip(pieces, ranges):
        if extent is not None:
            lo, hi = np.searchsorted(wanted, extent[0], "left"), np.searchsorted(wanted, extent[1], "right")
            if lo >= hi:  # no wanted gene id between the piece's smallest and largest
                continue
        frame = reader(piece)
        frames.append(frame[is_in(frame["gene_id"], wanted)])
    return pd.concat(frames, ignore_index=True) if frames else None


def _enrich_partition(positions: pd.DataFrame, ctx: RunContext, track: tuple | None,
                      partition_info: dict | None = None) -> pd.DataFrame:
    """One input partition through the engine's bin function."""
    rows = positions[list(ctx.position_columns)]
    track_rows = (_read_track_rows(rows["gene_id"].to_numpy(), *track[:3])
                  if track is not None and len(rows) else None)
    if track is not None and track_rows is None:  # no rows, or none of the track's pieces
        track_rows = track[3].copy()
    (out,) = enrich_bin(rows, track_rows, ctx).frames
    # one block per dtype (the core builds one per column, cheap to write but slow to edit):
    # what pandas operations on the result (dask's own to_parquet, assign, ...) expect
    return out.copy()


def enrich_dask(frame, manifest: str | Path | Manifest, *, cache: str | None = None,
                genome: str | None = None, annotation: str | None = None,
                track: str | None = None, config: EnrichConfig = EnrichConfig(),
                cache_dir: str | None = None, by_gene: bool = True):
    """Lazily enrich the positions of the Dask DataFrame ``frame`` with the features of
    ``manifest``; returns a Dask DataFrame (meta from the feature registry).

    ``by_gene`` (default): the rows are first shuffled on ``gene_id`` (Dask's own lazy shuffle, as
    many partitions as the input), so that a gene is never split over partitions: each gene's
    rows are checked together (a repeated position is found wherever it was) and each partition
    reads the track of whole genes. ``run``'s size-based packing needs a pass over the data; the
    lazy API hashes genes to partitions instead (the values are the same). ``by_gene=False``
    keeps the input's partitions (one output partition each): for input already grouped by gene.

    ``cache`` (a ``build-cache`` directory) or ``genome``/``annotation`` (the cache is built or
    reused once, here, under ``cache_dir``) give the genomic features; ``track`` (a path: Parquet
    or CSV, as ``run --track``) the context features. A bad row raises ``InputError`` when the
    partition is computed, naming the reason and example rows. Rows come back, per partition, in
    gene (first appearance) then position order with a fresh index, as ``run`` writes them.
    """
    import dask
    import dask.dataframe as dd

    if not isinstance(frame, dd.DataFrame):
        raise ConfigError(f"enrich_dask needs a dask.dataframe.DataFrame, not {type(frame).__name__} "
                          "(for a pandas frame use dask_enrich.enrich)")
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    check_position_columns(frame.columns, config)
    columns = tuple(column_order(frame.columns, POSITION_COLUMNS, config.keep_columns))
    # a cache built from genome/annotation goes to cache_dir (default: ./.dask-enrich-cache)
    cache_path = resolve_cache(cache, genome, annotation, str(Path.cwd() / "enrich_dask"), cache_dir)
    if cache_path is not None:
        cache_path = str(Path(cache_path).resolve())
    track_source = inspect_input(str(Path(track).resolve()) if "://" not in str(track) else track,
                                 label="track") if track is not None else None
    genomic = None
    if cache_path is not None:
        from ..genome.cache import load_cached

        genomic = load_cached(cache_path)
    check_inputs(manifest, config, has_context_columns=all(c in frame.columns for c in
                                                           ("context_score_m1", "context_score_p1")),
                 has_track=track_source is not None,
                 has_genome=bool(genomic is not None and genomic.has_sequence),
                 has_annotation=genomic is not None)
    input_meta = frame._meta[list(columns)]
    meta = output_meta(manifest, input_meta.dtypes.to_dict(), config)
    empty_plan = PartitionPlan(pd.Index([], dtype="str"), np.zeros(0, np.int64),
                               np.zeros(0, np.int64), 1)
    record = {"settings": {"on_bad_rows": "error"}}
    checks = replace(quarantine.bin_checks(record, manifest, None, cache_path),
                     source="the positions of enrich_dask")
    ctx = RunContext(manifest, config, empty_plan, columns, cache_path=cache_path, checks=checks,
                     track_checks=quarantine.track_checks(record, track_source))
    track_arg = None
    if track_source is not None:
        track_columns = [c for c in wanted_columns(track_source, TRACK_COLUMNS)
                         if c in (*TRACK_COLUMNS, *CONTEXT_TRACK_OPTIONAL)]
        reader, pieces, track_meta = input_pieces(track_source, track_columns,
                                                  **read_options(track_source))
        track_arg = (reader, pieces, _gene_ranges(track_source, pieces), track_meta)
    ctx_key = dask.delayed(ctx, pure=True, traverse=False)
    track_key = dask.delayed(track_arg, pure=True, traverse=False) if track_arg else None
    if by_gene and frame.npartitions > 1:
        frame = frame.shuffle("gene_id", npartitions=frame.npartitions)
    return frame.map_partitions(_enrich_partition, ctx_key, track_key, meta=meta,
                                enforce_metadata=False, align_dataframes=False)

"""The Dask engine: gene -> bin partition plan, one task per bin (``tasks.process_bin``) mapped by an
exchange (``exchange.py``: where read, staged, p2p), resumable Parquet.

Public entry point: :func:`run_enrichment` (the ``dask-enrich run`` command calls it), or
:func:`run_enrichment_with` and its options objects (``context.py``).
"""
from __future__ import annotations

from .context import ClusterOptions, InputOptions, OutputOptions
from .partition import (
           DEFAULT_PARTITION_ROWS,
           PartitionPlan,
           pack_next_fit,
           plan_partitions,
)
from .run import RunSummary, make_local_cluster, run_enrichment, run_enrichment_with

__all__ = ["DEFAULT_PARTITION_ROWS", "ClusterOptions", "InputOptions", "OutputOptions", "PartitionPlan",
           "RunSummary", "make_local_cluster", "pack_next_fit", "plan_partitions", "run_enrichment",
           "run_enrichment_with"]

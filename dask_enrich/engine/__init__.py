"""The Dask engine: gene -> bin partition plan, map_partitions over the pure core, resumable Parquet.

Public entry point: :func:`run_enrichment` (the ``dask-enrich run`` command calls it).
"""
from __future__ import annotations

from .partition import DEFAULT_PARTITION_ROWS, PartitionPlan, pack_next_fit, plan_partitions
from .run import RunSummary, make_local_cluster, run_enrichment

__all__ = ["DEFAULT_PARTITION_ROWS", "PartitionPlan", "RunSummary", "make_local_cluster", "pack_next_fit",
           "plan_partitions", "run_enrichment"]

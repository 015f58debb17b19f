"""The Dask engine: gene -> bin partition plan, map_partitions over the pure core, resumable Parquet.

Public entry point: :func:`run_enrichment` (the ``dask-enrich run`` command calls it). The names
below are imported on first use (``dask_enrich/_lazy.py``): importing ``dask_enrich.engine.cluster``
alone (as the command line does to start the workers' forkserver early) does not import pandas.
"""
from __future__ import annotations

from .._lazy import lazy_names

#: The public names and the modules defining them.
_LAZY = {
    "DEFAULT_PARTITION_ROWS": "partition",
    "PartitionPlan": "partition",
    "RunSummary": "run",
    "make_local_cluster": "cluster",
    "pack_next_fit": "partition",
    "plan_partitions": "partition",
    "run_enrichment": "run",
}

__all__ = ["DEFAULT_PARTITION_ROWS", "PartitionPlan", "RunSummary", "make_local_cluster", "pack_next_fit",
           "plan_partitions", "run_enrichment"]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

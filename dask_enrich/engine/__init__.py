"""The Dask engine: gene -> bin partition plan, one task per bin (``tasks.process_bin``) mapped by an
exchange (``exchange.py``: where read, staged, p2p), resumable Parquet.

Public entry point: :func:`run_enrichment` (the ``dask-enrich run`` command calls it), or
:func:`run_enrichment_with` and its options objects (``context.py``). The names below are
imported on first use (``dask_enrich/_lazy.py``): importing ``dask_enrich.engine.cluster`` alone
(as the command line does to start the workers' forkserver early) does not import pandas.
"""
from __future__ import annotations

from .._lazy import lazy_names

#: The public names and the modules defining them.
_LAZY = {
    "DEFAULT_PARTITION_ROWS": "partition",
    "ClusterOptions": "context",
    "InputOptions": "context",
    "OutputOptions": "context",
    "PartitionPlan": "partition",
    "RunSummary": "run",
    "make_local_cluster": "cluster",
    "pack_next_fit": "partition",
    "plan_partitions": "partition",
    "run_enrichment": "run",
    "run_enrichment_with": "run",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

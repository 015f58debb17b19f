"""Imported once by the LocalCluster's forkserver (``cluster.WORKER_PRELOAD``), before it forks any
worker: what every worker imports anyway, so that a forked worker starts with it in place.

Between the imports it stops when the process that started it is gone (a run refused at its
checks, before any worker was asked for, ends at once: the forkserver need not finish importing).
The collector is off while it imports (``_lazy.collector_paused``: imports make no garbage worth
collecting, and its passes cost CPU on the way to the first worker); ``gc.freeze()`` then moves
these modules' objects out of its reach: the workers' full collections do not walk them, and
their memory pages stay shared with the forkserver. dask's collections import without scipy and
without deriving their docstrings (``_lazy.dask_imported_lean``); a worker that loads a model
imports scipy then.
"""
import importlib
import os

from dask_enrich._lazy import collector_paused, dask_imported_lean

#: What a worker needs: distributed, dask.dataframe (the read and map_partitions tasks unpickle
#: into it), the genomic cache (opened once per worker) and the engine's task functions.
MODULES = ("distributed", "dask.dataframe", "dask_enrich.genome.cache", "dask_enrich.engine.reach",
           "dask_enrich.engine.run")

_parent = os.getppid()
with collector_paused(), dask_imported_lean():
    for _name in MODULES:
        if os.getppid() != _parent:
            os._exit(0)
        importlib.import_module(_name)

"""dask_enrich: training-parity feature enrichment for splice-site meta-models."""
from ._version import __version__

from . import settings as _settings  # noqa: F401  (Dask's `enrich` config section: its defaults)
from .config import EnrichConfig
from .core import EnrichReport, enrich
from .manifest import Manifest, load_manifest
from .seed import InferenceFeatureConfig, OptimizedInferenceEnricher, create_optimized_enricher

__all__ = [
    "__version__",
    "EnrichConfig",
    "enrich_dask",
    "EnrichReport",
    "InferenceFeatureConfig",
    "Manifest",
    "OptimizedInferenceEnricher",
    "create_optimized_enricher",
    "enrich",
    "load_manifest",
]


def __getattr__(name: str):
    """``dask_enrich.enrich_dask`` without importing dask.dataframe with the package."""
    if name == "enrich_dask":
        from .engine.lazy import enrich_dask

        return enrich_dask
    raise AttributeError(f"module 'dask_enrich' has no attribute {name!r}")

"""dask_enrich: training-parity feature enrichment for splice-site meta-models."""
from ._version import __version__

from . import settings as _settings  # noqa: F401  (Dask's `enrich` config section: its defaults)
from ._lazy import lazy_names

#: The public names and the modules defining them, imported on first use (``_lazy.py``).
_LAZY = {
    "EnrichConfig": "config",
    "EnrichReport": "core",
    "enrich": "core",
    "enrich_dask": "engine.lazy",
    "InferenceFeatureConfig": "seed",
    "Manifest": "manifest",
    "OptimizedInferenceEnricher": "seed",
    "create_optimized_enricher": "seed",
    "load_manifest": "manifest",
}

__all__ = ["__version__", *sorted(_LAZY, key=str.lower)]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)

"""dask_enrich: training-parity feature enrichment for splice-site meta-models."""
__version__ = "0.1.0"

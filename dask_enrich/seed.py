"""Seed-compatible API, for porting existing MetaSpliceAI-style inference code.

A thin shell over :func:`dask_enrich.core.enrich`: the names and call shapes of the code it replaces,
the training formulas of the core. As in that code the default missing-value policy is ``impute``,
and every call that imputes logs one warning naming the imputed features.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import EnrichConfig
from .core import enrich, impute_value
from .errors import InputError
from .manifest import Manifest, find_manifest, load_manifest

log = logging.getLogger("dask_enrich")

#: Feature groups each ``include_*`` switch controls.
_SWITCHED_GROUPS = {
    "include_probability_features": {"probability", "cross_type"},
    "include_context_features": {"context", "donor_context", "acceptor_context"},
    "include_genomic_features": {"genomic", "sequence"},
    "include_kmer_features": {"kmer"},
}


@dataclass
class InferenceFeatureConfig:
    """Settings of the seed-compatible enricher.

    cache_dir: a genomic cache written by ``dask-enrich build-cache`` (used when ``use_cache``);
    without it, genomic, sequence and k-mer features are imputed. A feature group switched off with
    ``include_*=False`` is not computed and is imputed (and reported) instead.
    """

    use_cache: bool = True
    cache_dir: str | None = None
    verbose: bool = False
    include_probability_features: bool = True
    include_genomic_features: bool = True
    include_kmer_features: bool = True
    include_context_features: bool = True
    missing: str = "impute"


class OptimizedInferenceEnricher:
    """Per-gene feature generation with the seed's interface, computed by the core."""

    def __init__(self, config: InferenceFeatureConfig | None = None):
        self.config = config or InferenceFeatureConfig()
        self.manifest: Manifest | None = None
        self._genomic: Any = None

    def load_feature_manifest(self, path: str | Path) -> list[str]:
        """Load the manifest (file or model directory); returns the feature names in order."""
        self.manifest = load_manifest(path)
        if self.config.verbose:
            log.info("loaded %d features from %s", len(self.manifest), self.manifest.source)
        return list(self.manifest.names)

    def generate_features_for_uncertain_positions(
        self, positions_df: pd.DataFrame, gene_id: str, model_path: str | Path | None = None
    ) -> pd.DataFrame:
        """Exactly the manifest's columns, in order, one row per input row (same index)."""
        if self.manifest is None:
            if model_path is None:
                raise InputError("no manifest loaded: call load_feature_manifest() or pass model_path")
            self.load_feature_manifest(find_manifest(model_path))
        frame = positions_df
        if "gene_id" not in frame.columns:
            frame = frame.assign(gene_id=gene_id)
        computed = self._computed_names()
        if computed:
            manifest = Manifest(computed, self.manifest.source, self.manifest.name,
                                self.manifest.stats)
            result, report = enrich(frame, manifest, genomic=self._genomic_cache(),
                                    config=EnrichConfig(missing=self.config.missing))
            imputed = dict(report.imputed)
        else:
            result, imputed = pd.DataFrame(index=frame.index), {}
        switched_off = {  # groups switched off by an include_* setting: filled, not computed
            name: np.full(len(result), impute_value(self.manifest, name),
                          dtype=self.manifest.feature(name).dtype)
            for name in self.manifest.names if name not in computed}
        if switched_off:
            result = pd.concat([result, pd.DataFrame(switched_off, index=result.index)], axis=1)
            imputed.update({name: len(result) for name in switched_off})
        if imputed:
            log.warning("gene %s: imputed %d feature(s) for %d rows: %s", gene_id,
                        len(imputed), len(frame), ", ".join(imputed))
        return result[list(self.manifest.names)]

    def _computed_names(self) -> tuple[str, ...]:
        off = set().union(*(groups for switch, groups in _SWITCHED_GROUPS.items()
                            if not getattr(self.config, switch)))
        return tuple(n for n in self.manifest.names if self.manifest.feature(n).group not in off)

    def _genomic_cache(self) -> Any:
        if self._genomic is None and self.config.use_cache and self.config.cache_dir:
            from .genome.cache import load_cached

            self._genomic = load_cached(self.config.cache_dir)
        return self._genomic


def create_optimized_enricher(verbose: bool = True, **config: Any) -> OptimizedInferenceEnricher:
    """An enricher with ``InferenceFeatureConfig(verbose=verbose, **config)``."""
    return OptimizedInferenceEnricher(InferenceFeatureConfig(verbose=verbose, **config))

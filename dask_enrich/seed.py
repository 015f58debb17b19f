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

from .columns import SEED_TRACK_COLUMNS, TRACK_COLUMNS
from .config import ContextTrackRule, EnrichConfig
from .core import enrich, impute_value
from .errors import InputError
from .features.registry import CONTEXT
from .io import check_columns, inspect_input, normalise_frame, read_pandas
from .manifest import Manifest, find_manifest, load_manifest
from .options import DEFAULT_CONTEXT_TRACK
from .validate import raise_for_bad_rows, split_bad_rows

#: A per-nucleotide base-model track: a frame, or a Parquet/CSV path (file, directory or glob).
Track = pd.DataFrame | str | Path

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
    track: the full per-nucleotide base-model track (gene_id, position, donor/acceptor/neither
    scores, optional strand), a frame or a path; the context features of positions without
    ``context_score_*`` columns are then taken from neighbouring nucleotides as the engine does
    (``context_track`` picks the donor/acceptor track per row). Without one they are imputed.
    """

    use_cache: bool = True
    cache_dir: str | None = None
    verbose: bool = False
    include_probability_features: bool = True
    include_genomic_features: bool = True
    include_kmer_features: bool = True
    include_context_features: bool = True
    missing: str = "impute"
    track: Track | None = None
    context_track: ContextTrackRule = DEFAULT_CONTEXT_TRACK


class _GeneTrack:
    """A track's rows grouped by gene (sorted once), checked as the engine checks a context track."""

    def __init__(self, track: Track):
        if isinstance(track, pd.DataFrame):
            self.kind, self.name = "track", "(DataFrame)"
            absent = [c for c in TRACK_COLUMNS if c != "gene_id" and c not in track.columns]
            if absent:
                raise InputError(f"track (DataFrame): missing required column(s) {', '.join(absent)}")
            frame = normalise_frame(track, "track", position_dtype=np.float64)
        else:
            source = inspect_input(str(track), label="track")
            check_columns(source, TRACK_COLUMNS)
            self.kind, self.name = "track file", str(track)
            columns = [c for c in SEED_TRACK_COLUMNS if source.has(c)]
            frame = read_pandas(source, columns)
        self.frame = frame  # sorted lazily: a frame without gene_id is one gene's track
        self._bounds: tuple[pd.Index, np.ndarray] | None = None

    def rows_of(self, gene_id: str) -> pd.DataFrame:
        """The gene's track rows (every row when the track has no gene_id column), checked."""
        if "gene_id" not in self.frame.columns:
            rows = self.frame.assign(gene_id=gene_id)
        else:
            if self._bounds is None:
                self.frame = self.frame.sort_values("gene_id", kind="stable", ignore_index=True)
                genes = self.frame["gene_id"].to_numpy(dtype=object)
                starts = np.flatnonzero(np.r_[len(genes) > 0, genes[1:] != genes[:-1]])
                self._bounds = pd.Index(genes[starts]), np.r_[starts, len(genes)]
            uniques, bounds = self._bounds
            i = uniques.get_indexer([gene_id])[0]
            rows = self.frame.iloc[bounds[i]:bounds[i + 1]] if i >= 0 else self.frame.iloc[:0]
        good, rejected, _ = split_bad_rows(rows, source=self.name)
        raise_for_bad_rows(rejected, self.name, kind=self.kind, hint="Fix the track's rows.")
        return good.assign(position=good["position"].to_numpy().astype(np.int64))


class OptimizedInferenceEnricher:
    """Per-gene feature generation with the seed's interface, computed by the core."""

    def __init__(self, config: InferenceFeatureConfig | None = None):
        self.config = config or InferenceFeatureConfig()
        self.manifest: Manifest | None = None
        self._genomic: Any = None
        self._track: tuple[Track, _GeneTrack] | None = None  # the last track seen, grouped by gene

    def load_feature_manifest(self, path: str | Path) -> list[str]:
        """Load the manifest (file or model directory); returns the feature names in order."""
        self.manifest = load_manifest(path)
        if self.config.verbose:
            log.info("loaded %d features from %s", len(self.manifest), self.manifest.source)
        return list(self.manifest.names)

    def generate_features_for_uncertain_positions(
        self, positions_df: pd.DataFrame, gene_id: str, model_path: str | Path | None = None,
        *, track: Track | None = None,
    ) -> pd.DataFrame:
        """Exactly the manifest's columns, in order, one row per input row (same index).

        track: the base-model track for context (this call's; else ``config.track``)."""
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
                                    track=self._track_rows(track, gene_id, manifest),
                                    config=EnrichConfig(missing=self.config.missing,
                                                        context_track=self.config.context_track))
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

    def _track_rows(self, track: Track | None, gene_id: str, manifest: Manifest) -> pd.DataFrame | None:
        track = self.config.track if track is None else track
        if track is None or not any(CONTEXT in f.requires for f in manifest.features):
            return None
        if self._track is None or self._track[0] is not track:
            self._track = (track, _GeneTrack(track))
        return self._track[1].rows_of(gene_id)

    def _genomic_cache(self) -> Any:
        if self._genomic is None and self.config.use_cache and self.config.cache_dir:
            from .genome.cache import load_cached

            self._genomic = load_cached(self.config.cache_dir)
        return self._genomic


def create_optimized_enricher(verbose: bool = True, **config: Any) -> OptimizedInferenceEnricher:
    """An enricher with ``InferenceFeatureConfig(verbose=verbose, **config)``."""
    return OptimizedInferenceEnricher(InferenceFeatureConfig(verbose=verbose, **config))

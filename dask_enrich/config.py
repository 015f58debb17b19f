"""Run configuration: one frozen dataclass shared by the core, the engine and the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

MissingPolicy = Literal["error", "impute"]
ContextTrackRule = Literal["larger", "donor", "acceptor"]
PositionCoordinates = Literal["genomic", "gene_relative"]

#: Half-width of the sequence window, in nucleotides (seq[i - 250 : i + 250] in gene coordinates).
SEQUENCE_FLANK = 250
#: The epsilon of every score formula in the spec.
EPS = 1e-10


@dataclass(frozen=True)
class EnrichConfig:
    """Settings of one enrichment run.

    missing: ``error`` stops when a manifest feature cannot be computed; ``impute`` fills it with the
        training median (from ``feature_stats.json``) or the documented constant, and reports it.
    context_track: which base-model track supplies context neighbours for a row when they come from
        a full track: ``larger`` (donor if donor_score >= acceptor_score, else acceptor), or a fixed
        ``donor``/``acceptor``.
    coordinates: ``genomic`` (1-based, as GTF) or ``gene_relative`` (MetaSpliceAI training rows:
        0-based offset from the gene's 5' end in transcript orientation), converted with the annotation.
    sequence_flank: half-width of the sequence window.
    """

    missing: MissingPolicy = "error"
    context_track: ContextTrackRule = "larger"
    coordinates: PositionCoordinates = "genomic"
    sequence_flank: int = SEQUENCE_FLANK
    keep_columns: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        from .errors import ConfigError

        if self.missing not in ("error", "impute"):
            raise ConfigError(f"missing must be 'error' or 'impute', not {self.missing!r}")
        if self.context_track not in ("larger", "donor", "acceptor"):
            raise ConfigError(
                f"context_track must be 'larger', 'donor' or 'acceptor', not {self.context_track!r}"
            )
        if self.coordinates not in ("genomic", "gene_relative"):
            raise ConfigError(
                f"coordinates must be 'genomic' or 'gene_relative', not {self.coordinates!r}"
            )
        if self.sequence_flank < 1:
            raise ConfigError(f"sequence_flank must be positive, not {self.sequence_flank}")

    def with_(self, **changes: object) -> "EnrichConfig":
        """A copy with some settings changed."""
        return replace(self, **changes)

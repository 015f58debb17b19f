"""Run configuration: one frozen dataclass shared by the core, the engine and the CLI.

:class:`EnrichConfig` and its choices are declared in :mod:`dask_enrich.options`; they stay
importable from here.
"""
from __future__ import annotations

from .options import (ContextTrackRule, EnrichConfig, MissingPolicy,  # noqa: F401 (re-exported)
                      PositionCoordinates, SEQUENCE_FLANK)

#: The epsilon of every score formula in the spec.
EPS = 1e-10

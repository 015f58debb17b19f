"""Score-derived features: probability, context summaries, per-type and cross-type (pure numpy).

Every formula is the spec's (``FEATURES.md``), with ``eps = 1e-10``. Only the requested columns are
computed; shared intermediates (max of the context, its mean, the signal strengths) once each.
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable, Iterable

import numpy as np

from ..config import EPS
from .registry import PER_TYPE_DOCS

PEAK_MIN_SCORE = 1e-3


class ScoreKernel:
    """Computes score-derived feature columns for one partition.

    d, a, n: donor, acceptor and neither scores; context: (m2, m1, p1, p2) arrays or None when the
    run has no context (then only context-free features can be asked for).
    """

    def __init__(self, d: np.ndarray, a: np.ndarray, n: np.ndarray,
                 context: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None):
        self.d, self.a, self.n = d, a, n
        self.context = context

    # --- shared intermediates --------------------------------------------------------------------
    @cached_property
    def max_da(self) -> np.ndarray:
        return np.maximum(self.d, self.a)

    @property
    def m2(self) -> np.ndarray:
        return self._ctx[0]

    @property
    def m1(self) -> np.ndarray:
        return self._ctx[1]

    @property
    def p1(self) -> np.ndarray:
        return self._ctx[2]

    @property
    def p2(self) -> np.ndarray:
        return self._ctx[3]

    @property
    def _ctx(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.context is None:
            raise ValueError("context scores are needed for this feature but none were given")
        return self.context

    @cached_property
    def log_d(self) -> np.ndarray:
        return np.log(self.d + EPS)

    @cached_property
    def log_a(self) -> np.ndarray:
        return np.log(self.a + EPS)

    @cached_property
    def log_n(self) -> np.ndarray:
        return np.log(self.n + EPS)

    @cached_property
    def near_context(self) -> np.ndarray:
        """0.1 m2 + 0.2 m1: the start of both weighted contexts (same order of operations)."""
        return 0.1 * self.m2 + 0.2 * self.m1

    @cached_property
    def mean4(self) -> np.ndarray:
        return (self.m2 + self.m1 + self.p1 + self.p2) / 4.0

    @cached_property
    def max4(self) -> np.ndarray:
        return np.maximum(np.maximum(self.m2, self.m1), np.maximum(self.p1, self.p2))

    def score(self, kind: str) -> np.ndarray:
        return self.d if kind == "donor" else self.a

    def signal_strength(self, kind: str) -> np.ndarray:
        return self._memo(f"{kind}_signal_strength")

    def peak_height_ratio(self, kind: str) -> np.ndarray:
        return self._memo(f"{kind}_peak_height_ratio")

    # --- columns ---------------------------------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        """The feature column called ``name``."""
        return self._memo(name)

    def _memo(self, name: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache:
            cache[name] = _FORMULAS[name](self)
        return cache[name]


def _entropy(k: ScoreKernel) -> np.ndarray:
    """-(d log(d+eps) + a log(a+eps) + n log(n+eps)), summed in place in that order."""
    out = k.d * k.log_d
    out += k.a * k.log_a
    out += k.n * k.log_n
    return np.negative(out, out=out)


def _weighted_context(k: ScoreKernel, s: np.ndarray) -> np.ndarray:
    """0.1 m2 + 0.2 m1 + 0.4 s + 0.2 p1 + 0.1 p2, added left to right in place."""
    out = 0.4 * s
    np.add(k.near_context, out, out=out)
    out += 0.2 * k.p1
    out += 0.1 * k.p2
    return out


_FORMULAS: dict[str, Callable[[ScoreKernel], np.ndarray]] = {
    "donor_score": lambda k: k.d,
    "acceptor_score": lambda k: k.a,
    "neither_score": lambda k: k.n,
    "relative_donor_probability": lambda k: k.d / (k.d + k.a + EPS),
    "splice_probability": lambda k: (k.d + k.a) / (k.d + k.a + k.n + EPS),
    "donor_acceptor_diff": lambda k: (k.d - k.a) / (k.max_da + EPS),
    "splice_neither_diff": lambda k: (k.max_da - k.n) / (np.maximum(k.max_da, k.n) + EPS),
    "donor_acceptor_logodds": lambda k: k.log_d - k.log_a,
    "splice_neither_logodds": lambda k: np.log(k.d + k.a + EPS) - k.log_n,
    "probability_entropy": _entropy,
    "context_score_m2": lambda k: k.m2,
    "context_score_m1": lambda k: k.m1,
    "context_score_p1": lambda k: k.p1,
    "context_score_p2": lambda k: k.p2,
    "context_neighbor_mean": lambda k: k.mean4,
    "context_asymmetry": lambda k: (k.m1 + k.m2) - (k.p1 + k.p2),
    "context_max": lambda k: k.max4,
    "donor_acceptor_peak_ratio": lambda k: k.peak_height_ratio("donor")
    / (k.peak_height_ratio("acceptor") + EPS),
    "type_signal_difference": lambda k: k.signal_strength("donor") - k.signal_strength("acceptor"),
    "score_difference_ratio": lambda k: (k.d - k.a) / (k.d + k.a + EPS),
    "signal_strength_ratio": lambda k: k.signal_strength("donor")
    / (k.signal_strength("acceptor") + EPS),
}


def _per_type(kind: str) -> dict[str, Callable[[ScoreKernel], np.ndarray]]:
    s = lambda k: k.score(kind)  # noqa: E731
    formulas: dict[str, Callable[[ScoreKernel], np.ndarray]] = {
        "diff_m1": lambda k: s(k) - k.m1,
        "diff_m2": lambda k: s(k) - k.m2,
        "diff_p1": lambda k: s(k) - k.p1,
        "diff_p2": lambda k: s(k) - k.p2,
        "surge_ratio": lambda k: s(k) / (k.m1 + k.p1 + EPS),
        "is_local_peak": lambda k: ((s(k) > k.m1) & (s(k) > k.p1) & (s(k) > PEAK_MIN_SCORE)).astype(
            np.int64
        ),
        "weighted_context": lambda k: _weighted_context(k, s(k)),
        "peak_height_ratio": lambda k: s(k) / (k.mean4 + EPS),
        "second_derivative": lambda k: (s(k) - k.m1) - (k.p1 - s(k)),
        "signal_strength": lambda k: s(k) - k.mean4,
        "context_diff_ratio": lambda k: s(k) / (k.max4 + EPS),
    }
    assert formulas.keys() == PER_TYPE_DOCS.keys()
    return {f"{kind}_{suffix}": f for suffix, f in formulas.items()}


_FORMULAS.update(_per_type("donor"))
_FORMULAS.update(_per_type("acceptor"))

#: Names of every score-derived feature this module computes.
SCORE_FEATURES = frozenset(_FORMULAS)


def score_features(names: Iterable[str], d: np.ndarray, a: np.ndarray, n: np.ndarray,
                   context: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
                   ) -> dict[str, np.ndarray]:
    """The requested score-derived columns (float64; ``*_is_local_peak`` int64)."""
    kernel = ScoreKernel(d, a, n, context)
    return {name: kernel.column(name) for name in names}

"""Score-derived features: base scores, probability, context, per-type and cross-type (pure numpy).

Every formula is the spec's (``FEATURES.md``), with ``eps = 1e-10``, declared here once with its
doc and kernel (:func:`score_kernel` for the features of the row's own scores,
:func:`context_kernel` for those that read the context neighbours). Only the requested columns
are computed; shared intermediates (max of the context, its mean, the signal strengths) once each.
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable, Iterable

import numpy as np

from ..config import EPS
from .registry import CONTEXT, CONTEXT_OFFSETS, FLOAT, INT, SCORES, Computed, declare

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


Formula = Callable[[ScoreKernel], np.ndarray]


def score_kernel(inputs, names: list[str]) -> Computed:
    """Features of the row's own base scores (every row computed)."""
    kernel = ScoreKernel(inputs.d, inputs.a, inputs.n)
    return Computed({name: kernel.column(name) for name in names})


def context_kernel(inputs, names: list[str]) -> Computed:
    """Features that read the context neighbours: from the positions' ``context_score_*`` columns,
    else the track; rows whose context is missing are computed on zeros and reported missing."""
    context, missing, reason = inputs.context()
    if missing.any():
        context = tuple(np.where(missing, 0.0, c) for c in context)
    kernel = ScoreKernel(inputs.d, inputs.a, inputs.n, context)
    return Computed({name: kernel.column(name) for name in names}, missing, reason)


_FORMULAS: dict[str, Formula] = {}


#: Groups of continuous values derived from the scores (ratios, differences, log-odds, entropy):
#: stored uncompressed (``Feature.compress``), as snappy leaves them at 0.94-1.0x of their size
#: (the demo track's real SpliceAI scores); the base scores, the context scores and the integer
#: peak flags compress (0.15-0.86x).
_DERIVED_GROUPS = frozenset({"probability", "donor_context", "acceptor_context", "cross_type"})


def _score(name: str, group: str, doc: str, formula: Formula, *, context: bool = False,
           dtype=FLOAT) -> None:
    declare(name, group, dtype, {SCORES, CONTEXT} if context else {SCORES}, doc,
            context_kernel if context else score_kernel,
            compress=not (group in _DERIVED_GROUPS and np.dtype(dtype) == FLOAT))
    _FORMULAS[name] = formula


def _context(name: str, doc: str, formula: Formula) -> None:
    declare(name, "context", FLOAT, {CONTEXT}, doc, context_kernel)
    _FORMULAS[name] = formula


# --- Base scores (3) -----------------------------------------------------------------------------
_score("donor_score", "base", "base-model donor score of the position", lambda k: k.d)
_score("acceptor_score", "base", "base-model acceptor score of the position", lambda k: k.a)
_score("neither_score", "base", "base-model neither score of the position", lambda k: k.n)

# --- Probability features (7) --------------------------------------------------------------------
_score("relative_donor_probability", "probability", "d / (d + a + eps)",
       lambda k: k.d / (k.d + k.a + EPS))
_score("splice_probability", "probability", "(d + a) / (d + a + n + eps)",
       lambda k: (k.d + k.a) / (k.d + k.a + k.n + EPS))
_score("donor_acceptor_diff", "probability", "(d - a) / (max(d, a) + eps)",
       lambda k: (k.d - k.a) / (k.max_da + EPS))
_score("splice_neither_diff", "probability", "(max(d, a) - n) / (max(d, a, n) + eps)",
       lambda k: (k.max_da - k.n) / (np.maximum(k.max_da, k.n) + EPS))
_score("donor_acceptor_logodds", "probability", "ln(d + eps) - ln(a + eps)",
       lambda k: k.log_d - k.log_a)
_score("splice_neither_logodds", "probability", "ln(d + a + eps) - ln(n + eps)",
       lambda k: np.log(k.d + k.a + EPS) - k.log_n)
_score("probability_entropy", "probability",
       "-sum of p * ln(p + eps) over p in (d, a, n), not renormalised", _entropy)

# --- Context scores (4) and their summaries (3) -------------------------------------------------
for _i, (_suffix, _offset) in enumerate(CONTEXT_OFFSETS.items()):
    _context(f"context_score_{_suffix}",
             f"base score of the nucleotide at offset {_offset:+d} in transcript orientation "
             "(0 outside the gene)", lambda k, i=_i: k._ctx[i])
_context("context_neighbor_mean", "mean of the four context scores", lambda k: k.mean4)
_context("context_asymmetry", "(m1 + m2) - (p1 + p2)", lambda k: (k.m1 + k.m2) - (k.p1 + k.p2))
_context("context_max", "max of the four context scores", lambda k: k.max4)


# --- Per-type features (11 for donor, 11 for acceptor; s = that type's score) --------------------
def _per_type(kind: str) -> None:
    s = lambda k: k.score(kind)  # noqa: E731
    for suffix, doc, formula in [
        ("diff_m1", "s - m1", lambda k: s(k) - k.m1),
        ("diff_m2", "s - m2", lambda k: s(k) - k.m2),
        ("diff_p1", "s - p1", lambda k: s(k) - k.p1),
        ("diff_p2", "s - p2", lambda k: s(k) - k.p2),
        ("surge_ratio", "s / (m1 + p1 + eps)", lambda k: s(k) / (k.m1 + k.p1 + EPS)),
        ("is_local_peak", "1 if s > m1 and s > p1 and s > 1e-3 else 0",
         lambda k: ((s(k) > k.m1) & (s(k) > k.p1) & (s(k) > PEAK_MIN_SCORE)).astype(np.int64)),
        ("weighted_context", "0.1*m2 + 0.2*m1 + 0.4*s + 0.2*p1 + 0.1*p2",
         lambda k: _weighted_context(k, s(k))),
        ("peak_height_ratio", "s / (mean4 + eps)", lambda k: s(k) / (k.mean4 + EPS)),
        ("second_derivative", "(s - m1) - (p1 - s)", lambda k: (s(k) - k.m1) - (k.p1 - s(k))),
        ("signal_strength", "s - mean4 (signed)", lambda k: s(k) - k.mean4),
        ("context_diff_ratio", "s / (max4 + eps)", lambda k: s(k) / (k.max4 + EPS)),
    ]:
        _score(f"{kind}_{suffix}", f"{kind}_context", f"{doc}, with s = {kind}_score", formula,
               context=True, dtype=INT if suffix == "is_local_peak" else FLOAT)


_per_type("donor")
_per_type("acceptor")

# --- Cross-type features (4) ---------------------------------------------------------------------
_score("donor_acceptor_peak_ratio", "cross_type",
       "donor_peak_height_ratio / (acceptor_peak_height_ratio + eps)",
       lambda k: k.peak_height_ratio("donor") / (k.peak_height_ratio("acceptor") + EPS), context=True)
_score("type_signal_difference", "cross_type", "donor_signal_strength - acceptor_signal_strength",
       lambda k: k.signal_strength("donor") - k.signal_strength("acceptor"), context=True)
_score("score_difference_ratio", "cross_type", "(d - a) / (d + a + eps)",
       lambda k: (k.d - k.a) / (k.d + k.a + EPS))
_score("signal_strength_ratio", "cross_type", "donor_signal_strength / (acceptor_signal_strength + eps)",
       lambda k: k.signal_strength("donor") / (k.signal_strength("acceptor") + EPS), context=True)

#: Names of every score-derived feature this module computes.
SCORE_FEATURES = frozenset(_FORMULAS)


def score_features(names: Iterable[str], d: np.ndarray, a: np.ndarray, n: np.ndarray,
                   context: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
                   ) -> dict[str, np.ndarray]:
    """The requested score-derived columns (float64; ``*_is_local_peak`` int64)."""
    kernel = ScoreKernel(d, a, n, context)
    return {name: kernel.column(name) for name in names}

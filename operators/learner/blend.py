"""Weighted sum of z-scored components over one candidate set.

Why z-scores: BPR margins, co-occurrence counts and log-popularity live on unrelated scales that
also drift as the stream grows; standardising per query over the candidates makes fixed weights
mean the same thing on the first day and the hundredth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from operators.learner.frozen import FrozenMap
from state_schemas.errors import ConfigError

# Tuned on MovieLens-100K replay: popularity mostly helps as a tie-breaker, hence its small weight.
DEFAULT_WEIGHTS: Mapping[str, float] = FrozenMap({"bpr": 1.0, "cooc": 1.0, "pop": 0.2})


def zscore(x: ArrayLike) -> NDArray[np.float64]:
    """(x - mean) / std; a constant component carries no ranking signal and becomes all zeros."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a.copy()
    d: NDArray[np.float64] = a - a.mean()
    sd = float(np.sqrt(d @ d / a.size))  # np.std does the same, several times slower on small arrays
    if not sd > 1e-12 or not np.isfinite(sd):
        return np.zeros_like(a)
    return d / sd


@dataclass(frozen=True, slots=True)
class Blend:
    """Weights per named component; `score` z-scores each over the candidates and sums.

    >>> Blend({"a": 1.0, "b": 0.5}).score({"a": [0.0, 1.0], "b": [4.0, 2.0]}).round(2).tolist()
    [-0.5, 0.5]
    """

    weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_WEIGHTS)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.weights.items() if not np.isfinite(v)}
        if bad:
            msg = f"Blend weights must be finite numbers, got {bad}; fix the blend settings."
            raise ConfigError(msg)
        object.__setattr__(self, "weights", FrozenMap(self.weights))

    def score(self, components: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
        """Blended scores; every component must be aligned on the same candidates.

        A component without a weight is an error (a typo would otherwise silently drop it);
        a weight without a component counts as zero (e.g. co-occurrence for a user with no history).
        """
        unknown = set(components) - set(self.weights)
        if unknown:
            msg = f"Blend: no weight for component(s) {sorted(unknown)}; known: {sorted(self.weights)}."
            raise ConfigError(msg)
        arrays = {name: np.asarray(v, dtype=np.float64) for name, v in components.items()}
        sizes = {a.size for a in arrays.values()}
        if len(sizes) > 1:
            msg = f"Blend: components differ in length {({n: a.size for n, a in arrays.items()})}."
            raise ConfigError(msg)
        n = sizes.pop() if sizes else 0
        out = np.zeros(n, dtype=np.float64)
        for name, a in arrays.items():
            w = self.weights[name]
            if w:
                out += w * zscore(a)
        return out

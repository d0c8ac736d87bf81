"""Exponentially decayed per-item counts in event time.

Why decayed: what is popular drifts; a half-life lets "popular now" win over "popular ever".
Why event time: replays and the live job must give the same numbers, so the clock is the
event timestamp passed in, never the wall clock. State per item is just `(value, last_ts)`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from state_schemas.errors import ConfigError

T = TypeVar("T", float, NDArray[np.float64])


def decay(value: T, last_ts: float | NDArray[np.float64], now_ts: float, half_life: float) -> T:
    """`value` as seen at `now_ts`, given it was last updated at `last_ts`.

    Exact exponential, so it composes: decay(decay(v, t0, t1), t1, t2) == decay(v, t0, t2).
    Works elementwise on numpy arrays (score every item at one `now_ts` in a single call).

    >>> decay(8.0, 0, 20, half_life=10)
    2.0
    """
    if not half_life > 0:
        msg = f"popularity: half_life must be > 0 seconds, got {half_life!r}."
        raise ConfigError(msg)
    factor: np.float64 | NDArray[np.float64] = np.exp2(-(np.subtract(now_ts, last_ts, dtype=np.float64)) / half_life)
    if isinstance(value, np.ndarray):
        return value * factor
    return float(value * factor)


def bump(value: float, last_ts: float, now_ts: float, half_life: float, weight: float = 1.0
         ) -> tuple[float, float]:
    """Add one event of `weight` at `now_ts`; returns the new `(value, last_ts)`.

    A late event (now_ts < last_ts) does not move the clock back: it adds its weight already
    decayed to `last_ts`, so the result is independent of arrival order.

    >>> bump(*bump(0.0, 0.0, 0.0, 10.0), 10.0, 10.0)
    (1.5, 10.0)
    """
    if now_ts >= last_ts:
        return decay(value, last_ts, now_ts, half_life) + weight, float(now_ts)
    return value + decay(weight, now_ts, last_ts, half_life), float(last_ts)


def log_popularity(values: NDArray[np.float64], last_ts: NDArray[np.float64], now_ts: float,
                   half_life: float) -> NDArray[np.float64]:
    """log1p of the decayed counts at `now_ts`: tames the heavy tail before z-scoring in a blend."""
    return np.log1p(decay(values, last_ts, now_ts, half_life))


def bump_many(values: NDArray[np.float64], last_ts: NDArray[np.float64], items: NDArray[np.integer[Any]],
              ts: NDArray[np.floating[Any]], weights: NDArray[np.floating[Any]], half_life: float) -> NDArray[np.int64]:
    """`bump` for a whole batch of events at once, in place; returns the distinct items it changed.

    The result does not depend on the order of the events (`bump` is order-independent), so a batch
    is applied as: clock = max(its clock, the newest event of the item), value decayed to the clock
    plus every event's weight decayed to the clock. Equal to applying `bump` event by event, up to
    float rounding.

    >>> v, t = np.zeros(2), np.zeros(2)
    >>> bump_many(v, t, np.array([1, 1]), np.array([0.0, 10.0]), np.array([1.0, 1.0]), 10.0).tolist()
    [1]
    >>> v.tolist(), t.tolist()
    ([0.0, 1.5], [0.0, 10.0])
    """
    if not half_life > 0:
        msg = f"popularity: half_life must be > 0 seconds, got {half_life!r}."
        raise ConfigError(msg)
    uniq, inv = np.unique(items, return_inverse=True)
    newest = np.full(uniq.shape[0], -np.inf)
    np.maximum.at(newest, inv, ts)
    clock = np.maximum(last_ts[uniq], newest)
    added = np.bincount(inv, weights=weights * np.exp2((ts - clock[inv]) / half_life), minlength=uniq.shape[0])
    values[uniq] = values[uniq] * np.exp2((last_ts[uniq] - clock) / half_life) + added
    last_ts[uniq] = clock
    out: NDArray[np.int64] = uniq.astype(np.int64)
    return out

"""Incremental item-item co-occurrence from each user's recent items.

Why: "people who just watched X also watched Y" reacts to a new interaction at once, with no
training, and complements the slower-moving embeddings. Sharding: the counts of item i (its row
and its own count) live with item i. An update is a set of `(owner, partner, weight)` increments,
so a user-keyed stage can emit them keyed by owner and an item-keyed stage can apply its own.
Scoring reads the rows of the user's last few items and sums them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from state_schemas.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CoocParams:
    """Windows and normalisation of the co-occurrence scorer."""

    window: int = 10
    """How many of the user's previous items pair with a new item when counting."""
    score_window: int = 5
    """How many of the user's most recent items are summed when scoring."""
    recency: float = 0.8
    """Weight multiplier per step back in the scoring window (1.0 = all equal)."""
    alpha: float = 0.5
    """Candidate x's summed score is divided by count(x)**alpha (0 = raw counts, 0.5 = cosine-like)."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.score_window < 1:
            msg = (f"CoocParams windows must be >= 1, "
                   f"got window={self.window}, score_window={self.score_window}.")
            raise ConfigError(msg)
        if not 0.0 < self.recency <= 1.0 or not 0.0 <= self.alpha <= 1.0:
            msg = f"CoocParams: need 0 < recency <= 1 and 0 <= alpha <= 1, got {self.recency}, {self.alpha}."
            raise ConfigError(msg)


def partners(recent_items: Sequence[int], new_item: int, window: int) -> list[int]:
    """Distinct items among the last `window` of `recent_items`, excluding `new_item`, oldest first."""
    out: dict[int, None] = {}
    for j in recent_items[-window:]:
        if j != new_item:
            out.pop(j, None)
            out[int(j)] = None
    return list(out)


def pair_messages(
    recent_items: Sequence[int], new_item: int, window: int, weight: float = 1.0
) -> list[tuple[int, int, float]]:
    """`(owner, partner, weight)` increments for one new interaction, both directions.

    Row `new_item` gains every partner and every partner's row gains `new_item`, so the matrix
    stays symmetric although each row is only ever written by its owner.
    """
    out: list[tuple[int, int, float]] = []
    for j in partners(recent_items, new_item, window):
        out.append((int(new_item), j, weight))
        out.append((j, int(new_item), weight))
    return out


def apply_pairs(row: Mapping[int, float], increments: Iterable[tuple[int, float]]) -> dict[int, float]:
    """Item-side: the owner's row after adding `(partner, weight)` increments (input untouched)."""
    out = dict(row)
    for partner, w in increments:
        out[partner] = out.get(partner, 0.0) + w
    return out


def recency_weights(n: int, recency: float) -> NDArray[np.float64]:
    """Weights for the last `n` items, oldest first: recency**(n-1), ..., recency, 1."""
    return np.power(recency, np.arange(n - 1, -1, -1, dtype=np.float64))


class CoOccurrence:
    """Reference, shard-friendly form: one sparse row (dict) and one count per item.

    This is the shape the item-keyed operator keeps per key; `DenseCoOccurrence` computes the same
    numbers with a matrix for fast offline replay.
    """

    def __init__(self, params: CoocParams) -> None:
        self.params = params
        self._rows: dict[int, dict[int, float]] = {}
        self._counts: dict[int, float] = {}

    def update(self, recent_items: Sequence[int], new_item: int, weight: float = 1.0) -> None:
        """Count `new_item` against the user's recent items (call before appending it to them)."""
        by_owner: dict[int, list[tuple[int, float]]] = {}
        for owner, partner, w in pair_messages(recent_items, new_item, self.params.window, weight):
            by_owner.setdefault(owner, []).append((partner, w))
        for owner, incs in by_owner.items():
            self._rows[owner] = apply_pairs(self._rows.get(owner, {}), incs)
        self._counts[int(new_item)] = self._counts.get(int(new_item), 0.0) + weight

    def row(self, item: int) -> Mapping[int, float]:
        """Co-occurrence counts of `item` with every partner seen so far."""
        return self._rows.get(int(item), {})

    def count(self, item: int) -> float:
        """Total interaction weight of `item` (for the `alpha` normalisation)."""
        return self._counts.get(int(item), 0.0)

    def scores(self, recent_items: Sequence[int]) -> dict[int, float]:
        """Score of every item co-occurring with the user's last `score_window` items."""
        recent = list(recent_items[-self.params.score_window :])
        out: dict[int, float] = {}
        for w, j in zip(recency_weights(len(recent), self.params.recency), recent, strict=True):
            for x, c in self.row(j).items():
                out[x] = out.get(x, 0.0) + float(w) * c
        if self.params.alpha:
            out = {x: s / max(self.count(x), 1.0) ** self.params.alpha for x, s in out.items()}
        return out


class DenseCoOccurrence:
    """Same numbers as `CoOccurrence` on a dense matrix over item indices (offline replay only).

    Memory is quadratic in the number of items: fine for MovieLens-sized catalogues.
    """

    def __init__(self, params: CoocParams, capacity: int = 1024) -> None:
        self.params = params
        self._m = np.zeros((capacity, capacity), dtype=np.float32)
        self._counts = np.zeros(capacity, dtype=np.float64)

    @property
    def capacity(self) -> int:
        """Number of item indices the matrix currently holds."""
        rows: int = self._m.shape[0]
        return rows

    def _grow(self, n: int) -> None:
        if n <= self.capacity:
            return
        cap = max(n, 2 * self.capacity)
        m = np.zeros((cap, cap), dtype=np.float32)
        m[: self.capacity, : self.capacity] = self._m
        counts = np.zeros(cap, dtype=np.float64)
        counts[: self.capacity] = self._counts
        self._m, self._counts = m, counts

    def update(self, recent_items: Sequence[int], new_item: int, weight: float = 1.0) -> None:
        """Count `new_item` against the user's recent items (call before appending it to them)."""
        ps = partners(recent_items, new_item, self.params.window)
        self._grow(max([new_item, *ps]) + 1)
        if ps:
            idx = np.asarray(ps, dtype=np.int64)
            self._m[new_item, idx] += np.float32(weight)
            self._m[idx, new_item] += np.float32(weight)
        self._counts[new_item] += weight

    def row(self, item: int) -> Mapping[int, float]:
        """Non-zero counts of `item`'s row, as `CoOccurrence.row` returns them."""
        if item >= self.capacity:
            return {}
        r = self._m[item]
        return {int(x): float(r[x]) for x in np.flatnonzero(r)}

    def scores(self, recent_items: Sequence[int], n_items: int | None = None) -> NDArray[np.float64]:
        """Scores of items `[0, n_items)` (default: capacity) against the user's recent items."""
        n = self.capacity if n_items is None else n_items
        self._grow(n)
        recent = np.asarray(list(recent_items[-self.params.score_window :]), dtype=np.int64)
        if recent.size == 0:
            return np.zeros(n, dtype=np.float64)
        w = recency_weights(recent.size, self.params.recency)
        out = w @ self._m[recent, :n].astype(np.float64)
        if self.params.alpha:
            out /= np.maximum(self._counts[:n], 1.0) ** self.params.alpha
        return out

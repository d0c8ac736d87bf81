"""Co-occurrence cells of one index shard: owner ordinal x partner, summed weights, added to in bulk.

Pure: no pyflink import. Why not a dict of dicts (release 0.2): a batch adds thousands of increments,
and a Python loop over them cost more than the rest of the index stage. Here a batch's increments are
summed per cell with numpy (`add`), and only the distinct cells touch Python dictionaries: one lookup per
distinct cell, one insert per new one.

Layout: cell ``slot`` holds (owner, partner, value) in three growable arrays; ``slot_of`` maps
``owner << 32 | partner`` to the slot; ``rows[partner]`` lists the partner's slots in the order they were
created, so scoring a seed reads one row (`row`). Owners are the shard's item ordinals, partners are
ordinals of ``partners`` (any item, owned by this shard or not).

>>> c = Cells()
>>> p = c.partner_ordinals(["a", "b"])
>>> c.add(np.array([0, 0, 1]), p[[0, 0, 1]], np.array([1.0, 2.0, 0.5])).tolist()
[0, 1]
>>> owners, values = c.row("a")
>>> owners.tolist(), values.tolist()
([0], [3.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

_SHIFT = np.int64(32)
_LOW = np.int64(0xFFFFFFFF)


class Cells:
    """Sparse owner x partner matrix of summed co-occurrence weights."""

    __slots__ = ("partners", "ppos", "slot_of", "owner", "partner", "value", "n", "rows", "_row_cache")

    def __init__(self) -> None:
        """No cells."""
        self.partners: list[str] = []
        self.ppos: dict[str, int] = {}
        self.slot_of: dict[int, int] = {}
        self.owner = np.zeros(1024, dtype=np.int32)
        self.partner = np.zeros(1024, dtype=np.int32)
        self.value = np.zeros(1024, dtype=np.float64)
        self.n = 0
        self.rows: list[list[int]] = []
        self._row_cache: dict[int, NDArray[np.int64]] = {}  # partner -> its slots as an array, until it grows

    def __len__(self) -> int:
        """Number of cells."""
        return self.n

    def partner_ordinals(self, ids: Sequence[str]) -> NDArray[np.int64]:
        """Ordinals of partner ids (new ones are added)."""
        out = np.empty(len(ids), dtype=np.int64)
        ppos = self.ppos
        for j, pid in enumerate(ids):
            p = ppos.get(pid)
            if p is None:
                p = ppos[pid] = len(self.partners)
                self.partners.append(pid)
                self.rows.append([])
            out[j] = p
        return out

    def _grow(self, need: int) -> None:
        cap = self.owner.shape[0]
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        self.owner = np.resize(self.owner, cap)
        self.partner = np.resize(self.partner, cap)
        self.value = np.resize(self.value, cap)
        self.value[self.n :] = 0.0

    def add(self, owners: NDArray[np.integer[Any]], partners: NDArray[np.integer[Any]],
            weights: NDArray[np.floating[Any]]) -> NDArray[np.int64]:
        """Add ``weights`` to the cells (owner, partner); returns the distinct slots changed, ascending key."""
        if owners.size == 0:
            return np.zeros(0, dtype=np.int64)
        keys = (owners.astype(np.int64) << _SHIFT) | partners.astype(np.int64)
        uk, inv = np.unique(keys, return_inverse=True)
        sums = np.bincount(inv, weights=weights, minlength=uk.shape[0])
        get = self.slot_of.get
        slots = np.fromiter((get(k, -1) for k in uk.tolist()), dtype=np.int64, count=uk.shape[0])
        new = np.flatnonzero(slots < 0)
        if new.size:
            start = self.n
            self._grow(start + new.size)
            fresh = np.arange(start, start + new.size, dtype=np.int64)
            slots[new] = fresh
            nk = uk[new]
            nparts = nk & _LOW
            self.owner[start : start + new.size] = nk >> _SHIFT
            self.partner[start : start + new.size] = nparts
            self.slot_of.update(zip(nk.tolist(), fresh.tolist(), strict=True))
            rows, cache = self.rows, self._row_cache
            for s, p in zip(fresh.tolist(), nparts.tolist(), strict=True):
                rows[p].append(s)
                cache.pop(p, None)
            self.n = start + new.size
        self.value[slots] += sums
        return slots

    def set(self, owners: NDArray[np.integer[Any]], partners: NDArray[np.integer[Any]],
            values: NDArray[np.floating[Any]]) -> None:
        """Set cells to ``values`` (restore); the last value of a cell given twice wins."""
        if owners.size == 0:
            return
        keys = (owners.astype(np.int64) << _SHIFT) | partners.astype(np.int64)
        # last occurrence of each key: unique over the reversed keys gives first-in-reverse
        uk, first = np.unique(keys[::-1], return_index=True)
        vals = np.asarray(values, dtype=np.float64)[::-1][first]
        slots = self.add(uk >> _SHIFT, uk & _LOW, np.zeros(uk.shape[0]))
        self.value[slots] = vals

    def row(self, partner_id: str) -> tuple[NDArray[np.int32], NDArray[np.float64]] | None:
        """(owner ordinals, values) of the cells whose partner is ``partner_id``; None when it has none."""
        p = self.ppos.get(partner_id)
        if p is None or not self.rows[p]:
            return None
        idx = self._row_cache.get(p)
        if idx is None:
            idx = self._row_cache[p] = np.array(self.rows[p], dtype=np.int64)
        return self.owner[idx], self.value[idx]

    def triples(self, slots: NDArray[np.int64] | None = None) -> tuple[NDArray[np.int32], NDArray[np.int32],
                                                                       NDArray[np.float64]]:
        """(owner ordinals, partner ordinals, values) of ``slots`` (default: every cell, in slot order)."""
        if slots is None:
            return self.owner[: self.n].copy(), self.partner[: self.n].copy(), self.value[: self.n].copy()
        return self.owner[slots], self.partner[slots], self.value[slots]

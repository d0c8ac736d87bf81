"""Co-occurrence cells of one index shard: owner ordinal x partner, summed weights, added to in bulk.

Pure: no pyflink import. Why not a dict of dicts (release 0.2): a batch adds thousands of increments,
and a Python loop over them cost more than the rest of the index stage. Here everything is numpy: a
batch's increments are summed per cell (`np.unique` + `np.bincount`), looked up in a sorted key array
(`np.searchsorted`) and new cells merged into it (`np.insert`, a memory move, no sort).

Layout: cell ``slot`` holds (owner, partner, value) in three growable arrays, slots in creation order.
``keys`` is sorted and holds ``partner << 32 | owner`` of every cell, ``slots`` the slot of each key, so
the cells of one partner are one contiguous run of ``keys`` (`row`: two binary searches). Owners are
the shard's item ordinals, partners ordinals of ``partners`` (any item, owned by this shard or not).

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

    __slots__ = ("partners", "ppos", "owner", "partner", "value", "n", "keys", "slots")

    def __init__(self) -> None:
        """No cells."""
        self.partners: list[str] = []
        self.ppos: dict[str, int] = {}
        self.owner = np.zeros(1024, dtype=np.int32)
        self.partner = np.zeros(1024, dtype=np.int32)
        self.value = np.zeros(1024, dtype=np.float64)
        self.n = 0
        self.keys = np.zeros(0, dtype=np.int64)  # sorted partner << 32 | owner of every cell
        self.slots = np.zeros(0, dtype=np.int64)  # slot of each key

    def __len__(self) -> int:
        """Number of cells."""
        return self.n

    def partner_ordinals(self, ids: Sequence[str]) -> NDArray[np.int64]:
        """Ordinals of partner ids (new ones are added)."""
        ppos = self.ppos
        got = [ppos.get(pid, -1) for pid in ids]
        out = np.array(got, dtype=np.int64)
        for j in np.flatnonzero(out < 0).tolist():
            pid = ids[j]
            p = ppos.get(pid)  # an id given twice is added once
            if p is None:
                p = ppos[pid] = len(self.partners)
                self.partners.append(pid)
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
        """Add ``weights`` to the cells (owner, partner); returns the distinct slots changed, by key."""
        if owners.size == 0:
            return np.zeros(0, dtype=np.int64)
        keys = (partners.astype(np.int64) << _SHIFT) | owners.astype(np.int64)
        uk, inv = np.unique(keys, return_inverse=True)
        sums = np.bincount(inv.reshape(-1), weights=weights, minlength=uk.shape[0])
        at = np.asarray(np.searchsorted(self.keys, uk), dtype=np.int64)
        known = at < self.keys.shape[0]
        known[known] = self.keys[at[known]] == uk[known]
        slots = np.empty(uk.shape[0], dtype=np.int64)
        slots[known] = self.slots[at[known]]
        new = np.flatnonzero(~known)
        if new.size:
            start = self.n
            self._grow(start + new.size)
            fresh = np.arange(start, start + new.size, dtype=np.int64)
            slots[new] = fresh
            nk = uk[new]
            self.owner[start : start + new.size] = nk & _LOW
            self.partner[start : start + new.size] = nk >> _SHIFT
            self.keys = np.insert(self.keys, at[new], nk)  # nk is sorted: one merge, no sort
            self.slots = np.insert(self.slots, at[new], fresh)
            self.n = start + new.size
        self.value[slots] += sums
        return slots

    def set(self, owners: NDArray[np.integer[Any]], partners: NDArray[np.integer[Any]],
            values: NDArray[np.floating[Any]]) -> None:
        """Set cells to ``values`` (restore); the last value of a cell given twice wins."""
        if owners.size == 0:
            return
        keys = (partners.astype(np.int64) << _SHIFT) | owners.astype(np.int64)
        # last occurrence of each key: unique over the reversed keys gives first-in-reverse
        uk, first = np.unique(keys[::-1], return_index=True)
        vals = np.asarray(values, dtype=np.float64)[::-1][first]
        slots = self.add(uk & _LOW, uk >> _SHIFT, np.zeros(uk.shape[0]))
        self.value[slots] = vals

    def row(self, partner_id: str) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
        """(owner ordinals, values) of the cells whose partner is ``partner_id``; None when it has none."""
        p = self.ppos.get(partner_id)
        if p is None:
            return None
        lo, hi = np.searchsorted(self.keys, [p << 32, (p + 1) << 32])
        if lo == hi:
            return None
        return self.keys[lo:hi] & _LOW, self.value[self.slots[lo:hi]]

    def triples(self, slots: NDArray[np.int64] | None = None) -> tuple[NDArray[np.int32], NDArray[np.int32],
                                                                       NDArray[np.float64]]:
        """(owner ordinals, partner ordinals, values) of ``slots`` (default: every cell, in slot order)."""
        if slots is None:
            return self.owner[: self.n].copy(), self.partner[: self.n].copy(), self.value[: self.n].copy()
        return self.owner[slots], self.partner[slots], self.value[slots]

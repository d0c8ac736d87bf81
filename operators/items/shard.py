"""The item stage as one pure step over a batch of coalesced gradients.

No pyflink import. The Flink adapter (`operators.items.flink`) keys the stage by *item shard* (crc32 of
the item id modulo ``item_shards``); each call brings one `GradBatch` from one user-shard batch: the
gradients of that batch summed per item. `ItemShard.apply` applies them to all its items in one
vectorised `apply_coalesced` (the same function the user stage applies to its local replica), so one
record per item shard per user batch replaces one record per gradient.

Each item's ``seq`` grows by one per applied batch that touched it (it orders the item's Cassandra
writes and the feedback: consumers keep the higher seq); ``update_count`` counts the gradients summed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import NDArray

from operators.items.logic import initial_item
from operators.learner.bpr import BPRParams
from operators.learner.bpr_batch import CoalescedGrads, apply_coalesced
from operators.profile.embedding import ItemTable
from state_schemas.batches import GradBatch
from state_schemas.codec import NO_TS
from state_schemas.item_cols import ItemCols
from state_schemas.item_vector import ItemVector


class ItemShard:
    """One item shard's vectors (an `ItemTable`, as the user stage's replica uses) with their bookkeeping."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.table = ItemTable(dim)
        self.seq = np.zeros(1024, dtype=np.uint64)
        self.updates = np.zeros(1024, dtype=np.uint64)
        self.updated_ts = np.full(1024, NO_TS, dtype=np.int64)
        self.hydrated = 0  # items whose state came from `apply`'s hydrate

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        """Item ids in row order."""
        return self.table.ids

    def _row(self, item_id: str, vec: NDArray[np.float32], bias: float) -> int:
        i = self.table.upsert(item_id, vec, bias)
        if i >= self.seq.shape[0]:
            cap = max(2 * self.seq.shape[0], i + 1)
            self.seq, self.updates = np.resize(self.seq, cap), np.resize(self.updates, cap)
            self.updated_ts = np.resize(self.updated_ts, cap)
        return i

    def put(self, item_id: str, v: ItemVector) -> int:
        """Insert or replace one item's state; returns its row."""
        i = self._row(item_id, v.as_array(), v.bias)
        self.seq[i], self.updates[i], self.updated_ts[i] = v.seq, v.update_count, v.updated_ts
        return i

    def put_cols(self, c: ItemCols) -> None:
        """Insert or replace the states of a batch of items (a restore from `state_schemas.item_cols`)."""
        for j, item_id in enumerate(c.ids):
            i = self._row(item_id, c.vecs[j], float(c.bias[j]))
            self.seq[i], self.updates[i], self.updated_ts[i] = c.seq[j], c.update_count[j], c.updated_ts[j]

    def cols(self, rows: NDArray[np.int64]) -> ItemCols:
        """These rows' states as columns (feedback records, the state log)."""
        t, ids = self.table, self.table.ids
        return ItemCols(tuple(ids[i] for i in rows.tolist()), self.seq[rows], self.updates[rows],
                        self.updated_ts[rows], t.biases[rows].astype(np.float64), t.vecs[rows])

    def rows_of(self, item_ids: list[str]) -> NDArray[np.int64]:
        """Rows of items this shard holds."""
        index = self.table.index
        return np.fromiter((index[i] for i in item_ids), dtype=np.int64, count=len(item_ids))

    def state(self, item_id: str) -> ItemVector:
        """The item's state as its versioned value (Cassandra rows, tools and tests)."""
        i, t = self.table.index[item_id], self.table
        return ItemVector.from_array(t.vecs[i], bias=float(t.biases[i]), update_count=int(self.updates[i]),
                                     seq=int(self.seq[i]), updated_ts=int(self.updated_ts[i]))

    def apply(self, params: BPRParams, g: GradBatch, seed: int,
              hydrate: Callable[[list[str]], Mapping[str, ItemVector]] | None = None) -> NDArray[np.int64]:
        """Apply one batch of coalesced gradients; returns the rows it changed, ascending.

        An item without state starts from what ``hydrate`` (the adapter's Cassandra read, asked once per
        batch for all such items) returns for it, else from `initial_item`; ``hydrated`` counts the former.
        """
        index = self.table.index
        missing = [i for i in g.item_ids if i not in index]
        if missing:
            found = hydrate(missing) if hydrate is not None else {}
            for item_id in missing:
                v = found.get(item_id)
                if v is not None:
                    self.hydrated += 1
                self.put(item_id, v if v is not None else initial_item(params, item_id, seed))
        rows = self.rows_of(g.item_ids)
        order = np.argsort(rows)  # apply_coalesced takes ascending rows
        rows = rows[order]
        apply_coalesced(params, self.table.vecs, self.table.biases,
                        CoalescedGrads(rows, np.asarray(g.vec, np.float32)[order],
                                       np.asarray(g.bias, np.float32)[order], np.asarray(g.count, np.int64)[order]))
        self.seq[rows] += np.uint64(1)
        self.updates[rows] += np.asarray(g.count, np.uint64)[order]
        self.updated_ts[rows] = np.maximum(self.updated_ts[rows], np.int64(g.ts))
        return rows

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

from operators.items.logic import initial_item
from operators.learner.bpr import BPRParams
from operators.learner.bpr_batch import CoalescedGrads, apply_coalesced
from operators.profile.embedding import ItemTable
from state_schemas import item_vector_v1
from state_schemas.batches import GradBatch
from state_schemas.codec import NO_TS
from state_schemas.item_vector import ItemVector


class ItemShard:
    """One item shard's vectors (an `ItemTable`, as the user stage's replica uses) with their bookkeeping."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.table = ItemTable(dim)
        self.seq: list[int] = []
        self.updates: list[int] = []
        self.updated_ts: list[int] = []
        self.hydrated = 0  # items whose state came from `apply`'s hydrate

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        """Item ids in row order."""
        return self.table.ids

    def put(self, item_id: str, v: ItemVector) -> int:
        """Insert or replace one item's state; returns its row."""
        i = self.table.upsert(item_id, v.as_array(), v.bias)
        if i == len(self.seq):
            self.seq.append(0)
            self.updates.append(0)
            self.updated_ts.append(NO_TS)
        self.seq[i], self.updates[i], self.updated_ts[i] = v.seq, v.update_count, v.updated_ts
        return i

    def blob(self, item_id: str) -> bytes:
        """The item's keyed-state bytes, straight from the arrays (`item_vector.encode` of `state`, faster)."""
        i, t = self.table.index[item_id], self.table
        return item_vector_v1.pack(self.seq[i], self.updates[i], self.updated_ts[i], float(t.biases[i]), t.vecs[i])

    def state(self, item_id: str) -> ItemVector:
        """The item's state as its versioned value (for keyed state, feedback and Cassandra)."""
        i, t = self.table.index[item_id], self.table
        return ItemVector.from_array(t.vecs[i], bias=float(t.biases[i]), update_count=self.updates[i],
                                     seq=self.seq[i], updated_ts=self.updated_ts[i])

    def apply(self, params: BPRParams, g: GradBatch, seed: int,
              hydrate: Callable[[list[str]], Mapping[str, ItemVector]] | None = None) -> list[str]:
        """Apply one batch of coalesced gradients; returns the items it changed.

        An item without state starts from what ``hydrate`` (the adapter's Cassandra read, asked once per
        batch for all such items) returns for it, else from `initial_item`; ``hydrated`` counts the former.
        """
        missing = [i for i in g.item_ids if i not in self.table.index]
        found = hydrate(missing) if hydrate is not None and missing else {}
        rows = np.empty(len(g.item_ids), dtype=np.int64)
        for j, item_id in enumerate(g.item_ids):
            i = self.table.index.get(item_id)
            if i is None:
                v = found.get(item_id)
                if v is not None:
                    self.hydrated += 1
                i = self.put(item_id, v if v is not None else initial_item(params, item_id, seed))
            rows[j] = i
        order = np.argsort(rows)  # apply_coalesced takes ascending rows
        apply_coalesced(params, self.table.vecs, self.table.biases,
                        CoalescedGrads(rows[order], np.asarray(g.vec, np.float32)[order],
                                       np.asarray(g.bias, np.float32)[order], np.asarray(g.count, np.int64)[order]))
        for j, i in enumerate(rows.tolist()):
            self.seq[i] += 1
            self.updates[i] += int(g.count[j])
            if g.ts > self.updated_ts[i]:
                self.updated_ts[i] = g.ts
        return list(g.item_ids)

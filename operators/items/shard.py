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

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from operators.items.logic import initial_item
from operators.learner.bpr import BPRParams
from operators.learner.bpr_batch import CoalescedGrads, apply_coalesced
from state_schemas import item_vector_v1
from state_schemas.batches import GradBatch
from state_schemas.codec import NO_TS
from state_schemas.item_vector import ItemVector


@dataclass(slots=True)
class ItemShard:
    """Dense arrays of one item shard's vectors, with their bookkeeping."""

    dim: int
    ids: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    vecs: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    biases: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    seq: list[int] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    updated_ts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.vecs.shape != (len(self.ids), self.dim):
            self.vecs = np.zeros((max(len(self.ids), 64), self.dim), np.float32)
            self.biases = np.zeros(self.vecs.shape[0], np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def put(self, item_id: str, v: ItemVector) -> int:
        """Insert or replace one item's state; returns its row."""
        i = self.index.get(item_id)
        if i is None:
            i = len(self.ids)
            if i == self.vecs.shape[0]:
                self.vecs = np.concatenate([self.vecs, np.zeros_like(self.vecs)])
                self.biases = np.concatenate([self.biases, np.zeros_like(self.biases)])
            self.ids.append(item_id)
            self.index[item_id] = i
            self.seq.append(0)
            self.updates.append(0)
            self.updated_ts.append(NO_TS)
        self.vecs[i] = v.as_array()
        self.biases[i] = v.bias
        self.seq[i], self.updates[i], self.updated_ts[i] = v.seq, v.update_count, v.updated_ts
        return i

    def blob(self, item_id: str) -> bytes:
        """The item's keyed-state bytes, straight from the arrays (`item_vector.encode` of `state`, faster)."""
        i = self.index[item_id]
        return item_vector_v1.pack(self.seq[i], self.updates[i], self.updated_ts[i], float(self.biases[i]),
                                   self.vecs[i])

    def state(self, item_id: str) -> ItemVector:
        """The item's state as its versioned value (for keyed state, feedback and Cassandra)."""
        i = self.index[item_id]
        return ItemVector.from_array(self.vecs[i], bias=float(self.biases[i]), update_count=self.updates[i],
                                     seq=self.seq[i], updated_ts=self.updated_ts[i])

    def apply(self, params: BPRParams, g: GradBatch, seed: int) -> list[str]:
        """Apply one batch of coalesced gradients; returns the items it changed."""
        rows = np.empty(len(g.item_ids), dtype=np.int64)
        for j, item_id in enumerate(g.item_ids):
            i = self.index.get(item_id)
            if i is None:
                i = self.put(item_id, initial_item(params, item_id, seed))
            rows[j] = i
        order = np.argsort(rows)  # apply_coalesced takes ascending rows
        apply_coalesced(params, self.vecs, self.biases,
                        CoalescedGrads(rows[order], np.asarray(g.vec, np.float32)[order],
                                       np.asarray(g.bias, np.float32)[order], np.asarray(g.count, np.int64)[order]))
        for j, i in enumerate(rows.tolist()):
            self.seq[i] += 1
            self.updates[i] += int(g.count[j])
            if g.ts > self.updated_ts[i]:
                self.updated_ts[i] = g.ts
        return list(g.item_ids)

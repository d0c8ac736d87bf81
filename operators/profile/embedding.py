"""User-side online learning: one weighted BPR step per interaction, against a local item table.

Why a local table: item vectors are learned in the item stage (keyed by item); the user stage only
sees them through the `item-vectors` feedback (broadcast), so it works on a copy that is at most one
feedback round trip (≈ one checkpoint interval, the sink is transactional) behind. The step's item
gradients go back to the item stage as `ItemUpdate`s.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from operators.items.logic import initial_item
from operators.learner.bpr import BPRParams, bpr_user_step, init_vector, key_rng
from state_schemas.messages import ItemUpdate

USER_NAMESPACE = "user"


class ItemTable:
    """item_id → (vector, bias), dense and growable, for fast lookups and negative sampling."""

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.vecs = np.zeros((capacity, dim), dtype=np.float32)
        self.biases = np.zeros(capacity, dtype=np.float32)
        self.crc = np.zeros(capacity, dtype=np.uint32)  # crc32 of each id: shards of rows without rehashing

    def __len__(self) -> int:
        return len(self.ids)

    def shards_of(self, rows: NDArray[np.int64], shards: int) -> NDArray[np.int64]:
        """The item shard of each row (`operators.items.logic.item_shard`, vectorised)."""
        if shards == 1:
            return np.zeros(rows.shape[0], dtype=np.int64)
        return (self.crc[rows] % np.uint32(shards)).astype(np.int64)

    def upsert(self, item_id: str, vec: NDArray[np.float32], bias: float) -> int:
        """Insert or replace an item's vector; return its dense index."""
        i = self.index.get(item_id)
        if i is None:
            i = len(self.ids)
            if i == self.vecs.shape[0]:
                self.vecs = np.concatenate([self.vecs, np.zeros_like(self.vecs)])
                self.biases = np.concatenate([self.biases, np.zeros_like(self.biases)])
                self.crc = np.concatenate([self.crc, np.zeros_like(self.crc)])
            self.ids.append(item_id)
            self.index[item_id] = i
            self.crc[i] = zlib.crc32(item_id.encode())
        self.vecs[i] = vec
        self.biases[i] = bias
        return i


def upsert_many(table: ItemTable, item_ids: Sequence[str], vecs: NDArray[np.float32],
                biases: NDArray[np.floating[Any]]) -> NDArray[np.int64]:
    """`ItemTable.upsert` of many items at once; returns their rows."""
    index = table.index
    rows = np.fromiter((index.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
    for j in np.flatnonzero(rows < 0).tolist():
        rows[j] = table.upsert(item_ids[j], vecs[j], float(biases[j]))
    table.vecs[rows] = vecs
    table.biases[rows] = biases
    return rows


def initial_user(params: BPRParams, user_id: str, seed: int) -> NDArray[np.float32]:
    """Deterministic starting vector of a user (same on every run and instance)."""
    return init_vector(params, key_rng(seed, USER_NAMESPACE, user_id))


def user_step(
    params: BPRParams,
    seed: int,
    user_id: str,
    user_vec: NDArray[np.float32] | None,
    item_id: str,
    weight: float,
    ts: int,
    table: ItemTable,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], list[ItemUpdate]]:
    """New user vector and the item updates of one interaction (positive + sampled negatives).

    An item the table has not heard of yet is entered with its deterministic initial vector (the
    one the item stage will start from too). Weight-0 events change nothing.
    """
    u = user_vec if user_vec is not None and user_vec.shape[0] == params.dim else initial_user(params, user_id, seed)
    pos = table.index.get(item_id)
    if pos is None:
        init = initial_item(params, item_id, seed)
        pos = table.upsert(item_id, init.as_array(), init.bias)
    if weight <= 0.0:
        return u, []
    n = len(table)
    negs = np.empty(0, dtype=np.int64)
    if n > 1:
        draw = rng.integers(0, n - 1, size=params.negatives)
        negs = draw + (draw >= pos)  # skip the positive without a rejection loop
    if negs.size == 0:
        return u, []
    new_u, grads = bpr_user_step(
        params, u, table.vecs[pos], float(table.biases[pos]), table.vecs[negs], table.biases[negs], weight
    )
    updates = [ItemUpdate(item_id, ts, weight, grads.pos.vec, grads.pos.bias)]
    updates += [ItemUpdate(table.ids[int(j)], ts, weight, g.vec, g.bias) for j, g in zip(negs, grads.neg, strict=True)]
    return new_u, updates

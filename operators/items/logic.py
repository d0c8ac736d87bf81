"""Pure item-side learning: apply one user-stage gradient to an item's state.

A new item starts from the same deterministic vector the user stage assumes for it
(`initial_item`), so both sides agree before the first feedback arrives.
"""

from __future__ import annotations

from operators.learner.bpr import BPRParams, ItemGrad, apply_item_update, init_vector, key_rng
from state_schemas.item_vector import ItemVector
from state_schemas.messages import ItemUpdate

ITEM_NAMESPACE = "item"


def initial_item(params: BPRParams, item_id: str, seed: int) -> ItemVector:
    """The state of an item nobody has touched yet (deterministic in (seed, item_id))."""
    return ItemVector.from_array(init_vector(params, key_rng(seed, ITEM_NAMESPACE, item_id)))


def apply(params: BPRParams, state: ItemVector | None, upd: ItemUpdate, seed: int) -> ItemVector:
    """New item state after one gradient; `seq` grows by one per update (orders Cassandra writes).

    >>> import numpy as np
    >>> p = BPRParams(dim=4)
    >>> s = apply(p, None, ItemUpdate("i1", 5, 1.0, np.ones(4, np.float32), 1.0), seed=1)
    >>> (s.seq, s.update_count, s.updated_ts)
    (1, 1, 5)
    """
    cur = state if state is not None else initial_item(params, upd.item_id, seed)
    vec, bias = apply_item_update(
        params, cur.as_array(), cur.bias, ItemGrad(vec=upd.vec_grad, bias=upd.bias_grad), weight=upd.weight
    )
    return ItemVector.from_array(
        vec,
        bias=bias,
        update_count=cur.update_count + 1,
        seq=cur.seq + 1,
        updated_ts=max(upd.ts, cur.updated_ts),
    )


def item_shard(item_id: str, shards: int) -> int:
    """The item shard that owns ``item_id`` (crc32 of its UTF-8 bytes: stable across processes).

    >>> item_shard("i1", 1), item_shard("i1", 4) == item_shard("i1", 4)
    (0, True)
    """
    import zlib

    return zlib.crc32(item_id.encode()) % shards if shards > 1 else 0

"""Pure item-side learning: apply one user-stage gradient to an item's state.

A new item starts from the same deterministic vector the user stage assumes for it
(`initial_item`), so both sides agree before the first feedback arrives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from operators.learner.bpr import BPRParams, ItemGrad, apply_item_update, init_vector, key_rng
from state_schemas.codec import NO_TS
from state_schemas.item_cols import ItemCols
from state_schemas.item_vector import SCHEMA_VERSION as ITEM_SCHEMA_VERSION
from state_schemas.item_vector import ItemVector
from state_schemas.messages import ItemUpdate

ITEM_NAMESPACE = "item"


def initial_item(params: BPRParams, item_id: str, seed: int) -> ItemVector:
    """The state of an item nobody has touched yet (deterministic in (seed, item_id))."""
    return ItemVector.from_array(init_vector(params, key_rng(seed, ITEM_NAMESPACE, item_id)))


def item_from_row(row: Mapping[str, Any], dim: int) -> ItemVector | None:
    """An item's state rebuilt from its `item_vectors` row; None when the row cannot serve (no or another dim).

    Why: an item stage starting with empty state continues from the learned vector rather than from
    `initial_item`, so the user vectors it is scored against (rehydrated from their rows) still fit it.
    Every field is in the row: vector, bias, update count, seq (the writes' order), updated_ts.

    >>> import numpy as np
    >>> v = item_from_row({"vector": np.ones(2, np.float32).tobytes(), "bias": 0.5, "updates": 3, "seq": 2}, 2)
    >>> (v.bias, v.update_count, v.seq, v.updated_ts == NO_TS)
    (0.5, 3, 2, True)
    """
    vector = bytes(row.get("vector") or b"")
    if len(vector) != 4 * dim:
        return None
    at = row.get("updated_at")
    if isinstance(at, datetime):
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        updated_ts = int(round(at.timestamp() * 1000))
    else:
        updated_ts = NO_TS
    return ItemVector(vector=vector, bias=float(row.get("bias") or 0.0), update_count=int(row.get("updates") or 0),
                      seq=int(row.get("seq") or 0), updated_ts=updated_ts)


def item_rows_json(cols: ItemCols, written_at_ms: int) -> list[tuple[int, str]]:
    """(seq, `item_vectors` row in CQL ``INSERT ... JSON`` form) of every item of ``cols`` (the Java sink's input).

    ``seq`` is the row's ``USING TIMESTAMP``; ``written_at_ms`` the writer's wall clock.

    >>> import numpy as np
    >>> from state_schemas.item_cols import ItemCols
    >>> c = ItemCols(("i1",), np.array([2], np.uint64), np.array([5], np.uint64), np.array([7], np.int64),
    ...              np.array([0.5]), np.zeros((1, 1), np.float32))
    >>> seq, text = item_rows_json(c, 9)[0]
    >>> seq, json.loads(text)["vector"], json.loads(text)["updated_at"]
    (2, '0x00000000', 7)
    """
    dumps = _dumps
    out = []
    for item_id, seq, count, ts, bias, vec in zip(cols.ids, cols.seq.tolist(), cols.update_count.tolist(),
                                                  cols.updated_ts.tolist(), cols.bias.tolist(),
                                                  cols.vecs.astype("<f4"), strict=True):
        out.append((seq, dumps({"item_id": item_id, "schema_version": ITEM_SCHEMA_VERSION, "seq": seq,
                                "vector": "0x" + vec.tobytes().hex(), "bias": bias, "updates": count,
                                "updated_at": None if ts == NO_TS else ts, "written_at": written_at_ms})))
    return out


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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

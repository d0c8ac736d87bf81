"""Records that travel between the job's operators, binary and versioned like state.

They are never stored as state and never on a public topic, except `item-vectors`, which the job
itself reads back.

ItemUpdate v1, user stage → item stage (keyed by item)::

    offset  size  field
    0       1     tag 'G'
    1       2     version u16 = 1
    3       8     ts i64: event time of the interaction that produced it
    11      4     weight f32: event-type weight of the interaction
    15      4     bias_grad f32
    19      2     D u16, then f32[D] vector gradient
    21+4D   ...   item_id, UTF-8 (rest of the record)

ItemVectorMsg v1, item stage → `item-vectors` topic → broadcast back to the user stage::

    0       1     tag 'M'
    1       2     version u16 = 1
    3       8     ts i64: event time of the item's last update (the record's timestamp)
    11      2     L u16, then item_id UTF-8 [L]
    13+L    ...   the item's state blob (state_schemas.item_vector codec, with its own header)
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import SchemaError
from state_schemas import item_vector
from state_schemas.codec import TAGS
from state_schemas.item_vector import ItemVector

_UPD: Final = struct.Struct("<BHqffH")
_MSG: Final = struct.Struct("<BHqH")
_TS: Final = struct.Struct("<q")
_UPD_TAG: Final = TAGS["item_update"]
_MSG_TAG: Final = TAGS["item_vector_msg"]


class ItemUpdate(NamedTuple):
    """One item's share of a user-side BPR step."""

    item_id: str
    ts: int
    weight: float
    vec_grad: NDArray[np.float32]
    bias_grad: float


def encode_update(u: ItemUpdate) -> bytes:
    """Bytes of an ItemUpdate (layout in the module docstring)."""
    vec = np.ascontiguousarray(u.vec_grad, dtype="<f4")
    return (
        _UPD.pack(_UPD_TAG, 1, u.ts, u.weight, u.bias_grad, vec.shape[0]) + vec.tobytes() + u.item_id.encode()
    )


def decode_update(data: bytes) -> ItemUpdate:
    """ItemUpdate from bytes; a foreign or newer record raises SchemaError naming it."""
    tag, version, ts, weight, bias_grad, dim = _UPD.unpack_from(data)
    if tag != _UPD_TAG or version != 1:
        msg = f"item_update: expected tag 'G' v1, got tag {tag} v{version}: producer and consumer builds differ"
        raise SchemaError(msg)
    end = _UPD.size + 4 * dim
    vec = np.frombuffer(data, dtype="<f4", count=dim, offset=_UPD.size)
    return ItemUpdate(data[end:].decode(), ts, weight, vec, bias_grad)


def encode_vector_msg(item_id: str, ts: int, state: ItemVector) -> bytes:
    """Bytes of an item-vectors record."""
    name = item_id.encode()
    return _MSG.pack(_MSG_TAG, 1, ts, len(name)) + name + item_vector.encode(state)


def decode_vector_msg(data: bytes) -> tuple[str, int, ItemVector]:
    """(item_id, ts, state) of an item-vectors record."""
    tag, version, ts, n = _MSG.unpack_from(data)
    if tag != _MSG_TAG or version != 1:
        msg = f"item_vector_msg: expected tag 'M' v1, got tag {tag} v{version}: producer and consumer builds differ"
        raise SchemaError(msg)
    start = _MSG.size
    return data[start : start + n].decode(), ts, item_vector.decode(data[start + n :])


def vector_msg_ts(data: bytes) -> int:
    """Event time of an item-vectors record without decoding the rest (timestamp assigner)."""
    return _TS.unpack_from(data, 3)[0]

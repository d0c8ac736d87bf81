"""Per-item keyed state, version 1: the item's embedding, bias and update bookkeeping."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from state_schemas.codec import NO_TS, TAGS, corrupt, f32_bytes, f32_view

SCHEMA_VERSION: Final = 1


class ItemVectorV1(NamedTuple):
    """Embedding (float32 bytes), bias, how many updates made it, and the update sequence number.

    Immutable `NamedTuple`, for the construction cost (see `state_schemas.events_v1.EventV1`).

    >>> v = ItemVectorV1.from_array(np.ones(4), bias=0.5, update_count=1, seq=1, updated_ts=10)
    >>> v.dim, float(v.as_array().sum())
    (4, 4.0)
    """

    vector: bytes  # float32 little endian
    bias: float = 0.0
    update_count: int = 0
    seq: int = 0  # orders this item's writes downstream, like UserProfileV1.seq
    updated_ts: int = NO_TS  # event time of the last update

    @property
    def dim(self) -> int:
        """Dimension of the embedding."""
        return len(self.vector) // 4

    def as_array(self) -> NDArray[np.float32]:
        """The embedding as a read-only float32 array (a view, no copy)."""
        return f32_view(self.vector)

    @classmethod
    def from_array(
        cls,
        vector: ArrayLike,
        *,
        bias: float = 0.0,
        update_count: int = 0,
        seq: int = 0,
        updated_ts: int = NO_TS,
    ) -> ItemVectorV1:
        """Item state from a numpy vector (stored as float32)."""
        return cls(vector=f32_bytes(vector), bias=bias, update_count=update_count, seq=seq, updated_ts=updated_ts)


# Byte layout of an item vector, v1 (all little endian):
#
#   offset  size  field
#   0       1     tag 'I' (0x49)
#   1       2     version u16 = 1
#   3       8     seq u64
#   11      8     update_count u64
#   19      8     updated_ts i64
#   27      8     bias f64
#   35      2     D = dimension u16
#   37      4D    vector f32[D]
_FIXED: Final = struct.Struct("<BHQQqdH")
_NAME: Final = "item_vector"
_TAG: Final = TAGS["item_vector"]


def encode(v: ItemVectorV1) -> bytes:
    """Bytes of ``v``, layout above."""
    if len(v.vector) % 4:
        msg = f"item vector has {len(v.vector)} bytes, not a multiple of 4"
        raise ValueError(msg)
    head = _FIXED.pack(_TAG, SCHEMA_VERSION, v.seq, v.update_count, v.updated_ts, v.bias, len(v.vector) // 4)
    return head + v.vector


def pack(seq: int, update_count: int, updated_ts: int, bias: float, vector: NDArray[np.float32]) -> bytes:
    """The whole blob (header included) from parts, without building an `ItemVectorV1`: for hot paths."""
    vec = np.ascontiguousarray(vector, dtype="<f4")
    return (_FIXED.pack(_TAG, SCHEMA_VERSION, seq, update_count, updated_ts, bias, vec.shape[0]) + vec.tobytes())


def decode(data: bytes) -> ItemVectorV1:
    """`ItemVectorV1` from bytes made by `encode` (header already checked by the codec)."""
    _, _, seq, count, updated_ts, bias, dim = _FIXED.unpack_from(data)
    if _FIXED.size + 4 * dim != len(data):
        raise corrupt(_NAME, f"dimension {dim} needs {_FIXED.size + 4 * dim} bytes, blob has {len(data)}")
    return ItemVectorV1(vector=data[_FIXED.size :], bias=bias, update_count=count, seq=seq, updated_ts=updated_ts)

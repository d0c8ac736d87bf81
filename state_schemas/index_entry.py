"""Per-item state of the index operator (keyed by shard; one MapState entry per item), version 1.

Why its own state and not the item stage's: the index must be rebuilt after a restore or a rescale
from nothing but its own checkpointed keyed state (Python functions cannot snapshot operator state),
so every number serving needs of an item lives here: vector and bias (as last flushed by the item
stage), decayed popularity, raw interaction count (the most-popular baseline), total interaction
weight (co-occurrence normalisation) and the item's category (request filters).

Byte layout, v1 (little endian)::

    offset  size  field
    0       1     tag 'X'
    1       2     version u16 = 1
    3       8     vector_seq u64: item-stage seq of the vector held (0 = the deterministic initial one)
    11      8     popularity f64: decayed interaction weight at popularity_ts
    19      8     popularity_ts i64 (event time, ms)
    27      8     count u64: interactions
    35      8     weight f64: summed interaction weight
    43      4     bias f32
    47      8     ordinal u64: the item's position in the shard (restores rebuild the same array order,
                  so a restored shard computes bit-identical scores)
    55      2     L u16: category length in bytes (0 = none)
    57      2     D u16, then f32[D] vector
    59+4D   L     category, UTF-8

>>> import numpy as np
>>> e = IndexEntry(np.ones(2, np.float32).tobytes(), 0.5, 3, 2.0, 10, 2, 2.0, "books", 7)
>>> decode(encode(e)) == e
True
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from state_schemas.codec import TAGS, VersionedCodec, corrupt, f32_view

SCHEMA_VERSION: Final = 1
_FIXED: Final = struct.Struct("<BHQdqQdfQHH")
_TAG: Final = TAGS["index_entry"]
_NAME: Final = "index_entry"


class IndexEntry(NamedTuple):
    """What the index operator keeps of one item."""

    vector: bytes  # float32 little endian
    bias: float = 0.0
    vector_seq: int = 0
    popularity: float = 0.0
    popularity_ts: int = 0
    count: int = 0  # type: ignore[assignment]  # shadows tuple.count; the field name is the schema's
    weight: float = 0.0
    category: str = ""
    ordinal: int = 0

    def as_array(self) -> NDArray[np.float32]:
        """The vector as a read-only float32 array (a view)."""
        return f32_view(self.vector)


def _encode(e: IndexEntry) -> bytes:
    if len(e.vector) % 4:
        msg = f"index entry vector has {len(e.vector)} bytes, not a multiple of 4"
        raise ValueError(msg)
    cat = e.category.encode()
    head = _FIXED.pack(_TAG, SCHEMA_VERSION, e.vector_seq, e.popularity, e.popularity_ts, e.count, e.weight,
                       e.bias, e.ordinal, len(cat), len(e.vector) // 4)
    return head + e.vector + cat


def _decode(data: bytes) -> IndexEntry:
    _, _, seq, pop, pop_ts, count, weight, bias, ordinal, n_cat, dim = _FIXED.unpack_from(data)
    end = _FIXED.size + 4 * dim
    if end + n_cat != len(data):
        raise corrupt(_NAME, f"dimension {dim} and category of {n_cat} bytes need {end + n_cat} bytes, "
                             f"blob has {len(data)}")
    return IndexEntry(data[_FIXED.size : end], bias, seq, pop, pop_ts, count, weight, data[end:].decode(), ordinal)


CODEC: Final[VersionedCodec[IndexEntry]] = VersionedCodec(
    name=_NAME, tag=_TAG, version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}, migrations={}
)
encode = CODEC.encode
decode = CODEC.decode

"""Per-item state: the current version and its codec (same pattern as `state_schemas.user_profile`).

>>> import numpy as np
>>> v = ItemVector.from_array(np.arange(3.0), bias=0.1, update_count=2, seq=2)
>>> decode(encode(v)) == v
True
"""

from __future__ import annotations

from typing import Final

from state_schemas import item_vector_v1
from state_schemas.codec import TAGS, VersionedCodec
from state_schemas.item_vector_v1 import ItemVectorV1

__all__ = ["CODEC", "SCHEMA_VERSION", "ItemVector", "decode", "encode"]

SCHEMA_VERSION: Final = 1
ItemVector = ItemVectorV1

CODEC: Final[VersionedCodec[ItemVectorV1]] = VersionedCodec(
    name="item_vector",
    tag=TAGS["item_vector"],
    version=SCHEMA_VERSION,
    encoder=item_vector_v1.encode,
    decoders={1: item_vector_v1.decode},
    migrations={},
)

encode = CODEC.encode
decode = CODEC.decode

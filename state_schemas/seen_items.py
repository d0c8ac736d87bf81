"""Per-user keyed state of the user stage: every item the user interacted with (bounded), version 1.

Why beside the profile and not in it: the profile's `recent_items` is short (it seeds co-occurrence
and the session vector); exclusion of "already seen" items and the online evaluation's "unseen item"
rule need the whole history, and keeping it out of the profile keeps the profile's Cassandra row small.

Byte layout, v1: tag 'S', version u16 = 1, N u32, B u32, then B bytes: N item ids UTF-8 joined by U+001F,
oldest first.

>>> decode(encode(("a", "b")))
('a', 'b')
"""

from __future__ import annotations

import struct
from typing import Final

from state_schemas.codec import TAGS, VersionedCodec, corrupt

SCHEMA_VERSION: Final = 1
_FIXED: Final = struct.Struct("<BHII")
_SEP: Final = "\x1f"
_NAME: Final = "seen_items"


def _encode(items: tuple[str, ...]) -> bytes:
    body = _SEP.join(items).encode()
    return _FIXED.pack(TAGS[_NAME], SCHEMA_VERSION, len(items), len(body)) + body


def _decode(data: bytes) -> tuple[str, ...]:
    _, _, n, size = _FIXED.unpack_from(data)
    if _FIXED.size + size != len(data):
        raise corrupt(_NAME, f"header says {size} body bytes, blob has {len(data) - _FIXED.size}")
    body = data[_FIXED.size :].decode()
    items = tuple(body.split(_SEP)) if n else ()
    if len(items) != n:
        raise corrupt(_NAME, f"header says {n} items, body holds {len(items)}")
    return items


CODEC: Final[VersionedCodec[tuple[str, ...]]] = VersionedCodec(
    name=_NAME, tag=TAGS[_NAME], version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}, migrations={}
)
encode = CODEC.encode
decode = CODEC.decode


def add(items: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    """``items`` with ``item`` appended (moved to the end if present), the oldest dropped past ``limit``.

    >>> add(("a", "b", "c"), "a", 3)
    ('b', 'c', 'a')
    >>> add(("a", "b"), "c", 2)
    ('b', 'c')
    """
    if item in items:
        items = tuple(i for i in items if i != item)
    out = (*items, item)
    return out[-limit:] if len(out) > limit else out

"""Co-occurrence cells of an index shard as compact blobs: one per batch, plus a periodic snapshot, v1.

Why: a batch changes thousands of cells; one keyed-state entry per cell cost the index stage more
interpreter time (per-entry conversion into the JVM) than ranking and learning together. The adapter
keeps every cell in memory and writes, per batch, one blob of the cells that batch changed (their new
values, so replaying blobs in order restores the last value of every cell), and every
``COMPACT_EVERY`` blobs one snapshot blob of all cells, which replaces the log.

Byte layout, v1: tag 'C', version u16 = 1, N u32, then f64[N] values, u32 B, then B bytes of UTF-8:
N owner ids and N partner ids, ``owner_1 US partner_1 US owner_2 ...`` joined by U+001F (ids never hold
control characters).

>>> decode(encode([("a", "b", 1.5), ("c", "a", 2.0)]))
[('a', 'b', 1.5), ('c', 'a', 2.0)]
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Final

import numpy as np

from state_schemas.codec import TAGS, VersionedCodec, corrupt

SCHEMA_VERSION: Final = 1
_HEAD: Final = struct.Struct("<BHI")
_LEN: Final = struct.Struct("<I")
_NAME: Final = "cooc_log"
_US: Final = "\x1f"

Cells = list[tuple[str, str, float]]


def _encode(cells: Cells) -> bytes:
    return _pack(len(cells), (c[2] for c in cells), chain.from_iterable((o, p) for o, p, _ in cells))


def encode_map(cells: Mapping[tuple[str, str], float]) -> bytes:
    """The blob of a batch's cells kept as {(owner, partner): value}, without building tuples per cell.

    Why: the index stage writes one blob per batch of thousands of cells; joining the dict's keys at C
    speed costs a fraction of formatting each cell.
    """
    return _pack(len(cells), cells.values(), chain.from_iterable(cells.keys()))


def _pack(n: int, values: Iterable[float], ids: Iterable[str]) -> bytes:
    data = np.fromiter(values, dtype="<f8", count=n).tobytes()
    text = _US.join(ids).encode()
    return b"".join((_HEAD.pack(TAGS[_NAME], SCHEMA_VERSION, n), data, _LEN.pack(len(text)), text))


def _decode(data: bytes) -> Cells:
    _, _, n = _HEAD.unpack_from(data)
    pos = _HEAD.size
    if pos + 8 * n + 4 > len(data):
        raise corrupt(_NAME, f"{n} cells announced, blob has {len(data)} bytes")
    values = np.frombuffer(data, dtype="<f8", count=n, offset=pos).tolist()
    pos += 8 * n
    (size,) = _LEN.unpack_from(data, pos)
    pos += 4
    if pos + size != len(data):
        raise corrupt(_NAME, f"text of {size} bytes announced, {len(data) - pos} present")
    ids = data[pos:].decode().split(_US) if n else []
    if len(ids) != 2 * n:
        raise corrupt(_NAME, f"{n} cells need {2 * n} ids, blob holds {len(ids)}")
    return [(ids[2 * j], ids[2 * j + 1], values[j]) for j in range(n)]


CODEC: Final[VersionedCodec[Cells]] = VersionedCodec(
    name=_NAME, tag=TAGS[_NAME], version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}, migrations={}
)

encode = CODEC.encode
decode = CODEC.decode

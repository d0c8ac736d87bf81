"""An index shard's state as columnar blobs: one per batch (what it changed), plus a snapshot, version 1.

Why: a batch of the index stage changes hundreds of items and thousands of co-occurrence cells. One
keyed-state entry per item (release 0.2's "index-items") or per cell (release 0.1's "index-cooc") cost
a codec call and a conversion into the JVM each; here the adapter writes one blob per batch with the new
values of everything the batch changed, and once those blobs outweigh the last snapshot, one snapshot
blob of the whole shard, which replaces the log (`operators/index/flink.py`). Replaying snapshot and blobs in order, a
later value of an item or a cell replacing an earlier one, restores the shard exactly: the arrays hold
the shard's own float64 / float32 values, and each item its ordinal, so a restored shard computes
bit-identical scores.

Byte layout, v1 (little endian)::

    offset  size  field
    0       1     tag 'L'
    1       2     version u16 = 1
    3       4     N u32 items
    7       2     D u16 vector dimension
    9       4     C u32 co-occurrence cells
    13      4     S u32 strings in the string table
    17      4     B u32 bytes of the string table
    21      4N    i32[N] item id (string index)
    ...     4N    u32[N] ordinal: the item's position in the shard's arrays
    ...     8N    u64[N] vector seq (item-stage seq of the vector held; 0 = the initial one)
    ...     8N    f64[N] decayed popularity at its reference time
    ...     8N    f64[N] popularity reference time (event time, ms)
    ...     8N    f64[N] interaction count
    ...     8N    f64[N] summed interaction weight
    ...     4N    f32[N] bias
    ...     4N    i32[N] category (string index; -1: none)
    ...     4N·D  f32[N, D] vectors
    ...     4C    i32[C] cell owner (string index; an item of this shard)
    ...     4C    i32[C] cell partner (string index; any item)
    ...     8C    f64[C] cell value
    ...     B     string table, UTF-8, joined by U+001F
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
from numpy.typing import NDArray

from state_schemas.codec import TAGS, VersionedCodec, corrupt

SCHEMA_VERSION: Final = 1
_HEAD: Final = struct.Struct("<BHIHIII")
_NAME: Final = "index_log"
_US: Final = "\x1f"
_ITEM_COLS: Final = (("item", "<i4"), ("ordinal", "<u4"), ("seq", "<u8"), ("pop", "<f8"), ("pop_ts", "<f8"),
                     ("count", "<f8"), ("weight", "<f8"), ("bias", "<f4"), ("category", "<i4"))
_CELL_COLS: Final = (("cell_owner", "<i4"), ("cell_partner", "<i4"), ("cell_value", "<f8"))


@dataclass(frozen=True, slots=True, eq=False)
class IndexLog:
    """Items and cells of an index shard (a batch's changes, or all of it), as arrays over a string table."""

    strings: tuple[str, ...]
    item: NDArray[np.int32]
    ordinal: NDArray[np.uint32]
    seq: NDArray[np.uint64]
    pop: NDArray[np.float64]
    pop_ts: NDArray[np.float64]
    count: NDArray[np.float64]
    weight: NDArray[np.float64]
    bias: NDArray[np.float32]
    category: NDArray[np.int32]
    vecs: NDArray[np.float32]  # (N, D)
    cell_owner: NDArray[np.int32]
    cell_partner: NDArray[np.int32]
    cell_value: NDArray[np.float64]

    def __eq__(self, other: object) -> bool:
        """Field by field, arrays by value and dtype (for round-trip checks)."""
        if not isinstance(other, IndexLog):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.vecs.shape[1])


def empty(dim: int) -> IndexLog:
    """An IndexLog with no items and no cells."""
    cols = {name: np.zeros(0, dtype=dt) for name, dt in (*_ITEM_COLS, *_CELL_COLS)}
    return IndexLog(strings=(), vecs=np.zeros((0, dim), dtype="<f4"), **cols)


def _encode(v: IndexLog) -> bytes:
    n, d, c = int(v.item.shape[0]), v.dim, int(v.cell_owner.shape[0])
    text = _US.join(v.strings).encode()
    parts = [_HEAD.pack(TAGS[_NAME], SCHEMA_VERSION, n, d, c, len(v.strings), len(text))]
    for name, dt in _ITEM_COLS:
        arr = getattr(v, name)
        if arr.shape != (n,):
            msg = f"index_log column {name} has shape {arr.shape}, expected ({n},)"
            raise ValueError(msg)
        parts.append(np.ascontiguousarray(arr, dtype=dt).tobytes())
    parts.append(np.ascontiguousarray(v.vecs, dtype="<f4").tobytes())
    for name, dt in _CELL_COLS:
        parts.append(np.ascontiguousarray(getattr(v, name), dtype=dt).tobytes())
    parts.append(text)
    return b"".join(parts)


def _decode(data: bytes) -> IndexLog:
    _, _, n, d, c, ns, nb = _HEAD.unpack_from(data)
    need = _HEAD.size + n * (sum(np.dtype(dt).itemsize for _, dt in _ITEM_COLS) + 4 * d) + 16 * c + nb
    if need != len(data):
        raise corrupt(_NAME, f"{n} items of dimension {d}, {c} cells and {nb} string bytes need {need} bytes, "
                             f"blob has {len(data)}")
    pos = _HEAD.size
    cols: dict[str, NDArray[np.generic]] = {}
    for name, dt in _ITEM_COLS:
        cols[name] = np.frombuffer(data, dtype=dt, count=n, offset=pos)
        pos += cols[name].nbytes
    vecs = np.frombuffer(data, dtype="<f4", count=n * d, offset=pos).reshape(n, d)
    pos += vecs.nbytes
    for name, dt in _CELL_COLS:
        cols[name] = np.frombuffer(data, dtype=dt, count=c, offset=pos)
        pos += cols[name].nbytes
    strings = tuple(data[pos:].decode().split(_US)) if ns else ()
    if len(strings) != ns:
        raise corrupt(_NAME, f"string table holds {len(strings)} strings, header says {ns}")
    for name in ("item", "cell_owner", "cell_partner"):
        col = cols[name]
        if col.size and (int(col.min()) < 0 or int(col.max()) >= ns):
            raise corrupt(_NAME, f"{name} indexes outside the string table of {ns}")
    cat = cols["category"]
    if cat.size and (int(cat.min()) < -1 or int(cat.max()) >= ns):
        raise corrupt(_NAME, f"category indexes outside the string table of {ns}")
    return IndexLog(strings=strings, vecs=vecs, **cols)  # type: ignore[arg-type]


CODEC: Final[VersionedCodec[IndexLog]] = VersionedCodec(
    name=_NAME, tag=TAGS[_NAME], version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}, migrations={}
)
encode = CODEC.encode
decode = CODEC.decode

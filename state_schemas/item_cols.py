"""Item vectors as columns: the feedback/index record (VectorBatch v2) and the item stage's state log.

Why columns: the item stage publishes hundreds of vectors per flush, and release 0.2 packed each into
its own ItemVectorMsg (a struct pack, a header check and an `ItemVector` per vector, on every
consumer). Here a batch is a few arrays that numpy writes and reads whole.

VectorBatch v2 (item stage → `item-vectors` topic → user stage; item stage → index), little endian::

    offset  size  field
    0       1     tag 'B' (the tag of VectorBatch v1, whose decoder still reads v1 records)
    1       2     version u16 = 2
    3       8     ts i64: newest ``updated_ts`` inside (same offset as v1, `messages.vector_msg_ts`)
    11      ...   the columns below

ItemLog v1 (keyed state of the item stage: one blob per batch of what it changed, plus snapshots,
`operators/items/flink.py`)::

    0       1     tag 'T'
    1       2     version u16 = 1
    3       ...   the columns below

Columns::

    +0      4     N u32 items
    +4      2     D u16 dimension
    +6      8N    u64[N] seq (orders an item's versions: consumers keep the higher)
    ...     8N    u64[N] update_count
    ...     8N    i64[N] updated_ts
    ...     8N    f64[N] bias
    ...     4N·D  f32[N, D] vectors
    ...     2N    u16[N] UTF-8 length of each item id, then the ids back to back
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
from numpy.typing import NDArray

from state_schemas.codec import NO_TS, TAGS, VersionedCodec, corrupt
from state_schemas.errors import SchemaError

_COLS: Final = struct.Struct("<IH")
_BATCH_HEAD: Final = struct.Struct("<BHq")
_BATCH_TAG: Final = TAGS["vector_batch_msg"]
BATCH_VERSION: Final = 2
_LOG: Final = "item_log"


@dataclass(frozen=True, slots=True, eq=False)
class ItemCols:
    """N items' states as columns (the values of `state_schemas.item_vector.ItemVector`, per row)."""

    ids: tuple[str, ...]
    seq: NDArray[np.uint64]
    update_count: NDArray[np.uint64]
    updated_ts: NDArray[np.int64]
    bias: NDArray[np.float64]
    vecs: NDArray[np.float32]  # (N, D)

    def __len__(self) -> int:
        """Number of items."""
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        """Column by column, arrays by value and dtype."""
        if not isinstance(other, ItemCols):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    @property
    def newest_ts(self) -> int:
        """Newest ``updated_ts`` (NO_TS when empty)."""
        return int(self.updated_ts.max()) if len(self.ids) else NO_TS

    def take(self, rows: NDArray[np.int64]) -> ItemCols:
        """The given rows, in that order."""
        ids = self.ids
        return ItemCols(tuple(ids[i] for i in rows.tolist()), self.seq[rows], self.update_count[rows],
                        self.updated_ts[rows], self.bias[rows], self.vecs[rows])


def empty(dim: int) -> ItemCols:
    """No items."""
    return ItemCols((), np.zeros(0, "<u8"), np.zeros(0, "<u8"), np.zeros(0, "<i8"), np.zeros(0, "<f8"),
                    np.zeros((0, dim), "<f4"))


def _pack(c: ItemCols) -> list[bytes]:
    n, d = len(c.ids), int(c.vecs.shape[1]) if c.vecs.ndim == 2 else 0
    names = [i.encode() for i in c.ids]
    return [
        _COLS.pack(n, d),
        np.ascontiguousarray(c.seq, "<u8").tobytes(), np.ascontiguousarray(c.update_count, "<u8").tobytes(),
        np.ascontiguousarray(c.updated_ts, "<i8").tobytes(), np.ascontiguousarray(c.bias, "<f8").tobytes(),
        np.ascontiguousarray(c.vecs, "<f4").tobytes(),
        np.fromiter((len(b) for b in names), dtype="<u2", count=n).tobytes(), *names,
    ]


def _unpack(data: bytes, pos: int, name: str) -> ItemCols:
    try:
        n, d = _COLS.unpack_from(data, pos)
    except struct.error as exc:
        raise corrupt(name, f"record of {len(data)} bytes is too short: {exc}") from exc
    pos += _COLS.size
    fixed = 34 * n + 4 * n * d
    if pos + fixed > len(data):
        raise corrupt(name, f"{n} items of dimension {d} announced, the record has {len(data)} bytes")
    cols = []
    for dtype in ("<u8", "<u8", "<i8", "<f8"):
        cols.append(np.frombuffer(data, dtype=dtype, count=n, offset=pos))
        pos += 8 * n
    vecs = np.frombuffer(data, dtype="<f4", count=n * d, offset=pos).reshape(n, d)
    pos += 4 * n * d
    lens = np.frombuffer(data, dtype="<u2", count=n, offset=pos).tolist()
    pos += 2 * n
    if pos + sum(lens) != len(data):
        raise corrupt(name, f"item ids take {sum(lens)} bytes, the record has {len(data) - pos} left")
    ids = []
    for size in lens:
        ids.append(data[pos : pos + size].decode())
        pos += size
    return ItemCols(tuple(ids), cols[0], cols[1], cols[2], cols[3], vecs)


def encode_vector_batch(c: ItemCols) -> bytes:
    """A VectorBatch v2 record of these items."""
    return b"".join([_BATCH_HEAD.pack(_BATCH_TAG, BATCH_VERSION, c.newest_ts), *_pack(c)])


def decode_vector_batch(data: bytes) -> ItemCols:
    """Items of a VectorBatch record, v2 or v1 (release 0.2's list of ItemVectorMsg, converted).

    A record of another format raises `SchemaError` naming it.
    """
    try:
        tag, version, _ts = _BATCH_HEAD.unpack_from(data)
    except struct.error as exc:
        msg = f"vector_batch_msg: record of {len(data)} bytes is too short: {exc}"
        raise SchemaError(msg) from exc
    if tag == _BATCH_TAG and version == BATCH_VERSION:
        return _unpack(data, _BATCH_HEAD.size, "vector_batch_msg")
    if tag == _BATCH_TAG and version == 1:
        from state_schemas.messages import decode_vector_batch as decode_v1
        from state_schemas.messages import decode_vector_msg

        return from_states([decode_vector_msg(m) for m in decode_v1(data)])
    msg = (f"vector_batch_msg: expected tag 'B' v1 or v2, got tag {tag} v{version}: producer and consumer builds "
           "differ")
    raise SchemaError(msg)


def from_states(items: list[tuple[str, int, object]]) -> ItemCols:
    """Columns from (item_id, ts, ItemVector) triples (what v1 records decode to)."""
    from state_schemas.item_vector import ItemVector

    states = [s for _, _, s in items if isinstance(s, ItemVector)]
    if len(states) != len(items):
        msg = "from_states: every state must be an ItemVector"
        raise SchemaError(msg)
    dim = states[0].dim if states else 0
    return ItemCols(
        tuple(i for i, _, _ in items), np.array([s.seq for s in states], "<u8"),
        np.array([s.update_count for s in states], "<u8"), np.array([s.updated_ts for s in states], "<i8"),
        np.array([s.bias for s in states], "<f8"),
        np.stack([s.as_array() for s in states]) if states else np.zeros((0, dim), "<f4"),
    )


def _encode_log(c: ItemCols) -> bytes:
    return b"".join([struct.pack("<BH", TAGS[_LOG], 1), *_pack(c)])


def _decode_log(data: bytes) -> ItemCols:
    return _unpack(data, 3, _LOG)


CODEC: Final[VersionedCodec[ItemCols]] = VersionedCodec(
    name=_LOG, tag=TAGS[_LOG], version=1, encoder=_encode_log, decoders={1: _decode_log}, migrations={}
)
encode_log = CODEC.encode
decode_log = CODEC.decode

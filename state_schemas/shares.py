"""ShareBatch: what one index shard must do for one user-shard batch, columnar, version 1.

Why columnar: the index stage learns popularity and co-occurrence from every interaction. One record
per interaction share (release 0.2's ``InteractionMsg``) cost a struct pack, a decode and a Python loop
per pair, twice; here a batch's shares are a few numpy arrays that the index applies in one vectorised
step (`operators.index.logic.IndexShard.apply_shares`).

The queries of the batch (requests and online-evaluation queries, ``QueryMsg`` bytes) travel with it:
the index ranks all of them first, against its state before this batch's shares, then learns the
shares (`docs/architecture.md`, "Serving").

Byte layout, v1 (little endian)::

    offset  size  field
    0       1     tag 'Z'
    1       2     version u16 = 1
    3       4     Q u32 queries
    7       4     N u32 popularity rows (one per interaction whose item this shard owns)
    11      4     P u32 pair rows (one per co-occurrence pair this shard owns a side of)
    15      4     S u32 strings in the string table
    19      4     B u32 bytes of the string table
    23      ...   Q times (u32 length, QueryMsg bytes)
    ...     4N    i32[N] item (string index)
    ...     8N    i64[N] event time
    ...     8N    f64[N] event weight
    ...     4N    i32[N] category (string index, -1: none)
    ...     4P    i32[P] pair side a (string index)
    ...     4P    i32[P] pair side b (string index)
    ...     8P    f64[P] pair weight
    ...     B     string table: S strings, UTF-8, joined by U+001F (ids never hold control characters)

A pair row (a, b, w) is unordered: the shard adds ``w`` to the cell (a, b) when it owns ``a`` and to the
cell (b, a) when it owns ``b`` (co-occurrence is symmetric, and each cell lives with its owner's shard).

>>> b = ShareBuilder()
>>> b.add_event("i2", 10, 1.0, "books", ("i1",))
>>> s = decode(encode_builder(b, [b"q"]))
>>> s.queries, s.strings, s.pop_item.tolist(), s.pair_a.tolist(), s.pair_b.tolist()
([b'q'], ['i2', 'books', 'i1'], [0], [0], [2])
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from state_schemas.codec import TAGS, corrupt
from state_schemas.errors import SchemaError

SCHEMA_VERSION: Final = 1
_HEAD: Final = struct.Struct("<BHIIIII")
_LEN: Final = struct.Struct("<I")
_NAME: Final = "share_batch"
_TAG: Final = TAGS[_NAME]
_US: Final = "\x1f"


class ShareBatch(NamedTuple):
    """A decoded ShareBatch: queries (still encoded) and the shares as arrays of string indices."""

    queries: list[bytes]
    strings: list[str]
    pop_item: NDArray[np.int32]
    pop_ts: NDArray[np.int64]
    pop_w: NDArray[np.float64]
    pop_cat: NDArray[np.int32]
    pair_a: NDArray[np.int32]
    pair_b: NDArray[np.int32]
    pair_w: NDArray[np.float64]


class ShareBuilder:
    """Collects one index shard's shares of a batch (the user stage fills one per index shard).

    Rows keep their strings as they come (list appends only, the per-event cost); `encode_builder`
    builds the string table once per batch.
    """

    __slots__ = ("pop_item", "pop_ts", "pop_w", "pop_cat", "pair_a", "pair_b", "pair_w")

    def __init__(self) -> None:
        """An empty builder."""
        self.pop_item: list[str] = []
        self.pop_ts: list[int] = []
        self.pop_w: list[float] = []
        self.pop_cat: list[str | None] = []
        self.pair_a: list[str] = []
        self.pair_b: list[str] = []
        self.pair_w: list[float] = []

    def add_pop(self, item: str, ts: int, weight: float, category: str | None) -> None:
        """One interaction with an item this shard owns."""
        self.pop_item.append(item)
        self.pop_ts.append(ts)
        self.pop_w.append(weight)
        self.pop_cat.append(category)

    def add_pair(self, a: str, b: str, weight: float) -> None:
        """One co-occurrence pair this shard owns a side of."""
        self.pair_a.append(a)
        self.pair_b.append(b)
        self.pair_w.append(weight)

    def add_event(self, item: str, ts: int, weight: float, category: str | None, partners: Sequence[str]) -> None:
        """An interaction and its pairs with ``partners``, for a shard that owns everything (one shard)."""
        self.pop_item.append(item)
        self.pop_ts.append(ts)
        self.pop_w.append(weight)
        self.pop_cat.append(category)
        if partners:
            n = len(partners)
            self.pair_a.extend([item] * n)
            self.pair_b.extend(partners)
            self.pair_w.extend([weight] * n)

    def __len__(self) -> int:
        """Rows collected (popularity + pairs)."""
        return len(self.pop_item) + len(self.pair_a)

    def table(self) -> tuple[list[str], dict[str, int]]:
        """The batch's string table (items, then categories, then partners, first occurrence order)."""
        cats = [c for c in self.pop_cat if c is not None]
        strings = list(dict.fromkeys([*self.pop_item, *cats, *self.pair_a, *self.pair_b]))
        return strings, {s: i for i, s in enumerate(strings)}


def encode_builder(b: ShareBuilder | None, queries: Sequence[bytes] = ()) -> bytes:
    """Bytes of a ShareBatch from a builder (None: queries only) and the batch's encoded queries."""
    if b is None:
        b = ShareBuilder()
    strings, pos = b.table()
    get = pos.__getitem__
    text = _US.join(strings).encode()
    n, p = len(b.pop_item), len(b.pair_a)
    parts = [_HEAD.pack(_TAG, SCHEMA_VERSION, len(queries), n, p, len(strings), len(text))]
    for q in queries:
        parts += (_LEN.pack(len(q)), q)
    parts += (
        np.fromiter(map(get, b.pop_item), dtype="<i4", count=n).tobytes(), np.array(b.pop_ts, dtype="<i8").tobytes(),
        np.array(b.pop_w, dtype="<f8").tobytes(),
        np.fromiter((-1 if c is None else pos[c] for c in b.pop_cat), dtype="<i4", count=n).tobytes(),
        np.fromiter(map(get, b.pair_a), dtype="<i4", count=p).tobytes(),
        np.fromiter(map(get, b.pair_b), dtype="<i4", count=p).tobytes(),
        np.array(b.pair_w, dtype="<f8").tobytes(), text,
    )
    return b"".join(parts)


def decode(data: bytes) -> ShareBatch:
    """ShareBatch from bytes; a foreign, newer or truncated record raises SchemaError naming the format."""
    try:
        tag, version, nq, n, p, ns, nb = _HEAD.unpack_from(data)
    except struct.error as exc:
        msg = f"{_NAME}: record of {len(data)} bytes is too short: {exc}"
        raise SchemaError(msg) from exc
    if tag != _TAG or version != SCHEMA_VERSION:
        msg = (f"{_NAME}: expected tag 'Z' v{SCHEMA_VERSION}, got tag {tag} v{version}: producer and consumer "
               "builds differ")
        raise SchemaError(msg)
    pos, end = _HEAD.size, len(data)
    queries: list[bytes] = []
    for _ in range(nq):
        if pos + 4 > end:
            raise corrupt(_NAME, f"{nq} queries announced, the record ends after {len(queries)}")
        (size,) = _LEN.unpack_from(data, pos)
        pos += 4
        if pos + size > end:
            raise corrupt(_NAME, f"query {len(queries)} of {size} bytes overruns the record")
        queries.append(data[pos : pos + size])
        pos += size
    if pos + 24 * n + 16 * p + nb != end:
        raise corrupt(_NAME, f"{n} popularity rows, {p} pairs and {nb} string bytes need "
                             f"{24 * n + 16 * p + nb} bytes after the queries, {end - pos} present")
    cols = []
    for dtype, count in (("<i4", n), ("<i8", n), ("<f8", n), ("<i4", n), ("<i4", p), ("<i4", p), ("<f8", p)):
        cols.append(np.frombuffer(data, dtype=dtype, count=count, offset=pos))
        pos += cols[-1].nbytes
    try:
        strings = data[pos:].decode().split(_US) if ns else []
    except UnicodeDecodeError as exc:
        raise corrupt(_NAME, f"string table is not UTF-8: {exc}") from exc
    if len(strings) != ns:
        raise corrupt(_NAME, f"string table holds {len(strings)} strings, header says {ns}")
    idx = [c for j, c in enumerate(cols) if j in (0, 3, 4, 5)]
    if any(c.size and (int(c.max()) >= ns or int(c.min()) < (-1 if k == 1 else 0)) for k, c in enumerate(idx)):
        raise corrupt(_NAME, f"a string index is outside the table of {ns} strings")
    return ShareBatch(queries, strings, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6])

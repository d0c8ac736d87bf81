"""Records that travel between the job's operators, binary and versioned like state.

They are never on a public topic, except `item-vectors`, which the job itself reads back (VectorBatch
records: v2, columns, in `state_schemas.item_cols`; v1, a list of ItemVectorMsg, is defined here and still
read). ItemUpdate is no longer sent by the job (the user stage sends coalesced
`state_schemas.batches.GradBatch` records); its codec stays for the contract tests and old tools.

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
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from state_schemas import item_vector
from state_schemas.batches import split_prefixed
from state_schemas.codec import TAGS
from state_schemas.errors import SchemaError
from state_schemas.item_vector import ItemVector
from state_schemas.requests_v1 import RequestV1

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
    """Event time of an item-vectors record without decoding the rest."""
    ts: int = _TS.unpack_from(data, 3)[0]
    return ts


# --- serving records -------------------------------------------------------------------------------
# Request, query, interaction and partial-answer records: a 3-byte header (tag, version u16 = 1), then
# a JSON body (u32 length + UTF-8) and, for queries, the query vector (u16 D + f32[D]). JSON because
# these records carry variable lists (exclusions, seeds, candidates) and never persist: they live
# between two operators of one job build, within one checkpoint.

_JSON_HEAD: Final = struct.Struct("<BHI")
_DIM: Final = struct.Struct("<H")


def _pack_json(name: str, doc: object, tail: bytes = b"") -> bytes:
    import json

    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return _JSON_HEAD.pack(TAGS[name], 1, len(body)) + body + tail


def _unpack_json(name: str, data: bytes) -> tuple[Any, bytes]:
    """(JSON document, bytes after it); the document is whatever JSON held: callers unpack it and catch errors."""
    import json

    try:
        tag, version, n = _JSON_HEAD.unpack_from(data)
    except struct.error as exc:
        msg = f"{name}: record of {len(data)} bytes is too short: {exc}"
        raise SchemaError(msg) from exc
    if tag != TAGS[name] or version != 1:
        msg = (f"{name}: expected tag {chr(TAGS[name])!r} v1, got tag {tag} v{version}: "
               "producer and consumer builds differ")
        raise SchemaError(msg)
    end = _JSON_HEAD.size + n
    if end > len(data):
        msg = f"{name}: body of {n} bytes overruns a record of {len(data)} bytes"
        raise SchemaError(msg)
    try:
        return json.loads(data[_JSON_HEAD.size : end]), data[end:]
    except ValueError as exc:
        msg = f"{name}: body is not JSON: {exc}"
        raise SchemaError(msg) from exc


def _exact(name: str, tail: bytes) -> None:
    if tail:
        msg = f"{name}: {len(tail)} unexpected trailing bytes"
        raise SchemaError(msg)


def encode_request(r: RequestV1) -> bytes:
    """A validated request, from the validator to the user stage (same stream as events)."""
    return _pack_json("request_msg", list(r))


def decode_request(data: bytes) -> RequestV1:
    """RequestV1 from `encode_request` bytes."""
    doc, tail = _unpack_json("request_msg", data)
    _exact("request_msg", tail)
    try:
        return RequestV1(*doc)
    except TypeError as exc:
        msg = f"request_msg: body does not hold a request: {exc}"
        raise SchemaError(msg) from exc


class QueryMsg(NamedTuple):
    """What the user stage asks every index shard, for a request or for an online evaluation."""

    qid: str  # the request_id, or "eval:" + event_id
    user_id: str
    kind: str  # "request" | "eval"
    k: int
    source: str  # planned rung (state_schemas.requests_v1.Source value)
    ts: int  # request time or event time: the popularity clock of this answer
    vector: NDArray[np.float32] | None  # user or session vector (the index appends the bias term)
    exclude: tuple[str, ...] = ()
    category: str | None = None
    seeds: tuple[str, ...] = ()  # recent items, oldest first (co-occurrence)
    fresh: int | None = None  # event time of the freshest interaction the user state reflects
    target: str | None = None  # eval: the item the user is about to interact with
    shards: int = 1
    digest: str | None = None  # requests: `state_digest` of the user's keyed state as the query read it


def encode_query(q: QueryMsg) -> bytes:
    """Bytes of a query (JSON meta, then the vector)."""
    vec = b"" if q.vector is None else np.ascontiguousarray(q.vector, dtype="<f4").tobytes()
    meta = [q.qid, q.user_id, q.kind, q.k, q.source, q.ts, list(q.exclude), q.category, list(q.seeds), q.fresh,
            q.target, q.shards, q.vector is not None, q.digest]
    return _pack_json("query_msg", meta, _DIM.pack(len(vec) // 4) + vec)


def decode_query(data: bytes) -> QueryMsg:
    """QueryMsg from `encode_query` bytes."""
    doc, tail = _unpack_json("query_msg", data)
    try:
        # 13 fields before the digest was added (a query in flight across an upgrade has none)
        qid, user, kind, k, source, ts, exclude, category, seeds, fresh, target, shards, has_vec, *more = doc
        digest = more[0] if more else None
        (dim,) = _DIM.unpack_from(tail)
    except (TypeError, ValueError, struct.error) as exc:
        msg = f"query_msg: malformed body: {exc}"
        raise SchemaError(msg) from exc
    if len(tail) != _DIM.size + 4 * dim:
        msg = f"query_msg: vector of {dim} floats needs {4 * dim} bytes, record has {len(tail) - _DIM.size}"
        raise SchemaError(msg)
    vec = np.frombuffer(tail, dtype="<f4", count=dim, offset=_DIM.size) if has_vec else None
    return QueryMsg(qid, user, kind, k, source, ts, vec, tuple(exclude), category, tuple(seeds), fresh, target,
                    shards, digest)


class InteractionMsg(NamedTuple):
    """One interaction's share for one index shard: popularity of its item, co-occurrence pairs it owns."""

    item_id: str | None  # set when the shard owns the item (popularity, count, category)
    ts: int
    weight: float
    category: str | None
    pairs: tuple[tuple[str, str, float], ...]  # (owner, partner, weight), owners in this shard


# InteractionMsg v2 (binary; v1 was JSON and cost more than the rest of the share's work):
#   tag 'N', version u16 = 2, ts i64, weight f64, flags u8 (1: item_id present, 2: category present),
#   P u16 pairs, f64[P] pair weights, B u32, then B bytes of UTF-8: [item_id] [category] and for every
#   pair owner, partner, all joined by U+001F (ids and categories never hold control characters).
_INT: Final = struct.Struct("<BHqdBHI")
_INT_TAG: Final = TAGS["interaction_msg"]
_US: Final = "\x1f"


def encode_interaction(m: InteractionMsg) -> bytes:
    """Bytes of an interaction share (InteractionMsg v2)."""
    parts: list[str] = []
    flags = 0
    if m.item_id is not None:
        parts.append(m.item_id)
        flags |= 1
    if m.category is not None:
        parts.append(m.category)
        flags |= 2
    weights = []
    for owner, partner, w in m.pairs:
        parts += (owner, partner)
        weights.append(w)
    text = _US.join(parts).encode()
    return b"".join((_INT.pack(_INT_TAG, 2, m.ts, m.weight, flags, len(weights), len(text)),
                     struct.pack(f"<{len(weights)}d", *weights), text))


def decode_interaction(data: bytes) -> InteractionMsg:
    """InteractionMsg from `encode_interaction` bytes; a foreign, older or truncated record raises SchemaError."""
    try:
        tag, version, ts, weight, flags, n, size = _INT.unpack_from(data)
        if tag != _INT_TAG or version != 2:
            msg = (f"interaction_msg: expected tag 'N' v2, got tag {tag} v{version}: producer and consumer "
                   "builds differ")
            raise SchemaError(msg)
        pos = _INT.size
        weights = struct.unpack_from(f"<{n}d", data, pos)
        pos += 8 * n
        if pos + size != len(data):
            msg = f"interaction_msg: body of {size} bytes announced, record has {len(data) - pos}"
            raise SchemaError(msg)
        fields = data[pos:].decode().split(_US) if size or flags else []
        k = (flags & 1) + (flags >> 1 & 1)
        if len(fields) != k + 2 * n and not (n == 0 and k == 0 and fields == [""]):
            msg = f"interaction_msg: {len(fields)} text fields, expected {k + 2 * n}"
            raise SchemaError(msg)
    except (struct.error, UnicodeDecodeError) as exc:
        msg = f"interaction_msg: malformed record of {len(data)} bytes: {exc}"
        raise SchemaError(msg) from exc
    item = fields[0] if flags & 1 else None
    cat = fields[flags & 1] if flags & 2 else None
    pairs = tuple((fields[k + 2 * j], fields[k + 2 * j + 1], weights[j]) for j in range(n))
    return InteractionMsg(item, ts, weight, cat, pairs)


Scored = tuple[str, float]


class PartialMsg(NamedTuple):
    """One shard's part of an answer; the gather step merges `shards` of them per `qid`."""

    qid: str
    user_id: str
    kind: str
    k: int
    source: str  # planned rung
    ts: int
    fresh: int | None
    target: str | None
    shard: int
    shards: int
    ranked: tuple[Scored, ...]  # blended, best first
    trending: tuple[Scored, ...]  # decayed popularity, best first
    baseline: tuple[Scored, ...]  # eval only: most popular by raw count
    target_known: bool  # eval: the shard owns the target and had seen it before
    index_version: str
    model_version: str
    digest: str | None = None  # the query's `digest`, passed through to the answer


def encode_partial(p: PartialMsg) -> bytes:
    """Bytes of a partial answer."""
    doc = [*p[:10], [list(s) for s in p.ranked], [list(s) for s in p.trending], [list(s) for s in p.baseline],
           *p[13:]]
    return _pack_json("partial_msg", doc)


def decode_partial(data: bytes) -> PartialMsg:
    """PartialMsg from `encode_partial` bytes."""
    doc, tail = _unpack_json("partial_msg", data)
    _exact("partial_msg", tail)
    try:
        head, (ranked, trending, baseline), rest = doc[:10], doc[10:13], doc[13:]
        lists = [tuple((str(i), float(s)) for i, s in xs) for xs in (ranked, trending, baseline)]
        return PartialMsg(*head, *lists, *rest)
    except (TypeError, ValueError) as exc:
        msg = f"partial_msg: malformed body: {exc}"
        raise SchemaError(msg) from exc


def partial_qid(data: bytes) -> str:
    """Query id of a partial answer (the gather step's key)."""
    return str(decode_partial(data).qid)


# --- item-vector batches (the feedback topic) -----------------------------------------------------
# VectorBatch v1: tag 'B', version u16 = 1, ts i64 (newest event time inside, at the same offset as an
# ItemVectorMsg's so `vector_msg_ts` reads both), N u32, then N times (u32 length, ItemVectorMsg).
# Why batches: the user stage reads the feedback as the second input of a two-input operator, and Flink
# alternates between inputs record by record; one record per item vector let the feedback (hundreds of
# vectors per second) fall ever further behind the events (tens per second), so the user stage learned
# against item vectors that grew minutes old. A batch is one record, whatever its size.

_BATCH: Final = struct.Struct("<BHqI")
_LEN: Final = struct.Struct("<I")


def encode_vector_batch(msgs: list[bytes]) -> bytes:
    """One feedback record holding several ItemVectorMsg records."""
    ts = max((vector_msg_ts(m) for m in msgs), default=0)
    parts = [_BATCH.pack(TAGS["vector_batch_msg"], 1, ts, len(msgs))]
    for m in msgs:
        parts += [_LEN.pack(len(m)), m]
    return b"".join(parts)


def decode_vector_batch(data: bytes) -> list[bytes]:
    """The ItemVectorMsg records of a batch (each still encoded)."""
    try:
        tag, version, _ts, n = _BATCH.unpack_from(data)
    except struct.error as exc:
        msg = f"vector_batch_msg: record of {len(data)} bytes is too short: {exc}"
        raise SchemaError(msg) from exc
    if tag != TAGS["vector_batch_msg"] or version != 1:
        msg = f"vector_batch_msg: expected tag 'B' v1, got tag {tag} v{version}: producer and consumer builds differ"
        raise SchemaError(msg)
    return split_prefixed(data, _BATCH.size, n, "vector_batch_msg")

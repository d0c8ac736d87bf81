"""Batch records between the job's micro-batched stages, binary and versioned like state.

Why batches: a PyFlink thread-mode operator costs tens of microseconds per record whatever it does
(../shared/MEASUREMENTS.md), so the job moves many events per record between its Python stages.
Neither format is ever kept as state or on a public topic: they live between two operators of one
build, inside one checkpoint.

RecordBatch v1, events router → user shards (the index stage gets `state_schemas.shares` ShareBatch records)::

    offset  size  field
    0       1     tag 'K'
    1       2     version u16 = 1
    3       8     watermark i64: event time every later record of this channel is at or after
                  (NO_TS: none yet); the receiver closes sessions up to it after the records
    11      4     N u32, then N times (u32 length, record bytes): records with their own headers
                  (events 'E', requests 'R', queries 'Q', interactions 'N'), in stream order

GradBatch v1, user shards → item shards: item gradients of one user-shard batch, summed per item::

    0       1     tag 'H'
    1       2     version u16 = 1
    3       8     ts i64: newest event time among the interactions that produced them
    11      4     N u32 items
    15      2     D u16
    17      4N·D  f32[N, D] summed weighted vector gradients (ascent direction)
    ...     4N    f32[N] summed weighted bias gradients
    ...     4N    u32[N] gradients summed per item
    ...     2N    u16[N] UTF-8 length of each item id, then the ids back to back
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from state_schemas.codec import NO_TS, TAGS
from state_schemas.errors import SchemaError

_REC: Final = struct.Struct("<BHqI")
_LEN: Final = struct.Struct("<I")
_GRAD: Final = struct.Struct("<BHqIH")
_REC_TAG: Final = TAGS["record_batch"]
_GRAD_TAG: Final = TAGS["grad_batch"]


def encode_records(records: list[bytes], watermark: int = NO_TS) -> bytes:
    """One RecordBatch holding ``records`` (each already encoded) and the sender's watermark."""
    parts = [_REC.pack(_REC_TAG, 1, watermark, len(records))]
    for r in records:
        parts += [_LEN.pack(len(r)), r]
    return b"".join(parts)


def decode_records(data: bytes) -> tuple[int, list[bytes]]:
    """(watermark, records) of a RecordBatch; a foreign, newer or truncated record raises SchemaError."""
    try:
        tag, version, watermark, n = _REC.unpack_from(data)
    except struct.error as exc:
        msg = f"record_batch: record of {len(data)} bytes is too short: {exc}"
        raise SchemaError(msg) from exc
    if tag != _REC_TAG or version != 1:
        msg = f"record_batch: expected tag 'K' v1, got tag {tag} v{version}: producer and consumer builds differ"
        raise SchemaError(msg)
    out = split_prefixed(data, _REC.size, n, "record_batch")
    return watermark, out


def split_prefixed(data: bytes, pos: int, n: int, name: str) -> list[bytes]:
    """``n`` records of (u32 length, bytes) from ``pos`` to the end of ``data``; SchemaError naming ``name``."""
    out: list[bytes] = []
    end = len(data)
    for _ in range(n):
        if pos + 4 > end:
            msg = f"{name}: {n} records announced, the batch ends after {len(out)}"
            raise SchemaError(msg)
        (size,) = _LEN.unpack_from(data, pos)
        pos += 4
        if pos + size > end:
            msg = f"{name}: record {len(out)} of {size} bytes overruns the batch"
            raise SchemaError(msg)
        out.append(data[pos : pos + size])
        pos += size
    if pos != end:
        msg = f"{name}: {end - pos} unexpected trailing bytes"
        raise SchemaError(msg)
    return out


class GradBatch(NamedTuple):
    """Item gradients of one user-shard batch, one row per distinct item."""

    ts: int
    item_ids: list[str]
    vec: NDArray[np.float32]  # (N, D)
    bias: NDArray[np.float32]  # (N,)
    count: NDArray[np.uint32]  # type: ignore[assignment]  # (N,); shadows tuple.count, the field name is the API


def encode_grads(g: GradBatch) -> bytes:
    """Bytes of a GradBatch (layout in the module docstring)."""
    n = len(g.item_ids)
    vec = np.ascontiguousarray(g.vec, dtype="<f4")
    vec = vec.reshape(n, vec.shape[-1] if vec.ndim == 2 else 0)
    names = [i.encode() for i in g.item_ids]
    return b"".join((
        _GRAD.pack(_GRAD_TAG, 1, g.ts, n, vec.shape[1] if n else 0),
        vec.tobytes(),
        np.ascontiguousarray(g.bias, dtype="<f4").tobytes(),
        np.ascontiguousarray(g.count, dtype="<u4").tobytes(),
        np.fromiter((len(b) for b in names), dtype="<u2", count=n).tobytes(),
        *names,
    ))


def decode_grads(data: bytes) -> GradBatch:
    """GradBatch from bytes; a foreign, newer or truncated record raises SchemaError naming it."""
    try:
        tag, version, ts, n, dim = _GRAD.unpack_from(data)
    except struct.error as exc:
        msg = f"grad_batch: record of {len(data)} bytes is too short: {exc}"
        raise SchemaError(msg) from exc
    if tag != _GRAD_TAG or version != 1:
        msg = f"grad_batch: expected tag 'H' v1, got tag {tag} v{version}: producer and consumer builds differ"
        raise SchemaError(msg)
    pos = _GRAD.size
    fixed = 4 * n * dim + 4 * n + 4 * n + 2 * n
    if pos + fixed > len(data):
        msg = f"grad_batch: {n} items of dimension {dim} announced, the record has {len(data)} bytes"
        raise SchemaError(msg)
    vec = np.frombuffer(data, dtype="<f4", count=n * dim, offset=pos).reshape(n, dim)
    pos += 4 * n * dim
    bias = np.frombuffer(data, dtype="<f4", count=n, offset=pos)
    pos += 4 * n
    count = np.frombuffer(data, dtype="<u4", count=n, offset=pos)
    pos += 4 * n
    lens = np.frombuffer(data, dtype="<u2", count=n, offset=pos).tolist()
    pos += 2 * n
    if pos + sum(lens) != len(data):
        msg = f"grad_batch: item ids take {sum(lens)} bytes, the record has {len(data) - pos} left"
        raise SchemaError(msg)
    ids = []
    for size in lens:
        ids.append(data[pos : pos + size].decode())
        pos += size
    return GradBatch(ts, ids, vec, bias, count)

"""FeatureBatch v1: the drift features of one batch, from a user shard (or the gather step) to the drift monitor.

Why one record per batch: the job's Python stages exchange one record per batch, never per event
(docs/architecture.md, "Batches"), so the samples a batch contributes to every drift feature travel
together, as packed float32 arrays rather than JSON. Not state and not on a public topic: it lives
between two operators of one build, inside one checkpoint.

Each feature carries its samples and the event-time span they came from, so the monitor can say which
event time a window covers (the spans go into the alert).

Byte layout, v1 (all little endian)::

    offset  size  field
    0       1     tag 'F'
    1       2     version u16 = 1
    3       2     F u16: features in the batch, then F times:
                    1    L u8: UTF-8 length of the feature name (1..255)
                    L    the name (`operators.drift.features` lists the names)
                    8    start_ts i64: earliest event time among the samples' sources
                    8    end_ts i64: latest
                    4    N u32 samples
                    4N   f32[N] samples

>>> fb = (FeatureSamples.from_array("dwell_ms", 10, 20, [1.0, 2.5]),)
>>> decode(encode(fb))[0].values().tolist()
[1.0, 2.5]
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from state_schemas.codec import TAGS, VersionedCodec, corrupt

SCHEMA_VERSION: Final = 1
_NAME: Final = "feature_batch"
_HEAD: Final = struct.Struct("<BHH")
_FEATURE: Final = struct.Struct("<qqI")
MAX_NAME_BYTES: Final = 255


class FeatureSamples(NamedTuple):
    """One feature's samples in one batch: name, event-time span, float32 samples (as bytes).

    The samples are kept as little-endian float32 bytes, so the value compares and hashes like the
    record it came from (like `state_schemas.item_vector.ItemVector`); `values()` is a numpy view.
    """

    name: str
    start_ts: int
    end_ts: int
    data: bytes  # float32 little endian

    @property
    def size(self) -> int:
        """Number of samples."""
        return len(self.data) // 4

    def values(self) -> NDArray[np.float32]:
        """The samples as a read-only float32 array (a view, no copy)."""
        return np.frombuffer(self.data, dtype="<f4")

    @classmethod
    def from_array(cls, name: str, start_ts: int, end_ts: int, values: ArrayLike) -> FeatureSamples:
        """Samples of ``name`` from any 1-d array-like (stored as float32)."""
        arr = np.asarray(values, dtype="<f4")
        if arr.ndim != 1:
            msg = f"feature {name!r}: samples must be 1-d, got shape {arr.shape}"
            raise ValueError(msg)
        return cls(name, start_ts, end_ts, arr.tobytes())


#: The drift features of one batch, one entry per feature that has samples in it.
FeatureBatch = tuple[FeatureSamples, ...]


def _encode(batch: FeatureBatch) -> bytes:
    parts = [_HEAD.pack(TAGS[_NAME], SCHEMA_VERSION, len(batch))]
    for f in batch:
        name = f.name.encode()
        if not 0 < len(name) <= MAX_NAME_BYTES or len(f.data) % 4:
            msg = f"feature {f.name!r}: name of {len(name)} bytes (1..{MAX_NAME_BYTES}) or {len(f.data)} sample bytes"
            raise ValueError(msg)
        parts += [bytes((len(name),)), name, _FEATURE.pack(f.start_ts, f.end_ts, len(f.data) // 4), f.data]
    return b"".join(parts)


def _decode(data: bytes) -> FeatureBatch:
    _, _, count = _HEAD.unpack_from(data)
    pos = _HEAD.size
    out: list[FeatureSamples] = []
    for _ in range(count):
        size = data[pos]
        if size == 0:
            raise corrupt(_NAME, f"feature {len(out)} has an empty name")
        name = data[pos + 1 : pos + 1 + size].decode()
        pos += 1 + size
        start, end, n = _FEATURE.unpack_from(data, pos)
        pos += _FEATURE.size
        if pos + 4 * n > len(data):
            raise corrupt(_NAME, f"feature {name!r} announces {n} samples, {len(data) - pos} bytes left")
        out.append(FeatureSamples(name, start, end, data[pos : pos + 4 * n]))
        pos += 4 * n
    if pos != len(data):
        raise corrupt(_NAME, f"{len(data) - pos} bytes after the last of {count} features")
    return tuple(out)


CODEC: Final[VersionedCodec[FeatureBatch]] = VersionedCodec(
    name=_NAME, tag=TAGS[_NAME], version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}
)

encode = CODEC.encode
decode = CODEC.decode

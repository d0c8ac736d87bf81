"""Adjustment v1: a temporary change of one model knob after a drift alert (`operators.drift.actions`).

An adjustment multiplies one knob by ``factor`` for the event times in ``[start_ts, until_ts)``: event
time, so a replay applies it to the same events and queries. It is derived from an alert of the
`alerts` topic by a pure function (`operators.drift.actions.plan`), so any stage that reads that topic
back can rebuild it; this record is the form in which it travels to such a stage (a tag of its own, so a
stage that dispatches on the tag byte of its input recognises it).

Targets (wire values: append, never rename): ``popularity_weight`` (the popularity term of the ranking
blend, `operators.learner.blend`), ``learning_rate`` (the BPR learning rate of the user and item stages).

Byte layout, v1 (all little endian)::

    offset  size  field
    0       1     tag 'J'
    1       2     version u16 = 1
    3       8     factor f64: multiplier of the knob
    11      8     start_ts i64: first event time it applies to
    19      8     until_ts i64: first event time it no longer applies to
    27      1     T u8, then T bytes: UTF-8 target
    ...     1     L u8, then L bytes: UTF-8 name of the feature whose alert caused it

>>> a = Adjustment(POPULARITY_WEIGHT, 2.0, 1_000, 61_000, "category")
>>> decode(encode(a)) == a
True
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from state_schemas.codec import TAGS, VersionedCodec, corrupt

SCHEMA_VERSION: Final = 1
_NAME: Final = "adjustment"
_FIXED: Final = struct.Struct("<BHdqq")

POPULARITY_WEIGHT: Final = "popularity_weight"
LEARNING_RATE: Final = "learning_rate"
TARGETS: Final = (POPULARITY_WEIGHT, LEARNING_RATE)


class Adjustment(NamedTuple):
    """Multiply ``target`` by ``factor`` for event times in ``[start_ts, until_ts)``."""

    target: str
    factor: float
    start_ts: int
    until_ts: int
    feature: str

    def active(self, ts: int) -> bool:
        """Does it apply at event time ``ts``?"""
        return self.start_ts <= ts < self.until_ts


def _short(text: str, what: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        msg = f"adjustment {what} {text[:20]!r}... has {len(raw)} UTF-8 bytes, at most 255"
        raise ValueError(msg)
    return bytes((len(raw),)) + raw


def _encode(a: Adjustment) -> bytes:
    return b"".join((_FIXED.pack(TAGS[_NAME], SCHEMA_VERSION, a.factor, a.start_ts, a.until_ts),
                     _short(a.target, "target"), _short(a.feature, "feature")))


def _decode(data: bytes) -> Adjustment:
    _, _, factor, start, until = _FIXED.unpack_from(data)
    pos = _FIXED.size
    texts = []
    for _ in range(2):
        size = data[pos]
        if pos + 1 + size > len(data):
            raise corrupt(_NAME, f"text of {size} bytes announced, {len(data) - pos - 1} left")
        texts.append(data[pos + 1 : pos + 1 + size].decode())
        pos += 1 + size
    if pos != len(data):
        raise corrupt(_NAME, f"{len(data) - pos} bytes after the feature name")
    return Adjustment(texts[0], factor, start, until, texts[1])


CODEC: Final[VersionedCodec[Adjustment]] = VersionedCodec(
    name=_NAME, tag=TAGS[_NAME], version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}
)

encode = CODEC.encode
decode = CODEC.decode

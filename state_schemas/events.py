"""Interaction events: the current contract version and the binary codec used between operators.

Import from here, not from a versioned module: `Event` is the in-job type of the current version.

>>> ev = Event("e1", "u1", "i1", "view", 1_700_000_000_000, category="books")
>>> decode_event(encode_event(ev)) == ev
True
"""

from __future__ import annotations

from typing import Final

from state_schemas import events_v1
from state_schemas.codec import TAGS, VersionedCodec
from state_schemas.events_v1 import (
    CONVERSION_TYPES,
    EVENT_TYPE_CODES,
    EVENT_TYPE_NAMES,
    EVENT_TYPE_WEIGHTS,
    EventV1,
    EventWireV1,
)

__all__ = [
    "CODEC",
    "CONVERSION_TYPES",
    "EVENT_TYPE_CODES",
    "EVENT_TYPE_NAMES",
    "EVENT_TYPE_WEIGHTS",
    "SCHEMA_VERSION",
    "Event",
    "EventWire",
    "decode_event",
    "encode_event",
]

SCHEMA_VERSION: Final = events_v1.SCHEMA_VERSION
Event = EventV1
EventWire = EventWireV1

CODEC: Final[VersionedCodec[EventV1]] = VersionedCodec(
    name="event",
    tag=TAGS["event"],
    version=SCHEMA_VERSION,
    encoder=events_v1.encode,
    decoders={1: events_v1.decode},
)

encode_event = CODEC.encode
decode_event = CODEC.decode

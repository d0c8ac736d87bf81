"""Event contract v1: the JSON a producer writes to the events topic, and the in-job `EventV1`.

Wire format: one UTF-8 JSON object per Kafka record value, no BOM, at most 16 KiB by default. The
record key is free; the job keys by ``user_id``. `event.v1.schema.json` beside this module is
generated from `EventWireV1` (``python -m state_schemas.events_v1 > state_schemas/event.v1.schema.json``)
and a contract test keeps the two equal.

Fields: ``event_id``, ``user_id``, ``item_id``, ``type``, ``ts`` are required; ``category``,
``dwell_ms``, ``session_hint``, ``price``, ``schema_version`` are optional.

Rules decided for v1 (tested in ``tests/unit/events`` and ``tests/contracts``):

- **Ids** (``event_id``, ``user_id``, ``item_id``): a JSON string of 1..128 characters without control
  characters (U+0000..U+001F, U+007F), or a JSON integer in [0, 2**63). Integers are normalised to
  their decimal string (MovieLens ids are integers): ``7`` and ``"7"`` are the same id, ``"007"`` is
  another one. Floats, booleans, null, arrays and objects are rejected (``wrong_type``).
- **Free text** (``category``, ``session_hint``): same rule as string ids. Nothing is trimmed or
  case-folded: ``"Books"`` and ``"books"`` are two categories.
- **ts**: event time as a JSON integer of epoch milliseconds (UTC). Not seconds, not a float, not a
  string. Plausibility (not before 2000-01-01, at most ``max_skew_ms`` ahead of the validator's clock)
  is checked by `operators.events.logic.validate`, whose clock is a parameter.
- **dwell_ms**: integer in [0, 86_400_000] (one day). **price**: finite number >= 0 (an integer is
  accepted and becomes a float).
- **Optional fields**: absent and ``null`` mean the same thing.
- **Unknown fields are ignored and counted**: their names and values are neither validated nor
  forwarded; `EventV1.ignored_fields` carries how many there were (capped at 65535) so the ingress
  operator can export a metric. A v1 reader thus accepts payloads of a producer that already sends
  newer optional fields (forward compatible).
- **Duplicate keys** in the object: the last one wins (what JSON parsers do).
- **schema_version**: absent or ``1``; anything else is rejected as ``unsupported_version``.
- **type**: a key of `EVENT_TYPE_WEIGHTS`. That table is data: its order gives each type the wire
  code used by the binary codec, so new types are appended, never reordered or removed.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from state_schemas.codec import TAGS, corrupt

SCHEMA_VERSION: Final = 1

#: Event types of contract v1 and their default weight (interest, engagement). Insertion order is the
#: wire code of the binary codec: append only.
EVENT_TYPE_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "view": 1.0,
        "click": 1.5,
        "add_to_cart": 3.0,
        "remove_from_cart": 0.0,
        "purchase": 5.0,
        "rate": 2.0,
    }
)
#: Types that make a session "converted".
CONVERSION_TYPES: Final = frozenset({"purchase"})

EVENT_TYPE_NAMES: Final[tuple[str, ...]] = tuple(EVENT_TYPE_WEIGHTS)
EVENT_TYPE_CODES: Final[Mapping[str, int]] = MappingProxyType({n: i for i, n in enumerate(EVENT_TYPE_NAMES)})

MAX_TEXT_CHARS: Final = 128
MAX_DWELL_MS: Final = 86_400_000
MAX_INT_ID: Final = 2**63
MAX_IGNORED_FIELDS: Final = 0xFFFF

if TYPE_CHECKING:
    EventTypeName = str
else:
    EventTypeName = Literal[EVENT_TYPE_NAMES]


def _no_control_chars_schema(schema: dict[str, Any]) -> None:
    # The JSON Schema form of the rule avoids anchors: in Python's `re` (used by the `jsonschema`
    # package) `$` also matches before a final newline, so "^[^...]+$" would let "id\n" through there.
    schema.pop("pattern", None)
    schema["not"] = {"pattern": "[\\x00-\\x1f\\x7f]"}


# The pydantic pattern runs on Rust's regex engine, where `$` is the end of the text.
_Text = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(json_schema_extra=_no_control_chars_schema),
]
_IntId = Annotated[int, Field(strict=True, ge=0, lt=MAX_INT_ID)]
_Id = Annotated[_Text | _IntId, AfterValidator(str)]


class EventWireV1(BaseModel):
    """The JSON object of contract v1, as validated (the source of `event.v1.schema.json`)."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        title="liverec interaction event v1",
        json_schema_extra={
            "description": (
                "One user-item interaction. Unknown fields are ignored (and counted). ts is epoch "
                "milliseconds UTC, not before 2000-01-01 and at most 1 day (configurable) ahead of the "
                "consumer's clock. Integer ids are normalised to their decimal string."
            ),
        },
    )

    event_id: _Id = Field(description="Unique id of the event, used to drop redelivered duplicates.")
    user_id: _Id
    item_id: _Id
    type: EventTypeName
    ts: Annotated[int, Field(strict=True, description="Event time, epoch milliseconds UTC.")]
    category: _Text | None = None
    dwell_ms: Annotated[int, Field(strict=True, ge=0, le=MAX_DWELL_MS)] | None = None
    session_hint: _Text | None = None
    price: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None = None
    schema_version: Literal[1] = 1


class EventV1(NamedTuple):
    """One validated interaction, as passed between operators (see `encode` for its byte layout).

    An immutable `NamedTuple` rather than a frozen dataclass: a frozen dataclass's ``__init__`` costs
    ~2 us for a record this size (one ``object.__setattr__`` per field), a tuple ~0.4 us, and records
    are built several times per event on the hot path. Build it with keywords; never index it.
    """

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: int
    category: str | None = None
    dwell_ms: int | None = None
    session_hint: str | None = None
    price: float | None = None
    ignored_fields: int = 0

    @property
    def weight(self) -> float:
        """Default weight of the event's type (the contract table)."""
        return EVENT_TYPE_WEIGHTS[self.type]


def from_wire(model: EventWireV1) -> EventV1:
    """The in-job event of a validated wire object."""
    extra = model.__pydantic_extra__
    # positional, in field order: a NamedTuple built with keywords costs 2.5x more (hot path)
    return EventV1(
        model.event_id,  # type: ignore[arg-type]  # AfterValidator(str) made every id a str
        model.user_id,  # type: ignore[arg-type]
        model.item_id,  # type: ignore[arg-type]
        model.type,
        model.ts,
        model.category,
        model.dwell_ms,
        model.session_hint,
        model.price,
        min(len(extra), MAX_IGNORED_FIELDS) if extra else 0,  # ignored_fields
    )


# Binary layout of an event, v1 (all little endian):
#
#   offset  size  field
#   0       1     tag 'E' (0x45)
#   1       2     version u16 = 1
#   3       8     ts, i64 epoch ms
#   11      1     type code, u8: index in EVENT_TYPE_NAMES
#   12      1     presence flags, u8: 1 category, 2 dwell_ms, 4 session_hint, 8 price
#   13      4     dwell_ms, u32 (0 when absent)
#   17      8     price, f64 (0.0 when absent)
#   25      2     ignored_fields, u16
#   27      10    UTF-8 byte lengths, u16 each: event_id, user_id, item_id, category, session_hint
#   37      ...   the five strings' UTF-8 bytes back to back (absent ones have length 0)
_FIXED: Final = struct.Struct("<BHqBBIdH5H")
_NAME: Final = "event"
_TAG: Final = TAGS["event"]
_F_CATEGORY, _F_DWELL, _F_HINT, _F_PRICE = 1, 2, 4, 8


def encode(event: EventV1) -> bytes:
    """Compact bytes of ``event`` (about 37 bytes plus its strings)."""
    eid = event.event_id.encode()
    uid = event.user_id.encode()
    iid = event.item_id.encode()
    cat = b"" if event.category is None else event.category.encode()
    hint = b"" if event.session_hint is None else event.session_hint.encode()
    flags = (
        (event.category is not None) * _F_CATEGORY
        | (event.dwell_ms is not None) * _F_DWELL
        | (event.session_hint is not None) * _F_HINT
        | (event.price is not None) * _F_PRICE
    )
    head = _FIXED.pack(
        _TAG,
        SCHEMA_VERSION,
        event.ts,
        EVENT_TYPE_CODES[event.type],
        flags,
        event.dwell_ms or 0,
        event.price or 0.0,
        event.ignored_fields,
        len(eid),
        len(uid),
        len(iid),
        len(cat),
        len(hint),
    )
    return b"".join((head, eid, uid, iid, cat, hint))


def decode(data: bytes) -> EventV1:
    """`EventV1` from bytes made by `encode` (header already checked by the codec)."""
    _, _, ts, code, flags, dwell, price, ignored, n1, n2, n3, n4, n5 = _FIXED.unpack_from(data)
    a = _FIXED.size
    b = a + n1
    c = b + n2
    d = c + n3
    e = d + n4
    f = e + n5
    if f != len(data):
        raise corrupt(_NAME, f"string lengths add up to {f} bytes, blob has {len(data)}")
    return EventV1(
        data[a:b].decode(),  # event_id
        data[b:c].decode(),  # user_id
        data[c:d].decode(),  # item_id
        EVENT_TYPE_NAMES[code],  # type
        ts,  # ts
        data[d:e].decode() if flags & _F_CATEGORY else None,  # category
        dwell if flags & _F_DWELL else None,  # dwell_ms
        data[e:f].decode() if flags & _F_HINT else None,  # session_hint
        price if flags & _F_PRICE else None,  # price
        ignored,  # ignored_fields
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the wire object, with the event-type table attached as data."""
    schema = EventWireV1.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:liverec:schema:event:v1",
        **schema,
        "additionalProperties": True,
        "x-liverec-event-types": [
            {
                "code": code,
                "type": name,
                "weight": EVENT_TYPE_WEIGHTS[name],
                "conversion": name in CONVERSION_TYPES,
            }
            for name, code in EVENT_TYPE_CODES.items()
        ],
        "x-liverec-ts-range": {
            "min": "2000-01-01T00:00:00Z (946684800000)",
            "max": "consumer clock + max_skew_ms (default 86400000)",
        },
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")

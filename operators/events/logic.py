"""Validation of raw event records: bytes in, `Event` or `Rejection` out, never an exception.

Pure: no pyflink import, the clock is the ``now_ms`` parameter. The Flink adapter sends `Event`s on
(`state_schemas.events.encode_event`) and `Rejection`s to the dead-letter topic via `dead_letter`.

>>> raw = b'{"event_id": "e1", "user_id": 42, "item_id": "i9", "type": "view", "ts": 1700000000000}'
>>> validate(raw, now_ms=1_700_000_000_000).user_id
'42'
>>> validate(b'{"event_id": "e1"}', now_ms=1_700_000_000_000).reason
<Reason.MISSING_FIELD: 'missing_field'>
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import ValidationError

from state_schemas.events import EVENT_TYPE_NAMES, Event, EventWire
from state_schemas.events_v1 import from_wire

DEFAULT_MAX_BYTES: Final = 16_384
DEFAULT_MAX_SKEW_MS: Final = 86_400_000  # one day ahead of the clock
MIN_TS_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
DEAD_LETTER_VERSION: Final = 1
DEFAULT_MAX_DEAD_LETTER_PAYLOAD: Final = 65_536


class Reason(StrEnum):
    """Stable codes of a rejection (metric labels, dead-letter field): append, never rename."""

    EMPTY = "empty"  # null value (tombstone) or 0 bytes
    OVERSIZE = "oversize"
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    INTERNAL_ERROR = "internal_error"  # a bug of the validator; the record is kept, the job goes on


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is not an event: a stable code and a sentence naming the field."""

    reason: Reason
    detail: str


# What each field must be, for wrong_type messages.
_EXPECTED: Final[Mapping[str, str]] = {
    "event_id": "a string or a non-negative integer",
    "user_id": "a string or a non-negative integer",
    "item_id": "a string or a non-negative integer",
    "ts": "an integer (epoch milliseconds)",
    "category": "a string or null",
    "dwell_ms": "an integer or null",
    "session_hint": "a string or null",
    "price": "a number or null",
    "schema_version": "the integer 1",
}
_JSON_TYPE: Final[Mapping[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
    dict: "an object",
    list: "an array",
}


def validate(
    raw: bytes | bytearray | memoryview | None,
    *,
    now_ms: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    min_ts_ms: int = MIN_TS_MS,
) -> Event | Rejection:
    """Parse and check one record value against event contract v1 (`state_schemas.events_v1`).

    ``ts`` must lie in [``min_ts_ms``, ``now_ms + max_skew_ms``]. Replaying an old dataset (MovieLens
    100K is from 1997-98) needs either shifted timestamps or a lower ``min_ts_ms``.
    """
    try:
        if not raw:
            return Rejection(Reason.EMPTY, "record value is empty (null or 0 bytes); a tombstone is not an event")
        if len(raw) > max_bytes:
            return Rejection(Reason.OVERSIZE, f"record value is {len(raw)} bytes, the limit is {max_bytes}")
        if isinstance(raw, memoryview):
            raw = raw.tobytes()
        try:
            wire = EventWire.model_validate_json(raw)
        except ValidationError as exc:
            return _rejection(exc, raw)
        ts = wire.ts
        if ts < min_ts_ms or ts > now_ms + max_skew_ms:
            return Rejection(
                Reason.TS_OUT_OF_RANGE,
                f"field 'ts': {ts} is outside [{min_ts_ms}, {now_ms + max_skew_ms}] "
                f"(not before {min_ts_ms}, at most {max_skew_ms} ms ahead of now={now_ms}); "
                "ts is epoch milliseconds, not seconds",
            )
        return from_wire(wire)
    except Exception as exc:  # noqa: BLE001 - one bad record must never stop the job
        return Rejection(Reason.INTERNAL_ERROR, f"validator failed: {type(exc).__name__}: {exc}"[:500])


def _rejection(exc: ValidationError, raw: bytes | bytearray) -> Rejection:
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejection(Reason.NOT_UTF8, f"record value is not UTF-8: {bad.reason} at byte {bad.start}")
        return Rejection(Reason.BAD_JSON, f"record value is not JSON: {first['msg']}")
    loc = first["loc"]
    if not loc:
        return Rejection(Reason.NOT_OBJECT, f"record value is {json_type(first['input'])}, expected a JSON object")
    field = str(loc[0])
    mine = [e for e in errors if e["loc"] and e["loc"][0] == loc[0]]
    others = sorted({str(e["loc"][0]) for e in errors if e["loc"] and e["loc"][0] != loc[0]})
    reason, detail = _classify(field, mine)
    if others:
        detail += f" (also wrong: {', '.join(others)})"
    return Rejection(reason, detail)


def _classify(field: str, errors: list[Any]) -> tuple[Reason, str]:
    kinds = [e["type"] for e in errors]
    value = errors[0]["input"]
    if "missing" in kinds:
        return Reason.MISSING_FIELD, f"field '{field}' is required"
    if field == "schema_version":
        return (
            Reason.UNSUPPORTED_VERSION,
            f"schema_version {short(value)} is not supported; this build reads 1",
        )
    if field == "type":
        if not isinstance(value, str):
            return Reason.WRONG_TYPE, f"field 'type' must be a string, got {json_type(value)}"
        return (
            Reason.UNKNOWN_TYPE,
            f"field 'type': {short(value)} is not an event type of contract v1 ({', '.join(EVENT_TYPE_NAMES)})",
        )
    constraint = next((e for e in errors if not e["type"].endswith("_type")), None)
    if constraint is None:
        expected = _EXPECTED.get(field, "another type")
        return Reason.WRONG_TYPE, f"field '{field}' must be {expected}, got {json_type(value)}"
    msg = constraint["msg"]
    if constraint["type"] == "string_pattern_mismatch":
        msg = "must not contain control characters"
    return Reason.BAD_VALUE, f"field '{field}': {msg} (got {short(constraint['input'])})"


def json_type(value: object) -> str:
    """How a JSON value's type reads in a rejection message ("a string", "null", …)."""
    return _JSON_TYPE.get(type(value), type(value).__name__)


def short(value: object, limit: int = 60) -> str:
    """A repr cut to `limit` characters, so a rejection never carries a huge payload."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dead_letter(
    raw: bytes | bytearray | memoryview | None,
    reason: Reason | str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    now_ms: int,
    *,
    max_payload_bytes: int = DEFAULT_MAX_DEAD_LETTER_PAYLOAD,
) -> bytes:
    """Dead-letter record for a rejected record value: compact ASCII JSON, version 1.

    Fields: ``dead_letter_version`` (1), ``reason``, ``detail``, ``source`` {``topic``, ``partition``,
    ``offset``}, ``failed_at_ms`` (the caller's clock), ``payload_size`` (bytes of the original value),
    ``payload_truncated`` (the first ``max_payload_bytes`` are kept, so an oversize record still fits a
    Kafka message), ``payload_b64`` (standard base64 of the kept bytes; null for a null value).

    >>> rec = json.loads(dead_letter(b"{", "bad_json", "not JSON", "events", 0, 7, 1))
    >>> rec["reason"], rec["source"]["offset"], base64.b64decode(rec["payload_b64"])
    ('bad_json', 7, b'{')
    """
    payload = None if raw is None else bytes(raw)
    size = 0 if payload is None else len(payload)
    record = {
        "dead_letter_version": DEAD_LETTER_VERSION,
        "reason": str(reason),
        "detail": detail,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "failed_at_ms": now_ms,
        "payload_size": size,
        "payload_truncated": size > max_payload_bytes,
        "payload_b64": None if payload is None else base64.b64encode(payload[:max_payload_bytes]).decode("ascii"),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii")

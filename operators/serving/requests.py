"""Validation of raw request records: bytes in, `Request` or `Rejection` out, never an exception.

Pure: no pyflink import. Rejections reuse the event validator's stable reason codes
(`operators.events.logic.Reason`), so one dead-letter format and one metric label set cover both topics.

>>> validate(b'{"request_id": 1, "user_id": 42, "ts": 5}')
RequestV1(request_id='1', user_id='42', ts=5, k=10, exclude_seen=True, category=None, ignored_fields=0)
>>> validate(b'{"request_id": "r", "user_id": "u", "ts": 5, "k": 0}').reason
<Reason.BAD_VALUE: 'bad_value'>
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import ValidationError

from operators.events.logic import DEFAULT_MAX_BYTES, Reason, Rejection, json_type, short
from state_schemas.requests_v1 import MAX_K, RequestV1, RequestWireV1, from_wire

__all__ = ["Reason", "Rejection", "validate"]

_EXPECTED: Final[Mapping[str, str]] = {
    "request_id": "a string or a non-negative integer",
    "user_id": "a string or a non-negative integer",
    "k": f"an integer in 1..{MAX_K} or null",
    "exclude_seen": "a boolean or null",
    "filters": "an object or null",
    "filters.category": "a string or null",
    "ts": "an integer (epoch milliseconds)",
    "schema_version": "the integer 1",
}


def validate(
    raw: bytes | bytearray | memoryview | None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> RequestV1 | Rejection:
    """Parse and check one request record value against contract v1 (`state_schemas.requests_v1`)."""
    try:
        if not raw:
            return Rejection(Reason.EMPTY, "record value is empty (null or 0 bytes); a tombstone is not a request")
        if len(raw) > max_bytes:
            return Rejection(Reason.OVERSIZE, f"record value is {len(raw)} bytes, the limit is {max_bytes}")
        data = bytes(raw)
        try:
            return from_wire(RequestWireV1.model_validate_json(data))
        except ValidationError as exc:
            return _rejection(exc, data)
    except Exception as exc:  # noqa: BLE001 - one bad record must never stop the job
        return Rejection(Reason.INTERNAL_ERROR, f"request validator failed: {type(exc).__name__}: {exc}"[:500])


def _rejection(exc: ValidationError, raw: bytes) -> Rejection:
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejection(Reason.NOT_UTF8, f"record value is not UTF-8: {bad.reason} at byte {bad.start}")
        return Rejection(Reason.BAD_JSON, f"record value is not JSON: {first['msg']}")
    if not first["loc"]:
        return Rejection(Reason.NOT_OBJECT, f"record value is {json_type(first['input'])}, expected a JSON object")
    # A union (str | int ids) reports one error per branch at the same field: group them by field.
    field = _field(first["loc"])
    mine = [e for e in errors if _field(e["loc"]) == field]
    others = sorted({_field(e["loc"]) for e in errors} - {field})
    kinds = [e["type"] for e in mine]
    value = mine[0]["input"]
    if "missing" in kinds:
        reason, detail = Reason.MISSING_FIELD, f"field '{field}' is required"
    elif field == "schema_version":
        reason = Reason.UNSUPPORTED_VERSION
        detail = f"schema_version {short(value)} is not supported; this build reads 1"
    else:
        constraint = next((e for e in mine if not e["type"].endswith("_type")), None)
        if constraint is None:
            expected = _EXPECTED.get(field, "another type")
            reason, detail = Reason.WRONG_TYPE, f"field '{field}' must be {expected}, got {json_type(value)}"
        else:
            msg = constraint["msg"]
            if constraint["type"] == "string_pattern_mismatch":
                msg = "must not contain control characters"
            reason, detail = Reason.BAD_VALUE, f"field '{field}': {msg} (got {short(constraint['input'])})"
    if others:
        detail += f" (also wrong: {', '.join(others)})"
    return Rejection(reason, detail)


def _field(loc: tuple[int | str, ...]) -> str:
    # pydantic appends union-branch names ("str", "int", "constrained-str", ...) after the field names;
    # only names the contract declares are kept.
    parts = [str(p) for p in loc]
    if parts and parts[0] == "filters" and len(parts) > 1 and parts[1] == "category":
        return "filters.category"
    return parts[0] if parts else ""



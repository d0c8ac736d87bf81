"""`operators.events.logic.validate`: each rule of contract v1, and never an exception."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.events.logic import MIN_TS_MS, Reason, Rejection, dead_letter, validate
from state_schemas.events import Event
from tests.contracts.strategies import PROPS

NOW = 1_764_000_000_000
DAY = 86_400_000
BASE: dict[str, Any] = {"event_id": "e-1", "user_id": "u-1", "item_id": "i-1", "type": "view", "ts": NOW}


def run(doc: Any, **kw: Any) -> Event | Rejection:
    return validate(json.dumps(doc).encode(), now_ms=NOW, **kw)


def rejected(doc: Any, reason: Reason, field: str | None = None, **kw: Any) -> Rejection:
    got = run(doc, **kw)
    assert isinstance(got, Rejection), got
    assert got.reason is reason, got
    if field is not None:
        assert f"'{field}'" in got.detail, got.detail
    return got


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != name}


def test_minimal_event() -> None:
    assert run(BASE) == Event("e-1", "u-1", "i-1", "view", NOW)


def test_full_event() -> None:
    doc = with_(category="books", dwell_ms=1500, session_hint="s-7", price=12.5, schema_version=1)
    assert run(doc) == Event("e-1", "u-1", "i-1", "view", NOW, "books", 1500, "s-7", 12.5, 0)


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id"])
def test_integer_ids_become_decimal_strings(name: str) -> None:
    got = run(with_(**{name: 42}))
    assert isinstance(got, Event)
    assert getattr(got, name) == "42"
    assert run(with_(**{name: 0})) == got._replace(**{name: "0"})


@pytest.mark.parametrize("bad", [True, 1.5, 1.0, None, [], {}])
@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id"])
def test_ids_of_other_json_types_are_wrong_type(name: str, bad: Any) -> None:
    got = rejected(with_(**{name: bad}), Reason.WRONG_TYPE, name)
    assert "a string or a non-negative integer" in got.detail


@pytest.mark.parametrize("bad", ["", "x" * 129, "a\x00b", "tab\there", "nl\n", "\x7f", -1, 2**63])
@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id"])
def test_id_values_out_of_contract_are_bad_value(name: str, bad: Any) -> None:
    rejected(with_(**{name: bad}), Reason.BAD_VALUE, name)


def test_id_limits_are_inclusive() -> None:
    assert isinstance(run(with_(event_id="x" * 128, user_id=2**63 - 1)), Event)
    assert run(with_(item_id="ünï-☃")).item_id == "ünï-☃"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "type", "ts"])
def test_missing_required_field(name: str) -> None:
    got = rejected(without(name), Reason.MISSING_FIELD, name)
    assert got.detail == f"field '{name}' is required"


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "type", "ts"])
def test_null_required_field_is_wrong_type(name: str) -> None:
    rejected(with_(**{name: None}), Reason.WRONG_TYPE, name)


def test_unknown_type_names_the_known_ones() -> None:
    got = rejected(with_(type="like"), Reason.UNKNOWN_TYPE, "type")
    assert "'like'" in got.detail and "purchase" in got.detail
    rejected(with_(type="VIEW"), Reason.UNKNOWN_TYPE)
    rejected(with_(type=3), Reason.WRONG_TYPE, "type")


@pytest.mark.parametrize("bad", [float(NOW), str(NOW), True])
def test_ts_must_be_an_integer(bad: Any) -> None:
    rejected(with_(ts=bad), Reason.WRONG_TYPE, "ts")


def test_ts_range_bounds_are_inclusive() -> None:
    assert isinstance(run(with_(ts=MIN_TS_MS)), Event)
    assert isinstance(run(with_(ts=NOW + DAY)), Event)
    rejected(with_(ts=MIN_TS_MS - 1), Reason.TS_OUT_OF_RANGE, "ts")
    got = rejected(with_(ts=NOW + DAY + 1), Reason.TS_OUT_OF_RANGE, "ts")
    assert "milliseconds" in got.detail


def test_ts_in_seconds_is_out_of_range() -> None:
    rejected(with_(ts=NOW // 1000), Reason.TS_OUT_OF_RANGE)


def test_ts_limits_are_parameters() -> None:
    movielens = 881_250_949_000  # 1997-12-04
    rejected(with_(ts=movielens), Reason.TS_OUT_OF_RANGE)
    assert isinstance(run(with_(ts=movielens), min_ts_ms=0), Event)
    assert isinstance(run(with_(ts=NOW + 5 * DAY), max_skew_ms=7 * DAY), Event)


def test_optional_fields_null_means_absent() -> None:
    doc = with_(category=None, dwell_ms=None, session_hint=None, price=None)
    assert run(doc) == run(BASE)


@pytest.mark.parametrize(
    ("name", "bad", "reason"),
    [
        ("category", "", Reason.BAD_VALUE),
        ("category", "a\nb", Reason.BAD_VALUE),
        ("category", 7, Reason.WRONG_TYPE),
        ("session_hint", "x" * 129, Reason.BAD_VALUE),
        ("session_hint", ["s"], Reason.WRONG_TYPE),
        ("dwell_ms", -1, Reason.BAD_VALUE),
        ("dwell_ms", DAY + 1, Reason.BAD_VALUE),
        ("dwell_ms", 1.5, Reason.WRONG_TYPE),
        ("dwell_ms", "10", Reason.WRONG_TYPE),
        ("price", -0.01, Reason.BAD_VALUE),
        ("price", "9.99", Reason.WRONG_TYPE),
        ("price", True, Reason.WRONG_TYPE),
    ],
)
def test_optional_field_rules(name: str, bad: Any, reason: Reason) -> None:
    rejected(with_(**{name: bad}), reason, name)


def test_optional_field_limits_are_inclusive() -> None:
    got = run(with_(dwell_ms=DAY, price=0, category="c" * 128))
    assert isinstance(got, Event)
    assert got.price == 0.0 and isinstance(got.price, float)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_price_is_rejected(literal: bytes) -> None:
    raw = json.dumps(BASE).encode()[:-1] + b', "price": ' + literal + b"}"
    got = validate(raw, now_ms=NOW)
    assert isinstance(got, Rejection) and got.reason in (Reason.BAD_VALUE, Reason.BAD_JSON)


def test_schema_version() -> None:
    assert isinstance(run(with_(schema_version=1)), Event)
    got = rejected(with_(schema_version=2), Reason.UNSUPPORTED_VERSION)
    assert "2" in got.detail and "reads 1" in got.detail
    rejected(with_(schema_version="1"), Reason.UNSUPPORTED_VERSION)


def test_unknown_fields_are_ignored_and_counted() -> None:
    got = run(with_(rating=4, extra={"deep": [1, 2]}, Type="x"))
    assert isinstance(got, Event)
    assert got.ignored_fields == 3
    assert got._replace(ignored_fields=0) == run(BASE)


def test_duplicate_keys_last_one_wins() -> None:
    raw = b'{"event_id": "first", "event_id": "second", "user_id": "u", "item_id": "i", "type": "view", "ts": %d}'
    got = validate(raw % NOW, now_ms=NOW)
    assert isinstance(got, Event) and got.event_id == "second"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, Reason.EMPTY),
        (b"", Reason.EMPTY),
        (b"\xff\xfe{}", Reason.NOT_UTF8),
        (b'{"event_id": "\xc3\x28"}', Reason.NOT_UTF8),
        (b"{", Reason.BAD_JSON),
        (b"\xef\xbb\xbf" + json.dumps(BASE).encode(), Reason.BAD_JSON),  # no BOM
        (json.dumps(BASE).encode() + b" x", Reason.BAD_JSON),
        (b"[" * 5000, Reason.BAD_JSON),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b'"event"', Reason.NOT_OBJECT),
        (b"42", Reason.NOT_OBJECT),
        (b"null", Reason.NOT_OBJECT),
    ],
)
def test_record_level_rejections(raw: bytes | None, reason: Reason) -> None:
    got = validate(raw, now_ms=NOW)
    assert isinstance(got, Rejection) and got.reason is reason, got


def test_oversize_limit_is_inclusive() -> None:
    raw = json.dumps(BASE).encode()
    assert isinstance(validate(raw, now_ms=NOW, max_bytes=len(raw)), Event)
    got = validate(raw, now_ms=NOW, max_bytes=len(raw) - 1)
    assert isinstance(got, Rejection) and got.reason is Reason.OVERSIZE
    assert str(len(raw)) in got.detail


def test_bytes_like_inputs() -> None:
    raw = json.dumps(BASE).encode()
    assert validate(bytearray(raw), now_ms=NOW) == validate(memoryview(raw), now_ms=NOW) == run(BASE)


def test_several_problems_name_the_first_field_and_list_the_others() -> None:
    got = rejected({"event_id": 1.5, "user_id": "u", "item_id": "", "type": "view", "ts": "x"}, Reason.WRONG_TYPE)
    assert got.detail.startswith("field 'event_id'")
    assert "also wrong: item_id, ts" in got.detail


def test_non_bytes_input_is_an_internal_error_not_a_crash() -> None:
    got = validate(12345, now_ms=NOW)  # type: ignore[arg-type]
    assert isinstance(got, Rejection) and got.reason is Reason.INTERNAL_ERROR


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from([*BASE, "category", "dwell_ms", "session_hint", "price", "schema_version", "x"])


@PROPS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_and_reasons_are_known(raw: bytes) -> None:
    got = validate(raw, now_ms=NOW)
    assert isinstance(got, Event | Rejection)
    if isinstance(got, Rejection):
        assert got.reason in set(Reason) and got.reason is not Reason.INTERNAL_ERROR
        assert got.detail


@PROPS
@given(st.dictionaries(field_names, json_values, max_size=8), st.dictionaries(field_names, json_values))
def test_arbitrary_objects_never_raise_and_reasons_are_known(doc: dict[str, Any], more: dict[str, Any]) -> None:
    got = run({**BASE, **doc} if more else doc)
    if isinstance(got, Rejection):
        assert got.reason in set(Reason) and got.reason is not Reason.INTERNAL_ERROR
        assert got.detail


def test_dead_letter_record() -> None:
    raw = b'{"event_id": 1.5}'
    rec = json.loads(dead_letter(raw, Reason.WRONG_TYPE, "field 'event_id' ...", "events", 1, 99, NOW))
    assert rec == {
        "dead_letter_version": 1,
        "reason": "wrong_type",
        "detail": "field 'event_id' ...",
        "source": {"topic": "events", "partition": 1, "offset": 99},
        "failed_at_ms": NOW,
        "payload_size": len(raw),
        "payload_truncated": False,
        "payload_b64": base64.b64encode(raw).decode(),
    }


def test_dead_letter_of_null_and_oversize_payloads() -> None:
    rec = json.loads(dead_letter(None, "empty", "tombstone", "events", 0, 1, NOW))
    assert rec["payload_b64"] is None and rec["payload_size"] == 0
    big = bytes(range(256)) * 10
    rec = json.loads(dead_letter(big, "oversize", "too big", "events", 0, 2, NOW, max_payload_bytes=100))
    assert rec["payload_truncated"] is True and rec["payload_size"] == len(big)
    assert base64.b64decode(rec["payload_b64"]) == big[:100]


@PROPS
@given(st.binary(max_size=64), st.text(max_size=40))
def test_dead_letter_is_ascii_json_for_any_payload_and_detail(raw: bytes, detail: str) -> None:
    out = dead_letter(raw, Reason.BAD_JSON, detail, "events", 0, 0, NOW)
    out.decode("ascii")
    rec = json.loads(out)
    assert base64.b64decode(rec["payload_b64"]) == raw and rec["detail"] == detail

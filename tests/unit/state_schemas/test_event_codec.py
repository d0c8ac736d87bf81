"""Binary codec of `Event`: layout, golden bytes, corrupt input."""

from __future__ import annotations

import pytest

from pipeline.errors import SchemaError
from state_schemas.events import EVENT_TYPE_NAMES, Event, decode_event, encode_event

GOLDEN = Event("e1", "u1", "i1", "purchase", 1_700_000_000_000, "books", 1500, None, 9.5, 1)
# v1 bytes of GOLDEN. If this changes, stored events become unreadable: bump the version instead.
GOLDEN_HEX = "4501000068e5cf8b010000040bdc0500000000000000002340010002000200020005000000653175316931626f6f6b73"


def test_golden_bytes() -> None:
    assert encode_event(GOLDEN).hex() == GOLDEN_HEX
    assert decode_event(bytes.fromhex(GOLDEN_HEX)) == GOLDEN


def test_size_is_37_bytes_plus_strings() -> None:
    e = Event("evt-1", "user-1", "item-1", "view", 1_700_000_000_000)
    assert len(encode_event(e)) == 37 + len("evt-1user-1item-1")


def test_absent_and_empty_optionals_differ() -> None:
    e = Event("e", "u", "i", "view", 1, category=None, session_hint=None, dwell_ms=0, price=0.0)
    assert decode_event(encode_event(e)) == e
    f = Event("e", "u", "i", "view", 1, category="", session_hint="", dwell_ms=None, price=None)
    assert decode_event(encode_event(f)) == f


def test_every_type_round_trips() -> None:
    for t in EVENT_TYPE_NAMES:
        e = Event("e", "u", "i", t, 1)
        assert decode_event(encode_event(e)).type == t


def test_unknown_type_code_is_corrupt() -> None:
    blob = bytearray(encode_event(GOLDEN))
    blob[11] = 200
    with pytest.raises(SchemaError, match="corrupt"):
        decode_event(bytes(blob))


def test_out_of_range_fields_are_schema_errors() -> None:
    with pytest.raises(SchemaError, match="cannot encode EventV1"):
        encode_event(GOLDEN._replace(dwell_ms=-1))
    with pytest.raises(SchemaError):
        encode_event(GOLDEN._replace(type="like"))
    with pytest.raises(SchemaError):
        encode_event(GOLDEN._replace(ignored_fields=70_000))


def test_weight_comes_from_the_table() -> None:
    assert GOLDEN.weight == 5.0

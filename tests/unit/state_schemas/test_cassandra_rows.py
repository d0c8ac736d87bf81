from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from state_schemas.cassandra_rows import (
    ITEM_VECTORS,
    SESSIONS,
    TABLES,
    USER_PROFILES,
    blob,
    decode_rows,
    encode_rows,
)
from state_schemas.errors import SchemaError
from tests.contracts.strategies import PROPS

I64 = st.integers(-(2**63), 2**63 - 1)
# Any text a JSON encoder can produce (json.dumps(ensure_ascii=False) keeps non-ASCII), no lone surrogates.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
ROWS = st.lists(st.tuples(st.integers(0, len(TABLES) - 1), I64, TEXT), max_size=25)


def test_table_numbers_name_the_cql_tables() -> None:
    assert TABLES[USER_PROFILES] == "user_profiles"
    assert TABLES[SESSIONS] == "sessions"
    assert TABLES[ITEM_VECTORS] == "item_vectors"


@PROPS
@given(ROWS)
def test_round_trip_is_identity(rows: list[tuple[int, int, str]]) -> None:
    data = encode_rows(rows)
    assert decode_rows(data) == rows
    assert decode_rows(bytearray(data)) == rows
    assert encode_rows(decode_rows(data)) == data


def test_layout_is_the_documented_one() -> None:
    text = json.dumps({"user_id": "u1", "vector": blob(b"\x00\xab"), "recent_items": ["a", "é"]},
                      ensure_ascii=False)
    data = encode_rows([(ITEM_VECTORS, -5, text)])
    body = text.encode()
    assert data == b"W" + struct.pack("<HI", 1, 1) + struct.pack("<BqI", 2, -5, len(body)) + body
    assert blob(b"\x00\xab") == "0x00ab"


@PROPS
@given(ROWS.filter(bool), st.data())
def test_truncated_or_padded_batches_raise_schema_error(rows: list[tuple[int, int, str]], data: st.DataObject) -> None:
    blob_ = encode_rows(rows)
    cut = data.draw(st.integers(0, len(blob_) - 1))
    with pytest.raises(SchemaError, match="cassandra_rows"):
        decode_rows(blob_[:cut])
    with pytest.raises(SchemaError, match="trailing"):
        decode_rows(blob_ + data.draw(st.binary(min_size=1, max_size=9)))


@PROPS
@given(st.binary(max_size=200))
def test_arbitrary_bodies_decode_or_raise_schema_error(junk: bytes) -> None:
    try:
        rows = decode_rows(b"W" + struct.pack("<H", 1) + junk)
    except SchemaError:
        return
    assert all(0 <= t < len(TABLES) for t, _, _ in rows)


def test_foreign_newer_and_unknown_tables_are_refused_naming_the_format() -> None:
    from state_schemas.batches import encode_records

    with pytest.raises(SchemaError, match="'record_batch' record"):
        decode_rows(encode_records([b"x"]))
    good = bytearray(encode_rows([(USER_PROFILES, 1, "{}")]))
    newer = bytearray(good)
    struct.pack_into("<H", newer, 1, 2)
    with pytest.raises(SchemaError, match="version 2"):
        decode_rows(newer)
    good[7] = len(TABLES)  # the first row's table byte
    with pytest.raises(SchemaError, match="names table 3"):
        decode_rows(good)
    bad_utf8 = encode_rows([(SESSIONS, 1, "ab")]).replace(b"ab", b"\xff\xfe")
    with pytest.raises(SchemaError, match="not UTF-8"):
        decode_rows(bad_utf8)


@pytest.mark.parametrize(
    ("row", "why"),
    [((3, 1, "{}"), "table 3"), ((-1, 1, "{}"), "table -1"), ((0, 2**63, "{}"), "out of range"),
     ((0, 1, "\ud800"), "surrogate"), ((0, 1, b"{}"), "encode")],
)
def test_unencodable_rows_raise_schema_error_naming_the_row(row: tuple, why: str) -> None:
    with pytest.raises(SchemaError, match="row 1 of 2") as err:
        encode_rows([(USER_PROFILES, 1, "{}"), row])
    assert why in str(err.value)

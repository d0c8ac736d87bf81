"""Records between operators (`state_schemas.messages`): round trips, documented layout, foreign records."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.errors import SchemaError
from state_schemas import item_vector
from state_schemas.item_vector import ItemVector
from state_schemas.messages import (
    ItemUpdate,
    decode_update,
    decode_vector_msg,
    encode_update,
    encode_vector_msg,
    vector_msg_ts,
)
from tests.contracts.strategies import PROPS

I64 = st.integers(-(2**63), 2**63 - 1)
F32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
# Any text UTF-8 can carry (hypothesis' default alphabet has no lone surrogates), the empty id included:
# the records themselves put no rule on ids (the event contract does, upstream).
ITEM_IDS = st.text(max_size=40)


@st.composite
def vectors(draw: st.DrawFn, min_dim: int = 1, max_dim: int = 128) -> np.ndarray:
    dim = draw(st.integers(min_dim, max_dim))
    return draw(arrays(np.float32, dim, elements=F32))


@st.composite
def item_states(draw: st.DrawFn) -> ItemVector:
    return ItemVector.from_array(
        draw(vectors()),
        bias=draw(st.floats(allow_nan=False, allow_infinity=False)),
        update_count=draw(st.integers(0, 2**64 - 1)),
        seq=draw(st.integers(0, 2**64 - 1)),
        updated_ts=draw(I64),
    )


@st.composite
def updates(draw: st.DrawFn) -> ItemUpdate:
    return ItemUpdate(draw(ITEM_IDS), draw(I64), draw(F32), draw(vectors()), draw(F32))


def _same_update(a: ItemUpdate, b: ItemUpdate) -> None:
    assert (a.item_id, a.ts, a.weight, a.bias_grad) == (b.item_id, b.ts, b.weight, b.bias_grad)
    assert a.vec_grad.dtype == np.float32
    # bitwise: -0.0 and subnormals must come back as they went in
    assert a.vec_grad.tobytes() == np.asarray(b.vec_grad, dtype="<f4").tobytes()


# --- ItemUpdate -------------------------------------------------------------------------------------


@PROPS
@given(updates())
def test_item_update_round_trip(u: ItemUpdate) -> None:
    _same_update(decode_update(encode_update(u)), u)


def test_item_update_layout_matches_the_docstring() -> None:
    u = ItemUpdate("ité", -5, 1.5, np.array([1.0, -2.0], np.float32), 0.25)
    data = encode_update(u)
    assert data[0] == ord("G")
    assert struct.unpack_from("<H", data, 1) == (1,)
    assert struct.unpack_from("<q", data, 3) == (-5,)
    assert struct.unpack_from("<f", data, 11) == (1.5,)
    assert struct.unpack_from("<f", data, 15) == (0.25,)
    assert struct.unpack_from("<H", data, 19) == (2,)
    assert struct.unpack_from("<2f", data, 21) == (1.0, -2.0)
    assert data[21 + 4 * 2 :] == "ité".encode()


def test_item_update_stores_weight_and_bias_grad_as_float32() -> None:
    u = ItemUpdate("i", 0, 0.1, np.zeros(1, np.float32), 1 / 3)
    back = decode_update(encode_update(u))
    assert back.weight == float(np.float32(0.1)) != 0.1
    assert back.bias_grad == float(np.float32(1 / 3))


def test_item_update_casts_a_float64_gradient_to_float32() -> None:
    back = decode_update(encode_update(ItemUpdate("i", 0, 1.0, np.array([0.1, 2.0]), 0.0)))
    assert back.vec_grad.dtype == np.float32
    assert back.vec_grad.tolist() == [float(np.float32(0.1)), 2.0]


# --- ItemVectorMsg ----------------------------------------------------------------------------------


@PROPS
@given(ITEM_IDS, I64, item_states())
def test_vector_msg_round_trip(item_id: str, ts: int, state: ItemVector) -> None:
    data = encode_vector_msg(item_id, ts, state)
    back_id, back_ts, back_state = decode_vector_msg(data)
    assert (back_id, back_ts, back_state) == (item_id, ts, state)
    assert vector_msg_ts(data) == ts


@PROPS
@given(ITEM_IDS, I64, item_states())
def test_vector_msg_carries_the_item_state_blob_verbatim(item_id: str, ts: int, state: ItemVector) -> None:
    data = encode_vector_msg(item_id, ts, state)
    assert data.endswith(item_vector.encode(state))


def test_vector_msg_layout_matches_the_docstring() -> None:
    state = ItemVector.from_array(np.ones(2), bias=0.5, update_count=3, seq=4, updated_ts=99)
    data = encode_vector_msg("ü", 1_764_000_000_000, state)
    name = "ü".encode()
    assert data[0] == ord("M")
    assert struct.unpack_from("<H", data, 1) == (1,)
    assert struct.unpack_from("<q", data, 3) == (1_764_000_000_000,)
    assert struct.unpack_from("<H", data, 11) == (len(name),)
    assert data[13 : 13 + len(name)] == name
    assert data[13 + len(name) :] == item_vector.encode(state)


def test_vector_msg_ts_reads_only_the_header() -> None:
    # the timestamp assigner of the feedback stream must not need the rest of the record
    data = encode_vector_msg("i", 1_764_000_000_123, ItemVector(b""))
    assert vector_msg_ts(data[:11]) == 1_764_000_000_123


# --- foreign records --------------------------------------------------------------------------------


def _with_header(data: bytes, tag: int, version: int) -> bytes:
    return struct.pack("<BH", tag, version) + data[3:]


UPD = encode_update(ItemUpdate("i", 1, 1.0, np.ones(3, np.float32), 0.5))
MSG = encode_vector_msg("i", 1, ItemVector.from_array(np.ones(3)))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_with_header(UPD, ord("G"), 2), id="newer-version"),
        pytest.param(_with_header(UPD, ord("G"), 0), id="version-0"),
        pytest.param(_with_header(UPD, ord("M"), 1), id="tag-M"),
        pytest.param(_with_header(UPD, ord("I"), 1), id="tag-I"),
        pytest.param(MSG, id="a-vector-msg"),
    ],
)
def test_decode_update_rejects_foreign_records(data: bytes) -> None:
    with pytest.raises(SchemaError, match="item_update: expected tag 'G' v1"):
        decode_update(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_with_header(MSG, ord("M"), 2), id="newer-version"),
        pytest.param(_with_header(MSG, ord("M"), 0), id="version-0"),
        pytest.param(_with_header(MSG, ord("G"), 1), id="tag-G"),
        pytest.param(_with_header(MSG, ord("E"), 1), id="tag-E"),
        pytest.param(UPD + bytes(16), id="an-item-update"),
    ],
)
def test_decode_vector_msg_rejects_foreign_records(data: bytes) -> None:
    with pytest.raises(SchemaError, match="item_vector_msg: expected tag 'M' v1"):
        decode_vector_msg(data)


def test_vector_msg_with_a_foreign_state_blob_is_a_schema_error() -> None:
    # header says 'M' v1, but the embedded state is not an item_vector blob
    data = MSG[: 13 + 1] + encode_update(ItemUpdate("i", 1, 1.0, np.ones(3, np.float32), 0.5))
    with pytest.raises(SchemaError, match="item_vector"):
        decode_vector_msg(data)

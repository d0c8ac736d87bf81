"""Item vector codec v1: golden bytes and helpers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SchemaError
from state_schemas import item_vector
from state_schemas.item_vector import ItemVector

GOLDEN = ItemVector(bytes(range(8)), 0.5, 3, 4, 1_700_000_000_000)
GOLDEN_HEX = "490100040000000000000003000000000000000068e5cf8b010000000000000000e03f02000001020304050607"


def test_golden_bytes() -> None:
    assert item_vector.encode(GOLDEN).hex() == GOLDEN_HEX
    assert item_vector.decode(bytes.fromhex(GOLDEN_HEX)) == GOLDEN


def test_from_array_stores_float32() -> None:
    v = ItemVector.from_array(np.array([1.0, 2.0, 3.0], dtype=np.float64), bias=-0.25, update_count=1, seq=2)
    back = item_vector.decode(item_vector.encode(v))
    assert back == v and back.dim == 3
    assert back.as_array().dtype == np.float32 and back.as_array().tolist() == [1.0, 2.0, 3.0]


def test_dimension_mismatch_is_corrupt() -> None:
    with pytest.raises(SchemaError, match="dimension 2 needs"):
        item_vector.decode(item_vector.encode(GOLDEN)[:-1])
    with pytest.raises(SchemaError, match="not a multiple of 4"):
        item_vector.encode(GOLDEN._replace(vector=b"123"))

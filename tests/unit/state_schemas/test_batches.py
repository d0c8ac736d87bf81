from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from state_schemas.batches import GradBatch, decode_grads, decode_records, encode_grads, encode_records
from state_schemas.codec import NO_TS
from state_schemas.errors import SchemaError


@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=NO_TS, max_value=2**63 - 1))
def test_record_batch_round_trip(records: list[bytes], watermark: int) -> None:
    assert decode_records(encode_records(records, watermark)) == (watermark, records)


def test_record_batch_rejects_truncation_and_foreign_tags() -> None:
    blob = encode_records([b"abc", b"de"], 5)
    for cut in range(len(blob)):
        with pytest.raises(SchemaError):
            decode_records(blob[:cut])
    with pytest.raises(SchemaError, match="trailing"):
        decode_records(blob + b"x")
    with pytest.raises(SchemaError, match="tag 'K'"):
        decode_records(b"Z" + blob[1:])


@given(st.lists(st.text(min_size=1, max_size=12), max_size=8, unique=True), st.integers(1, 8))
def test_grad_batch_round_trip(ids: list[str], dim: int) -> None:
    n = len(ids)
    rng = np.random.default_rng(n)
    g = GradBatch(123, ids, rng.standard_normal((n, dim)).astype(np.float32),
                  rng.standard_normal(n).astype(np.float32), np.arange(n, dtype=np.uint32))
    back = decode_grads(encode_grads(g))
    assert back.ts == 123 and back.item_ids == ids
    assert np.array_equal(back.vec, g.vec) if n else back.vec.size == 0
    assert np.array_equal(back.bias, g.bias) and np.array_equal(back.count, g.count)


def test_grad_batch_rejects_truncation() -> None:
    g = GradBatch(1, ["a", "bb"], np.ones((2, 3), np.float32), np.ones(2, np.float32), np.ones(2, np.uint32))
    blob = encode_grads(g)
    for cut in range(len(blob)):
        with pytest.raises(SchemaError):
            decode_grads(blob[:cut])

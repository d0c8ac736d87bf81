"""Every binary format of the job (state codecs and inter-operator records) rejects every other one.

The record formats of `state_schemas.messages` are not `VersionedCodec`s (so not in
`state_schemas.registry.CODECS`), but they share the tag byte space: a blob routed to the wrong
decoder must fail with a `SchemaError`, never decode into garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from operators.ann.index import AnnIndex
from pipeline.errors import SchemaError
from state_schemas.batches import GradBatch, decode_grads, decode_records, encode_grads, encode_records
from state_schemas.cassandra_rows import decode_rows, encode_rows
from state_schemas.codec import TAGS
from state_schemas.item_vector import ItemVector
from state_schemas.messages import (
    InteractionMsg,
    ItemUpdate,
    PartialMsg,
    QueryMsg,
    decode_interaction,
    decode_partial,
    decode_query,
    decode_request,
    decode_update,
    decode_vector_batch,
    decode_vector_msg,
    encode_interaction,
    encode_partial,
    encode_query,
    encode_request,
    encode_update,
    encode_vector_batch,
    encode_vector_msg,
)
from state_schemas.registry import CODECS
from state_schemas.requests_v1 import RequestV1
from state_schemas.shares import ShareBuilder, encode_builder
from state_schemas.shares import decode as decode_shares
from tests.contracts.strategies import SAMPLES

_STATE = ItemVector.from_array(np.linspace(-1, 1, 16), bias=0.5, update_count=3, seq=3, updated_ts=1_764_000_000_000)

_QUERY = QueryMsg("r1", "u1", "request", 10, "personalized", 5, np.linspace(0, 1, 4, dtype=np.float32), ("a",),
                  "books", ("b", "c"), 4, None, 2)
_PARTIAL = PartialMsg("r1", "u1", "eval", 10, "session", 5, None, "i9", 1, 2, (("a", 1.5),), (("b", 2.0),), (),
                      True, "s1:v3", "bpr64")

_SHARES = ShareBuilder()
_SHARES.add_event("i2", 5, 1.0, "books", ("i1",))

_ANN = AnnIndex(dim=4)
_ANN.upsert_many(["a", "b"], np.eye(4, dtype=np.float32)[:2])

BLOBS: dict[str, bytes] = {
    **{name: codec.encode(SAMPLES[name]) for name, codec in CODECS.items()},
    "item_update": encode_update(ItemUpdate("item-7", 1_764_000_000_000, 1.5, np.linspace(0, 1, 16), -0.25)),
    "item_vector_msg": encode_vector_msg("item-7", 1_764_000_000_000, _STATE),
    "ann_index": _ANN.to_bytes(),
    "request_msg": encode_request(RequestV1("r1", "u1", 5, 10, True, None, 0)),
    "query_msg": encode_query(_QUERY),
    "interaction_msg": encode_interaction(InteractionMsg("i1", 5, 1.0, "books", (("i1", "i2", 1.0),))),
    "partial_msg": encode_partial(_PARTIAL),
    "vector_batch_msg": encode_vector_batch([encode_vector_msg("item-7", 1_764_000_000_000, _STATE)]),
    "record_batch": encode_records([encode_request(RequestV1("r1", "u1", 5, 10, True, None, 0))], 5),
    "grad_batch": encode_grads(GradBatch(5, ["a", "b"], np.ones((2, 4), np.float32), np.ones(2, np.float32),
                                         np.ones(2, np.uint32))),
    "share_batch": encode_builder(_SHARES, [encode_query(_QUERY)]),
    "cassandra_rows": encode_rows([(0, 5, '{"user_id": "u1", "event_count": 3}'), (1, 6, "{}")]),
}

DECODERS: dict[str, Callable[[bytes], Any]] = {
    **{name: codec.decode for name, codec in CODECS.items()},
    "item_update": decode_update,
    "item_vector_msg": decode_vector_msg,
    "ann_index": AnnIndex.from_bytes,
    "request_msg": decode_request,
    "query_msg": decode_query,
    "interaction_msg": decode_interaction,
    "partial_msg": decode_partial,
    "vector_batch_msg": decode_vector_batch,
    "record_batch": decode_records,
    "grad_batch": decode_grads,
    "share_batch": decode_shares,
    "cassandra_rows": decode_rows,
}


def test_every_tag_has_a_blob_and_a_decoder() -> None:
    # a new format added to TAGS must be added here too, or this contract does not cover it
    assert set(TAGS) == set(BLOBS) == set(DECODERS)
    assert len(set(TAGS.values())) == len(TAGS)


# Current version of each format: 1, except where a format moved on (its older version is refused).
VERSIONS = {"interaction_msg": 2}


@pytest.mark.parametrize("name", sorted(BLOBS))
def test_each_blob_starts_with_its_tag_and_current_version(name: str) -> None:
    assert BLOBS[name][0] == TAGS[name]
    assert BLOBS[name][1:3] == VERSIONS.get(name, 1).to_bytes(2, "little")


def test_an_interaction_share_of_the_json_version_is_refused_with_its_version() -> None:
    old = bytes([TAGS["interaction_msg"]]) + (1).to_bytes(2, "little") + b"\x00" * 40
    with pytest.raises(SchemaError, match="v1"):
        decode_interaction(old)


@pytest.mark.parametrize(("producer", "consumer"), [(p, c) for p in sorted(BLOBS) for c in sorted(DECODERS) if p != c])
def test_a_blob_fed_to_another_decoder_is_a_schema_error(producer: str, consumer: str) -> None:
    with pytest.raises(SchemaError):
        DECODERS[consumer](BLOBS[producer])


@pytest.mark.parametrize("name", sorted(BLOBS))
def test_each_decoder_reads_its_own_blob(name: str) -> None:
    DECODERS[name](BLOBS[name])


def test_encoding_an_update_does_not_touch_the_gradient() -> None:
    grad = np.linspace(0, 1, 8)  # float64: the codec casts to a new float32 array
    before = grad.copy()
    encode_update(ItemUpdate("i", 0, 1.0, grad, 0.0))
    assert grad.dtype == np.float64 and np.array_equal(grad, before)


def test_serving_records_round_trip() -> None:
    q = decode_query(BLOBS["query_msg"])
    assert q._replace(vector=None) == _QUERY._replace(vector=None)
    assert q.vector is not None and np.array_equal(q.vector, _QUERY.vector)
    assert decode_query(encode_query(_QUERY._replace(vector=None))).vector is None
    assert decode_partial(BLOBS["partial_msg"]) == _PARTIAL
    assert decode_request(BLOBS["request_msg"]) == RequestV1("r1", "u1", 5, 10, True, None, 0)
    assert decode_interaction(BLOBS["interaction_msg"]).pairs == (("i1", "i2", 1.0),)


def test_share_batches_round_trip_and_reject_bad_indices() -> None:
    b = decode_shares(BLOBS["share_batch"])
    assert [decode_query(q).qid for q in b.queries] == ["r1"]
    assert b.strings == ["i2", "books", "i1"] and b.pop_ts.tolist() == [5] and b.pop_cat.tolist() == [1]
    assert (b.pair_a.tolist(), b.pair_b.tolist(), b.pair_w.tolist()) == ([0], [2], [1.0])
    bad = bytearray(BLOBS["share_batch"])
    at = bad.index(b"i2\x1fbooks")  # the string table is last: cut one string
    with pytest.raises(SchemaError):
        decode_shares(bytes(bad[:at]) + b"i2\x1fbooks")
    with pytest.raises(SchemaError):
        decode_shares(BLOBS["share_batch"][:-3])


def test_vector_batch_v2_carries_columns_and_v1_records_still_decode() -> None:
    from state_schemas import item_cols

    v2 = item_cols.encode_vector_batch(SAMPLES["item_log"])
    assert v2[0] == TAGS["vector_batch_msg"] and v2[1:3] == (2).to_bytes(2, "little")
    assert item_cols.decode_vector_batch(v2) == SAMPLES["item_log"]
    from state_schemas.messages import vector_msg_ts

    assert vector_msg_ts(v2) == 1_764_000_000_000, "v2 keeps the newest time where v1 has it"
    old = item_cols.decode_vector_batch(BLOBS["vector_batch_msg"])
    assert old.ids == ("item-7",) and old.seq.tolist() == [_STATE.seq]
    assert np.array_equal(old.vecs[0], _STATE.as_array()) and old.bias.tolist() == [_STATE.bias]
    with pytest.raises(SchemaError):
        item_cols.decode_vector_batch(BLOBS["grad_batch"])
    with pytest.raises(SchemaError):
        item_cols.decode_vector_batch(v2[:-2])


def test_vector_batches_round_trip_and_carry_the_newest_time() -> None:
    from state_schemas.messages import vector_msg_ts

    msgs = [encode_vector_msg(f"i{n}", 1_764_000_000_000 + n, _STATE) for n in range(3)]
    batch = encode_vector_batch(msgs)
    assert decode_vector_batch(batch) == msgs
    assert vector_msg_ts(batch) == 1_764_000_000_002, "one timestamp assigner reads batches and single records"
    assert decode_vector_batch(encode_vector_batch([])) == []
    with pytest.raises(SchemaError):
        decode_vector_batch(batch[:-1])


def test_digest_travels_in_queries_and_partials_and_old_queries_still_decode() -> None:
    from state_schemas.messages import _DIM, _pack_json

    q = _QUERY._replace(digest="0123456789abcdef")
    assert decode_query(encode_query(q)).digest == "0123456789abcdef"
    p = _PARTIAL._replace(digest="0123456789abcdef")
    assert decode_partial(encode_partial(p)) == p
    # a query in flight from a build before the digest: 13 fields, decodes with digest None
    old = [q.qid, q.user_id, q.kind, q.k, q.source, q.ts, list(q.exclude), q.category, list(q.seeds), q.fresh,
           q.target, q.shards, False]
    legacy = decode_query(_pack_json("query_msg", old, _DIM.pack(0)))
    assert legacy.digest is None and legacy.qid == "r1" and legacy.vector is None

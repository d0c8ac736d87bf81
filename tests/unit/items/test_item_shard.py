"""The item stage's batch step: coalesced gradients applied in one vectorised step per batch."""

from __future__ import annotations

import numpy as np

from operators.items.logic import initial_item
from operators.items.shard import ItemShard
from operators.learner.bpr import BPRParams, apply_item_updates
from state_schemas import item_cols, item_vector
from state_schemas.batches import GradBatch

P = BPRParams(dim=4)


def test_apply_steps_each_item_once_with_its_summed_gradient() -> None:
    shard = ItemShard(4)
    g = GradBatch(50, ["a", "b"], np.array([[1, 0, 0, 0], [0, 2, 0, 0]], np.float32), np.array([0.5, -1], np.float32),
                  np.array([3, 1], np.uint32))
    assert [shard.ids[i] for i in shard.apply(P, g, seed=7)] == ["a", "b"]
    for j, item in enumerate(["a", "b"]):
        init = initial_item(P, item, 7)
        vec, bias = apply_item_updates(P, init.as_array()[None], np.float32([init.bias]), g.vec[j : j + 1],
                                       g.bias[j : j + 1], 1.0)
        st = shard.state(item)
        assert np.allclose(st.as_array(), vec[0]) and np.isclose(st.bias, bias[0])
    assert [shard.state(i).seq for i in "ab"] == [1, 1]
    assert [shard.state(i).update_count for i in "ab"] == [3, 1]
    shard.apply(P, g._replace(ts=40, item_ids=["b", "a"]), seed=7)
    assert [shard.state(i).seq for i in "ab"] == [2, 2]
    assert shard.state("a").updated_ts == 50  # an older batch does not move the clock back


def test_columns_round_trip_through_the_state_log_and_release_02_entries() -> None:
    shard = ItemShard(4)
    shard.apply(P, GradBatch(9, ["x", "y"], np.ones((2, 4), np.float32), np.ones(2, np.float32),
                             np.array([1, 2], np.uint32)), 7)
    rows = np.arange(len(shard), dtype=np.int64)
    back = ItemShard(4)
    back.put_cols(item_cols.decode_log(item_cols.encode_log(shard.cols(rows))))
    assert [back.state(i) for i in "xy"] == [shard.state(i) for i in "xy"]
    legacy = ItemShard(4)  # release 0.2 kept one item_vector blob per item
    legacy.put("x", item_vector.decode(item_vector.encode(shard.state("x"))))
    assert legacy.state("x") == shard.state("x")
    fed = item_cols.decode_vector_batch(item_cols.encode_vector_batch(shard.cols(rows[::-1])))
    assert fed.ids == ("y", "x") and fed.seq.tolist() == [1, 1] and fed.update_count.tolist() == [2, 1]


def test_the_shard_grows_past_its_first_capacity() -> None:
    shard = ItemShard(4)
    ids = [f"i{k}" for k in range(200)]
    shard.apply(P, GradBatch(1, ids, np.ones((200, 4), np.float32), np.zeros(200, np.float32),
                             np.ones(200, np.uint32)), 7)
    assert len(shard) == 200 and shard.state("i199").seq == 1


def test_items_without_state_continue_from_what_hydrate_returns_asked_once_per_batch() -> None:
    learned = item_vector.ItemVector.from_array(np.full(4, 0.25, np.float32), bias=0.1, update_count=9, seq=5,
                                                updated_ts=30)
    asked: list[list[str]] = []

    def hydrate(ids: list[str]) -> dict[str, item_vector.ItemVector]:
        asked.append(list(ids))
        return {"a": learned}  # "b" has no row: it starts from initial_item

    shard = ItemShard(4)
    g = GradBatch(50, ["a", "b"], np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.array([1, 1], np.uint32))
    shard.apply(P, g, seed=7, hydrate=hydrate)
    assert asked == [["a", "b"]] and shard.hydrated == 1
    a = shard.state("a")
    assert (a.seq, a.update_count) == (6, 10)  # continues the row's write order and counts
    assert np.allclose(a.as_array(), learned.as_array(), atol=1e-3)  # zero gradient: only regularisation moves it
    assert np.allclose(shard.state("b").as_array(), initial_item(P, "b", 7).as_array(), atol=1e-3)
    shard.apply(P, g, seed=7, hydrate=hydrate)
    assert len(asked) == 1  # both have state now: nothing to ask

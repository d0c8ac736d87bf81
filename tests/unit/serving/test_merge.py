"""Scatter/gather: `merge_partials` and the `Pending` gather (clock as a parameter, no sleeps)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.serving.logic import Pending, merge_partials
from pipeline.errors import ConfigError
from tests.contracts.strategies import PROPS

partial = st.lists(st.tuples(st.sampled_from([f"i{n}" for n in range(15)]), st.floats(-10, 10)), max_size=10)


def reference(partials: list[list[tuple[str, float]]], k: int) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for part in partials:
        for item, s in part:
            best[item] = max(s, best.get(item, s))
    return sorted(best.items(), key=lambda p: (-p[1], p[0]))[:k]


@PROPS
@given(st.lists(partial, max_size=5), st.integers(0, 20), st.randoms(use_true_random=False))
def test_merge_is_top_k_of_union_and_order_independent(
    parts: list[list[tuple[str, float]]], k: int, rnd: random.Random
) -> None:
    got = merge_partials(parts, k)
    assert got == reference(parts, k)
    shuffled = [list(p) for p in parts]
    for p in shuffled:
        rnd.shuffle(p)
    rnd.shuffle(shuffled)
    assert merge_partials(shuffled, k) == got
    assert merge_partials([[x for p in parts for x in p]], k) == got  # one shard holding the union
    assert len({i for i, _ in got}) == len(got)


def test_merge_drops_nonfinite_and_keeps_max() -> None:
    parts = [[("a", float("nan")), ("b", 1.0)], [("a", 0.5), ("b", 2.0), ("c", float("-inf"))]]
    assert merge_partials(parts, 10) == [("b", 2.0), ("a", 0.5)]
    assert merge_partials([], 3) == []


def test_pending_complete_request_is_due_at_once() -> None:
    p = Pending(shards=3, timeout_ms=100, k=2)
    assert p.add("r", 0, [("a", 1.0)], now_ms=0)
    assert p.add("r", 2, [("b", 3.0)], now_ms=1)
    assert p.due(now_ms=2) == [] and len(p) == 1 and p.next_deadline() == 100
    assert p.add("r", 1, [("c", 2.0), ("a", 5.0)], now_ms=3)
    assert p.due(now_ms=3) == [("r", [("a", 5.0), ("b", 3.0)])]
    assert len(p) == 0 and p.next_deadline() is None


def test_pending_times_out_with_what_arrived() -> None:
    p = Pending(shards=2, timeout_ms=50)
    p.add("r1", 0, [("a", 1.0)], now_ms=10)
    p.add("r2", 1, [("b", 1.0)], now_ms=20)
    assert p.due(now_ms=59) == []
    assert p.due(now_ms=60) == [("r1", [("a", 1.0)])]
    assert p.due(now_ms=1000) == [("r2", [("b", 1.0)])]


def test_pending_ignores_duplicates_and_stragglers_then_forgets() -> None:
    p = Pending(shards=2, timeout_ms=50)
    assert p.add("r", 0, [("a", 1.0)], now_ms=0)
    assert not p.add("r", 0, [("z", 9.0)], now_ms=1)  # redelivered: the first one counts
    p.add("r", 1, [], now_ms=2)
    assert p.due(now_ms=2) == [("r", [("a", 1.0)])]
    assert not p.add("r", 1, [("late", 1.0)], now_ms=30)
    assert p.due(now_ms=52) == []
    assert p.add("r", 0, [("new", 1.0)], now_ms=53)  # the id may be reused once forgotten


def test_pending_per_request_k_and_due_order() -> None:
    p = Pending(shards=1, timeout_ms=10, k=5)
    p.add("b", 0, [("x", 1.0), ("y", 2.0)], now_ms=0, k=1)
    p.add("a", 0, [("x", 1.0)], now_ms=0)
    assert p.due(now_ms=0) == [("a", [("x", 1.0)]), ("b", [("y", 2.0)])]


def test_pending_rejects_bad_settings_and_shards() -> None:
    with pytest.raises(ConfigError):
        Pending(shards=0, timeout_ms=10)
    with pytest.raises(ValueError, match="shard 2"):
        Pending(shards=2, timeout_ms=10).add("r", 2, [], now_ms=0)


@PROPS
@given(
    st.lists(st.tuples(st.sampled_from(["r1", "r2", "r3"]), st.integers(0, 2), partial), max_size=12),
    st.randoms(use_true_random=False),
)
def test_pending_result_does_not_depend_on_arrival_order(adds, rnd: random.Random) -> None:
    def run(seq: list[tuple[str, int, list[tuple[str, float]]]]) -> dict[str, list[tuple[str, float]]]:
        p = Pending(shards=3, timeout_ms=100, k=5)
        for r, shard, part in seq:
            p.add(r, shard, part, now_ms=0)
        return dict(p.due(now_ms=100))

    # de-duplicate (request, shard): which of two partials for one shard counts depends on order by design
    unique = list({(r, s): (r, s, part) for r, s, part in adds}.values())
    shuffled = list(unique)
    rnd.shuffle(shuffled)
    assert run(unique) == run(shuffled)
    expected = {r: merge_partials([part for rr, _, part in unique if rr == r], 5) for r, _, _ in unique}
    assert run(unique) == expected

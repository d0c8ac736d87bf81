"""The user stage's batch step: per-user rules as in `logic`, learning batched, sessions on the watermark."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.items.logic import item_shard
from operators.learner.bpr import BPRParams
from operators.profile import logic
from operators.profile.embedding import ItemTable
from operators.profile.shard import UserParams, UserShard, draw_negatives, sampled, step
from operators.serving.logic import state_digest
from state_schemas import seen_items, user_profile
from state_schemas.codec import NO_TS
from state_schemas.events import Event, encode_event
from state_schemas.messages import decode_query, encode_request
from state_schemas.requests_v1 import RequestV1
from state_schemas.shares import decode as decode_shares

T0 = 1_764_000_000_000
GAP = 60_000
P = UserParams(gap_ms=GAP, bpr=BPRParams(dim=8, negatives=2), eval_percent=100.0, item_shards=3)


def event(i: int, user: str, ts: int, item: str | None = None, typ: str = "view") -> Event:
    return Event(f"e{i}", user, item or f"i{i % 5}", typ, ts, category="c")


def run(shard: UserShard, events: list[Event], watermark: int = NO_TS, table: ItemTable | None = None):
    return step(shard, [encode_event(e) for e in events], watermark, ItemTable(8) if table is None else table,
                np.random.default_rng(1), P)


def test_sessions_close_on_the_watermark_once() -> None:
    shard, table = UserShard(), ItemTable(8)
    run(shard, [event(1, "u", T0), event(2, "u", T0 + 10_000)], table=table)
    assert run(shard, [], T0 + 10_000 + GAP - 1, table).closed == []
    out = run(shard, [], T0 + 10_000 + GAP, table)
    assert [(c.start_ts, c.end_ts, c.event_count) for c in out.closed] == [(T0, T0 + 10_000, 2)]
    assert out.changed == {"u"}
    assert run(shard, [], T0 + 10 * GAP, table).closed == []
    assert shard.profiles["u"].sessions_closed == 1


def test_an_event_in_the_same_batch_as_the_watermark_joins_its_session() -> None:
    # The watermark comes after the batch's records, as a Flink watermark after the records it covers.
    shard = UserShard()
    run(shard, [event(1, "u", T0)])
    out = run(shard, [event(2, "u", T0 + GAP - 5)], watermark=T0 + GAP)
    assert out.closed == [] and out.late == 0


def test_duplicates_change_nothing_and_are_counted() -> None:
    shard = UserShard()
    run(shard, [event(1, "u", T0)])
    before = shard.profiles["u"]
    out = run(shard, [event(1, "u", T0)])
    assert (out.duplicates, out.events, out.changed) == (1, 0, set())
    assert shard.profiles["u"] is before


def test_evaluation_queries_travel_with_the_batch_shares_they_must_not_see() -> None:
    shard = UserShard()
    run(shard, [event(1, "u", T0, "a")])
    out = run(shard, [event(2, "u", T0 + 1, "b"), event(3, "u", T0 + 2, "a")])
    batch = decode_shares(out.index[0])
    # b is unseen: one query; a was seen: no query; both events' shares follow in the same batch, which the
    # index learns only after ranking its queries (tests/unit/index: test_queries_rank_against_the_state...)
    assert [decode_query(q).target for q in batch.queries] == ["b"]
    assert [batch.strings[i] for i in batch.pop_item] == ["b", "a"]
    assert out.eval_queries == 1


def test_a_request_changes_no_state_and_carries_the_state_digest() -> None:
    shard = UserShard()
    run(shard, [event(1, "u", T0, "a")])
    before = shard.profiles["u"]
    req = RequestV1("r1", "u", T0 + 5, 5, True, None)
    out = step(shard, [encode_request(req)], NO_TS, ItemTable(8), np.random.default_rng(1), P)
    assert out.changed == set() and shard.profiles["u"] is before and out.requests == 1
    batch = decode_shares(out.index[0])
    assert batch.pop_item.size == 0 and batch.pair_a.size == 0
    q = decode_query(batch.queries[0])
    assert q.digest == state_digest(user_profile.encode(before), seen_items.encode(shard.seen["u"]))
    assert "a" in q.exclude


def test_gradients_go_to_the_item_shard_of_each_item_and_the_replica_learns() -> None:
    shard, table = UserShard(), ItemTable(8)
    events = [event(i, f"u{i % 4}", T0 + i, f"i{i % 7}") for i in range(40)]
    before = None
    run(shard, events[:10], table=table)
    before = table.vecs[: len(table)].copy()
    out = run(shard, events[10:], table=table)
    counted = 0
    for s, g in out.grads.items():
        assert all(item_shard(i, 3) == s for i in g.item_ids)
        counted += int(g.count.sum())
    assert counted == 30 * (1 + P.bpr.negatives)
    assert not np.allclose(before, table.vecs[: len(before)])
    assert all(shard.profiles[f"u{k}"].embedding for k in range(4))


def test_sampling_is_by_event_id() -> None:
    ids = [f"evt-{i}" for i in range(10_000)]
    share = sum(sampled(i, 1.0) for i in ids) / len(ids)
    assert 0.005 < share < 0.015
    assert [sampled(i, 1.0) for i in ids[:50]] == [sampled(i, 1.0) for i in ids[:50]]
    assert sampled("x", 100.0) and not sampled("x", 0.0)


def reference(events: list[Event], marks: dict[int, int]) -> dict[str, user_profile.UserProfile]:
    """Per-event logic with an event-time timer per session, fired by watermarks at the given positions.

    As in Flink, timers fire only when the watermark advances (a timer behind it waits for the next one).
    """
    profiles: dict[str, user_profile.UserProfile] = {}
    timers: set[tuple[int, str]] = set()
    current = NO_TS
    for k, e in enumerate(events):
        new, out = logic.on_event(profiles.get(e.user_id), e, gap_ms=GAP)
        if out.status is not logic.Status.DUPLICATE:
            profiles[e.user_id] = new
            if out.timer_ts is not None:
                timers.add((out.timer_ts, e.user_id))
        if k in marks and marks[k] > current:
            current = marks[k]
            for t, u in sorted(x for x in timers if x[0] <= marks[k]):
                timers.discard((t, u))
                p2, _ = logic.on_timer(profiles[u], t, GAP)
                profiles[u] = p2
    return profiles


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 200_000), st.integers(0, 3)), min_size=1, max_size=40),
       st.lists(st.integers(1, 6), min_size=1, max_size=10), st.integers(0, 80_000))
def test_batching_does_not_change_sessions_or_counters(raw, cuts, lag) -> None:
    events = [event(i, f"u{u}", T0 + t) for i, (u, t, _) in enumerate(raw)]
    events += [events[0]]  # a redelivered duplicate
    bounds, pos = [], 0
    for c in cuts:
        pos += c
        if pos < len(events):
            bounds.append(pos)
    bounds.append(len(events))
    shard, table, start, marks = UserShard(), ItemTable(8), 0, {}
    for b in bounds:
        batch = events[start:b]
        wm = max(e.ts for e in events[:b]) - lag
        step(shard, [encode_event(e) for e in batch], wm, table, np.random.default_rng(1), P)
        marks[b - 1] = wm
        start = b
    ref = reference(events, marks)
    for u, p in ref.items():
        got = shard.profiles[u]
        assert got._replace(embedding=b"", embedding_ts=0) == p._replace(embedding=b"", embedding_ts=0)


def test_a_second_evaluation_in_one_batch_sees_the_users_vector_after_the_first_event() -> None:
    # test-then-learn inside a batch: each evaluation query carries the vector from just before its event
    shard, table = UserShard(), ItemTable(8)
    run(shard, [event(i, "u", T0 + i, f"w{i}") for i in range(6)], table=table)  # history, a vector, items
    emb0 = shard.profiles["u"].embedding_vector().copy()
    out = run(shard, [event(10, "u", T0 + 100, "n1"), event(11, "u", T0 + 101, "n2")], table=table)
    queries = [decode_query(r) for r in decode_shares(out.index[0]).queries]
    assert [q.target for q in queries] == ["n1", "n2"]
    assert np.allclose(queries[0].vector, emb0)
    assert not np.allclose(queries[1].vector, emb0)  # moved by the first event's BPR step
    assert not np.allclose(queries[1].vector, shard.profiles["u"].embedding_vector())  # and by the second


def test_users_without_state_are_hydrated_once_and_continue_from_it() -> None:
    # A shard without state asks the hydrate hook once per unknown user; a found profile becomes the
    # user's state (counts continue), a user found nowhere is not asked again.
    donor = UserShard()
    run(donor, [event(i, "known", T0 + i) for i in range(3)])
    stored = donor.profiles["known"]
    asked: list[list[str]] = []

    def hydrate(users: list[str]) -> dict[str, user_profile.UserProfile]:
        asked.append(users)
        return {"known": stored} if "known" in users else {}

    fresh = UserShard()
    out = step(fresh, [encode_event(event(10, "known", T0 + 10)), encode_event(event(11, "new", T0 + 11))],
               NO_TS, ItemTable(8), np.random.default_rng(1), P, hydrate)
    assert asked == [["known", "new"]] and out.hydrated == 1
    assert fresh.profiles["known"].total_events == stored.total_events + 1
    assert fresh.profiles["new"].total_events == 1
    req = RequestV1("r2", "ghost", T0 + 12, 5, True, None)
    step(fresh, [encode_request(req)], NO_TS, ItemTable(8), np.random.default_rng(1), P, hydrate)
    step(fresh, [encode_request(req), encode_event(event(12, "known", T0 + 13))], NO_TS, ItemTable(8),
         np.random.default_rng(1), P, hydrate)
    assert asked == [["known", "new"], ["ghost"]]  # ghost asked once; known and new have state


def test_a_negative_pool_bounds_the_items_a_batch_touches() -> None:
    # With negative_pool = p the batch's item gradients cover its positives and at most p + 1 other items.
    import dataclasses

    params = dataclasses.replace(P, bpr=BPRParams(dim=8, negatives=4), negative_pool=6, item_shards=1)
    table = ItemTable(8)
    shard = UserShard()
    warm = [event(i, f"w{i}", T0 + i, f"it{i}") for i in range(60)]  # a table of 60 items
    step(shard, [encode_event(e) for e in warm], NO_TS, table, np.random.default_rng(3), params)
    events = [event(100 + i, f"u{i}", T0 + 100 + i, f"it{i % 10}") for i in range(40)]
    out = step(shard, [encode_event(e) for e in events], NO_TS, table, np.random.default_rng(4), params)
    touched = set(out.grads[0].item_ids)
    positives = {e.item_id for e in events}
    assert positives <= touched and len(touched - positives) <= 7
    counts = dict(zip(out.grads[0].item_ids, out.grads[0].count.tolist(), strict=True))
    assert sum(counts.values()) == 40 * (1 + 4)  # every row: its positive and 4 negatives
    uniform = step(UserShard(), [encode_event(e) for e in events], NO_TS, table, np.random.default_rng(4),
                   dataclasses.replace(params, negative_pool=0))
    assert len(uniform.grads[0].item_ids) > len(touched)  # the same batch drawing from all 60 items


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 50), st.integers(0, 60), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_negatives_are_never_the_rows_positive_and_stay_in_their_pool(n_items: int, pool: int, k: int,
                                                                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, n_items, size=30)
    negs = draw_negatives(np.random.default_rng(seed + 1), pos, n_items, k, pool)
    assert negs.shape == (30, k) and negs.min() >= 0 and negs.max() < n_items
    assert not (negs == pos[:, None]).any()
    if 0 < pool < n_items - 1:
        assert len(set(negs.ravel().tolist())) <= pool + 1

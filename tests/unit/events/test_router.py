"""The events router: validation of a window, split by user shard, watermark per partition."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from operators.events.router import Progress, Routed, RouterParams, route, shard_records, user_shard
from state_schemas.batches import decode_records
from state_schemas.codec import NO_TS
from state_schemas.events import decode_event

NOW = 1_764_000_000_000
P = RouterParams(user_shards=4, out_of_orderness_ms=1_000, idleness_ms=5_000, events_topic="events",
                 requests_topic="rec-requests", events_partitions=(0, 1))


def ev(i: int, user: str = "u1", ts: int = NOW - 60_000) -> bytes:
    return json.dumps({"event_id": f"e{i}", "user_id": user, "item_id": f"i{i % 3}", "type": "view",
                       "ts": ts}).encode()


def req(i: int, user: str = "u1") -> bytes:
    return json.dumps({"request_id": f"r{i}", "user_id": user, "k": 5, "ts": NOW}).encode()


def run(progress: Progress, values: list[bytes | None], topics: list[str], parts: list[int]) -> Routed:
    return route(progress, values, topics, parts, list(range(len(values))), now_ms=NOW, params=P)


def test_every_record_is_an_event_a_request_or_a_dead_letter() -> None:
    values = [ev(1), b"{not json", None, req(2), b'{"request_id": 3}', ev(4, "u2")]
    topics = ["events", "events", "events", "rec-requests", "rec-requests", "events"]
    out = run(Progress(started_ms=NOW), values, topics, [0, 0, 1, 0, 0, 1])
    assert (out.events, out.requests, len(out.dead_letters)) == (2, 1, 3)
    dead = [json.loads(d) for d in out.dead_letters]
    assert [(d["source"]["topic"], d["source"]["offset"]) for d in dead] == [
        ("events", 1), ("events", 2), ("rec-requests", 4)]
    assert sum(out.dead_by_reason.values()) == 3
    routed = {s: len(r) for s, r in out.batches.items()}
    assert sum(routed.values()) == 3
    assert user_shard("u1", 4) in routed and user_shard("u2", 4) in routed


def test_requests_already_answered_before_a_fresh_start_are_counted_not_routed() -> None:
    from dataclasses import replace

    values = [req(1), req(2), req(3)]
    out = route(Progress(started_ms=NOW), values, ["rec-requests"] * 3, [0, 0, 0], [0, 1, 2], now_ms=NOW,
                params=replace(P, answered=frozenset({"r1", "r3"})))
    assert (out.requests, out.already_answered, out.dead_letters) == (1, 2, [])
    [batch] = out.batches.values()
    assert len(batch) == 1 and b"r2" in batch[0]


def test_a_users_records_keep_their_order_in_one_shard() -> None:
    values = [ev(i, "u7", NOW - 60_000 + i) for i in range(20)]
    out = run(Progress(started_ms=NOW), values, ["events"] * 20, [i % 2 for i in range(20)])
    (shard, recs), = out.batches.items()
    assert shard == user_shard("u7", 4)
    assert [decode_event(r).event_id for r in recs] == [f"e{i}" for i in range(20)]


def test_watermark_waits_for_every_active_partition_then_follows_the_slowest() -> None:
    pr = Progress(started_ms=NOW)
    run(pr, [ev(1, ts=NOW - 50_000)], ["events"], [0])
    assert pr.advance(NOW, P) == NO_TS  # partition 1 active (seen at start), no event time yet
    run(pr, [ev(2, ts=NOW - 80_000)], ["events"], [1])
    assert pr.advance(NOW, P) == NOW - 80_000 - 1_000
    run(pr, [ev(3, ts=NOW - 10_000)], ["events"], [1])
    assert pr.advance(NOW, P) == NOW - 50_000 - 1_000  # now partition 0 is the slowest


def test_an_idle_partition_stops_holding_the_watermark_and_it_never_goes_back() -> None:
    pr = Progress(started_ms=NOW)
    run(pr, [ev(1, ts=NOW - 50_000), ev(2, ts=NOW - 90_000)], ["events", "events"], [0, 1])
    assert pr.advance(NOW, P) == NOW - 90_000 - 1_000
    pr.seen_ms[0] = NOW + 4_000  # partition 0 kept sending, partition 1 went quiet
    assert pr.advance(NOW + 5_000, P) == NOW - 50_000 - 1_000
    pr.newest[0] = NOW - 200_000  # an older event cannot move it back
    assert pr.advance(NOW + 5_000, P) == NOW - 50_000 - 1_000


def test_requests_and_bad_timestamps_do_not_move_the_watermark() -> None:
    pr = Progress(started_ms=NOW)
    values = [ev(1, ts=NOW - 50_000), ev(2, ts=NOW - 50_000), req(3), ev(4, ts=5)]
    run(pr, values, ["events", "events", "rec-requests", "events"], [0, 1, 0, 1])
    assert pr.advance(NOW, P) == NOW - 51_000


@given(st.lists(st.sampled_from(range(4)), max_size=6), st.booleans(), st.booleans())
def test_shard_records_reach_their_shards_with_the_watermark(with_records: list[int], advanced: bool,
                                                            everyone: bool) -> None:
    routed = Routed({s: [b"E" + bytes([s])] for s in with_records}, [], {})
    out = dict(shard_records(routed, 10, 5 if advanced else 10, 4, everyone=everyone))
    expect = set(range(4)) if advanced or everyone else set(with_records)
    assert set(out) == expect
    for s, blob in out.items():
        wm, recs = decode_records(blob)
        assert wm == 10 and recs == ([b"E" + bytes([s])] if s in with_records else [])

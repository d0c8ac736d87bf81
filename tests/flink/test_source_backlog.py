"""A backlog on both events partitions makes no event late: the reader alternates between partitions.

Why: the Kafka reader emits one partition's fetched records before the next partition's. With Kafka's
default `max.partition.fetch.bytes` (1 MB) that is minutes of records at Python speeds; the other
partition is declared idle after `source_idleness_ms`, the watermark runs ahead of it, its users'
sessions close early and their next events arrive late (the 200k soak lost 2,367 events to sessions
this way). The job bounds the fetch (`source_fetch_bytes`, 16 KiB).

Built so that a starved partition would show: events carry a 2 KB context field (a fetch of 1 MB is
then about 500 events) and the partitions differ in event-time density (partition 0 has twice the
events per second of partition 1), so a chunk of partition 1 covers twice the event time of one of
partition 0 and would move the watermark past partition 0's open sessions.

Its negative control (the same stream with Kafka's 1 MB fetch must see late events) was removed with
the micro-batched job: the source's records now reach a Java window at Java speed, so a 1 MB chunk no
longer keeps the other partition waiting for seconds, and with 3,600 events no event came late with
either fetch size. What now guards the watermark is the events router (per-partition progress and
idleness): `tests/unit/events/test_router.py` shows a partition that stays quiet past the idleness
releasing the watermark, and one that is active holding it back.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from pipeline.cassandra_io import event_counts
from pipeline.flink_env import stream_env
from pipeline.infra.procs import wait_until
from pipeline.jobs import liverec_job
from pipeline.kafka_io import read_committed

pytestmark = [pytest.mark.integration, pytest.mark.flink]

GAP_MS = 10_000
SPAN_MS = 120_000  # event time covered by each partition
# partition -> (users, ms between two events of the partition); every user's events stay < GAP_MS apart
LAYOUT = {0: (10, 50), 1: (10, 100)}
PAD = 2_000
# Flink 2 does not count backpressured time towards idleness, so a starved partition reaches a short
# timeout only: the reader is backpressured most of the time a chunk is emitted.
IDLENESS_MS = 200


def _produce_backlog(s) -> Counter[str]:  # noqa: ANN001
    """Write both partitions' events (then one probe per partition at the end); return per-user counts."""
    rng = random.Random(3)
    start = int(time.time() * 1000) - 3 * 3600 * 1000
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
    counts: Counter[str] = Counter()
    for p, (users, step) in LAYOUT.items():
        for i in range(SPAN_MS // step):
            user = f"{s.topic_prefix}p{p}u{i % users}"
            doc = {"event_id": f"{s.topic_prefix}e{p}-{i}", "user_id": user, "item_id": f"i{rng.randrange(500)}",
                   "type": "view", "ts": start + i * step,
                   "context": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=PAD))}
            producer.send(s.topic("events"), json.dumps(doc).encode(), key=user.encode(), partition=p)
            counts[user] += 1
    end = start + SPAN_MS
    for p in LAYOUT:  # the probe closes its session only once the watermark passed every user's last event
        probe = {"event_id": f"{s.topic_prefix}probe{p}", "user_id": f"{s.topic_prefix}probe{p}", "item_id": "i0",
                 "type": "view", "ts": end}
        tick = {"event_id": f"{s.topic_prefix}tick{p}", "user_id": f"{s.topic_prefix}tick", "item_id": "i0",
                "type": "view", "ts": end + 10 * GAP_MS}
        producer.send(s.topic("events"), json.dumps(probe).encode(), partition=p)
        producer.send(s.topic("events"), json.dumps(tick).encode(), partition=p)
    producer.flush()
    producer.close()
    return counts


def _run(s, fetch_bytes: int) -> tuple[Counter[str], list[dict]]:  # noqa: ANN001
    """Run the job over the backlog; return the expected per-user counts and the emitted sessions."""
    s = s.model_copy(update={"session_gap_ms": GAP_MS, "out_of_orderness_ms": 1000, "source_idleness_ms": IDLENESS_MS,
                             "source_fetch_bytes": fetch_bytes, "checkpoint_interval_ms": 1000,
                             "profile_flush_ms": 1000})
    counts = _produce_backlog(s)
    users = sorted(counts)
    probes = {f"{s.topic_prefix}probe{p}" for p in LAYOUT}
    env = stream_env(s)
    liverec_job.build(env, s)
    client = env.execute_async(f"{s.topic_prefix}job")
    sessions: list[dict] = []

    def done() -> bool:
        if event_counts(s, users) != dict(counts):
            return False
        sessions[:] = [json.loads(v) for v in read_committed(s, s.topic("sessions"), idle_ms=1000)]
        return probes <= {x["user_id"] for x in sessions}

    try:
        ok = wait_until(done, 600, interval_s=2)
    finally:
        client.cancel().result()
    assert ok, f"fetch {fetch_bytes}: counts not exact or probe sessions not closed within 600 s"
    return counts, [x for x in sessions if x["user_id"] in counts]


def _in_sessions(sessions: list[dict]) -> Counter[str]:
    out: Counter[str] = Counter()
    for x in sessions:
        out[x["user_id"]] += x["event_count"]
    return out


def test_no_event_is_late_with_the_bounded_fetch(isolated) -> None:
    counts, sessions = _run(isolated, isolated.source_fetch_bytes)
    covered = _in_sessions(sessions)
    late = sum(counts.values()) - sum(covered.values())
    print(f"fetch {isolated.source_fetch_bytes} B: {sum(counts.values())} events of {PAD} B, "
          f"{len(sessions)} sessions, {late} late")
    assert late == 0, {u: (counts[u], covered[u]) for u in counts if counts[u] != covered[u]}
    assert sorted(x["user_id"] for x in sessions) == sorted(counts), "expected one session per user"

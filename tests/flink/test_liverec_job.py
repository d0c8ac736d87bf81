"""The whole job on the real stack: exact per-user counts in Cassandra, exact dead letters, sessions
closed as the gap rule says, duplicates not counted."""

from __future__ import annotations

import json
import time

import pytest

from pipeline import generator
from pipeline.cassandra_io import profile_rows
from pipeline.flink_env import stream_env
from pipeline.infra.procs import wait_until
from pipeline.jobs import liverec_job
from pipeline.kafka_io import produce, read_committed
from tests.recovery.test_kill_series import _close_sessions as close_sessions

pytestmark = [pytest.mark.integration, pytest.mark.flink]

GAP_MS = 60_000


def _counts(settings, users: list[str]) -> dict[str, tuple[int, int]]:
    rows = profile_rows(settings, users, "event_count, sessions_closed")
    return {u: (r.event_count, r.sessions_closed) for u, r in rows.items()}


def test_job_counts_exactly_dead_letters_bad_input_and_closes_sessions(isolated) -> None:
    s = isolated.model_copy(
        update={"session_gap_ms": GAP_MS, "profile_flush_ms": 500, "checkpoint_interval_ms": 1000,
                "item_flush_ms": 500}
    )
    start = int(time.time() * 1000) - 6 * 3600 * 1000  # event time in the past, as in a replay
    batch = generator.events(
        3000, users=60, malformed_every=100, duplicate_every=150, start_ms=start, seed=11,
        user_prefix=f"{s.topic_prefix}u",
    )
    assert batch.malformed > 0 and batch.duplicates > 0
    produce(s, s.topic("events"), batch.records)
    close_sessions(s, batch)  # one far-future tick per partition: every partition's watermark passes

    env = stream_env(s)
    liverec_job.build(env, s)
    client = env.execute_async(f"{s.topic_prefix}job")
    users = sorted(batch.per_user)
    expected_sessions = {u: generator.sessions_by_gap(batch.timeline[u], GAP_MS) for u in users}
    got: dict[str, tuple[int, int]] = {}

    def done() -> bool:
        got.update(_counts(s, users))
        return all(got.get(u) == (batch.per_user[u], expected_sessions[u]) for u in users)

    try:
        ok = wait_until(done, 240, interval_s=2)
        dead = [json.loads(v) for v in read_committed(s, s.topic("dead-letter"), idle_ms=2000)]
        sessions = [json.loads(v) for v in read_committed(s, s.topic("sessions"), idle_ms=2000)]
    finally:
        client.cancel().result()

    wrong = {u: (got.get(u), (batch.per_user[u], expected_sessions[u])) for u in users
             if got.get(u) != (batch.per_user[u], expected_sessions[u])}
    assert ok, f"(event_count, sessions_closed) differ for {len(wrong)} users, e.g. {list(wrong.items())[:3]}"
    assert len(dead) == batch.malformed
    assert all(d["reason"] and d["source"]["topic"] == s.topic("events") for d in dead), dead[:2]
    assert {d["source"]["partition"] for d in dead} <= {0, 1}
    real = [x for x in sessions if x["user_id"] != f"{s.topic_prefix}tick"]
    assert len(real) == sum(expected_sessions.values())
    assert len({x["session_id"] for x in real}) == len(real), "a session was emitted twice"

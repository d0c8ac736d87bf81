"""On a real standalone cluster (from the apache-flink wheel): submit at parallelism 1, stop with savepoint,
resume at 2 (a rescale), stop again, resume at 1; count exactly in Cassandra and hash all per-user state
at each step, and count the answers per request id over all steps (exactly one each).

The hash: every user is sent a request and the answer's `state_digest` (SHA-256 of that user's keyed
state bytes as the request read them) is collected; the combined digest over all users must not change
across a stop/resume when no event came in between. Requests read state and change none of it."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

import pytest

from pipeline import cluster, generator
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce, read_committed
from tests.recovery.counts import await_counts

pytestmark = [pytest.mark.integration, pytest.mark.flink]


@pytest.fixture
def flink_cluster(isolated):
    s = isolated.model_copy(update={"profile_flush_ms": 1000, "checkpoint_interval_ms": 1000})
    already = False
    try:
        already = cluster.taskmanagers() >= 2
    except OSError:
        pass
    cluster.up(s, task_managers=2)
    yield s
    for job in cluster.running_jobs(s):
        cluster.flink(s, "cancel", job)
    if not already:
        cluster.down(s)


def _digests(s, users: list[str], step: str, ts: int) -> dict[str, str]:  # noqa: ANN001
    """Ask every user once; return user -> state_digest from the committed answers."""
    reqs = {f"{s.topic_prefix}{step}-{u}": u for u in users}
    produce(s, s.topic("rec-requests"),
            [(u.encode(), json.dumps({"request_id": r, "user_id": u, "k": 5, "ts": ts}).encode())
             for r, u in reqs.items()])
    got: dict[str, str] = {}

    def answered() -> bool:
        for v in read_committed(s, s.topic("recommendations"), idle_ms=1000):
            a = json.loads(v)
            if a["request_id"] in reqs:
                got[reqs[a["request_id"]]] = a["state_digest"]
        return len(got) == len(users)

    assert wait_until(answered, 180, interval_s=2), f"{step}: {len(users) - len(got)} users never answered"
    return got


def _combined(digests: dict[str, str]) -> str:
    return hashlib.sha256("\n".join(f"{u}={d}" for u, d in sorted(digests.items())).encode()).hexdigest()[:16]


def _counts_exact(s, expected: dict[str, int], step: str) -> None:  # noqa: ANN001
    ok, diff = await_counts(s, expected, 240)
    assert ok, f"{step}: counts differ for {len(diff)} users, e.g. {list(diff.items())[:5]}"


def test_savepoint_rescale_1_2_1_keeps_counts_and_every_users_state(flink_cluster) -> None:
    s = flink_cluster
    start = int(time.time() * 1000) - 3600 * 1000
    first = generator.events(1200, users=40, start_ms=start, seed=31, user_prefix=f"{s.topic_prefix}u",
                             max_step_ms=50)
    produce(s, s.topic("events"), first.records)
    users = sorted(first.per_user)
    job = cluster.submit(s, parallelism=1)
    _counts_exact(s, dict(first.per_user), "p1")
    # requests carry the last event's time: they move no watermark past a session timer
    d1 = _digests(s, users, "p1", first.max_ts)
    assert all(d1.values()), "a user with events answered without state"
    sp1 = cluster.stop_with_savepoint(s, job)
    assert job not in cluster.running_jobs(s)

    job = cluster.submit(s, from_path=sp1, parallelism=2)
    d2 = _digests(s, users, "p2", first.max_ts)
    changed = [u for u in users if d2[u] != d1[u]]
    print(f"p1 -> savepoint -> p2: state hash {_combined(d1)} -> {_combined(d2)}, {len(changed)} users changed")
    assert not changed, f"state changed by the rescale 1 -> 2 for {len(changed)} users, e.g. {changed[:3]}"

    second = generator.events(600, users=40, start_ms=first.max_ts + 1, seed=32, user_prefix=f"{s.topic_prefix}u",
                              max_step_ms=50)
    produce(s, s.topic("events"), second.records)
    expected = dict(Counter(first.per_user) + Counter(second.per_user))
    _counts_exact(s, expected, "p2 after more events")
    d2b = _digests(s, users, "p2b", second.max_ts)
    moved = [u for u in second.per_user if d2b[u] == d2[u]]
    assert not moved, f"new events did not change the digest of {moved[:3]}: the digest does not see the state"
    sp2 = cluster.stop_with_savepoint(s, job)

    job = cluster.submit(s, from_path=sp2, parallelism=1)
    d3 = _digests(s, users, "p1again", second.max_ts)
    changed = [u for u in users if d3[u] != d2b[u]]
    print(f"p2 -> savepoint -> p1: state hash {_combined(d2b)} -> {_combined(d3)}, {len(changed)} users changed; "
          f"savepoints {sp1}, {sp2}")
    assert not changed, f"state changed by the rescale 2 -> 1 for {len(changed)} users, e.g. {changed[:3]}"
    _counts_exact(s, expected, "p1 again")
    # one answer per request id across both stop-with-savepoint/resume cycles (read_committed)
    asked = {f"{s.topic_prefix}{step}-{u}" for step in ("p1", "p2", "p2b", "p1again") for u in users}
    copies = Counter(rid for v in read_committed(s, s.topic("recommendations"), idle_ms=2000)
                     if (rid := json.loads(v)["request_id"]) in asked)
    wrong = {r: copies[r] for r in asked if copies[r] != 1}
    assert not wrong, f"{len(wrong)} requests not answered exactly once across savepoints: {list(wrong.items())[:3]}"
    cluster.flink(s, "cancel", job)

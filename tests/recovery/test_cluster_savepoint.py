"""On a real standalone cluster (from the apache-flink wheel): submit, stop with savepoint, resume at
parallelism 2 (a rescale), and count exactly in Cassandra at each step."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipeline import cluster, generator
from pipeline.cassandra_io import event_counts as _event_counts
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce

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


def test_stop_with_savepoint_and_resume_rescaled_keeps_exact_counts(flink_cluster) -> None:
    s = flink_cluster
    start = int(time.time() * 1000) - 3600 * 1000
    first = generator.events(1200, users=40, start_ms=start, seed=31, user_prefix=f"{s.topic_prefix}u",
                             max_step_ms=50)
    produce(s, s.topic("events"), first.records)
    job = cluster.submit(s, parallelism=1)
    users = sorted(first.per_user)
    got: dict[str, int] = {}
    assert wait_until(lambda: got.update(_event_counts(s, users)) or got == dict(first.per_user), 240, interval_s=2)
    savepoint = cluster.stop_with_savepoint(s, job)
    print(f"stopped {job} with savepoint {savepoint}")
    assert job not in cluster.running_jobs(s)

    second = generator.events(600, users=40, start_ms=first.max_ts + 1, seed=32, user_prefix=f"{s.topic_prefix}u",
                              max_step_ms=50)
    produce(s, s.topic("events"), second.records)
    expected = dict(Counter(first.per_user) + Counter(second.per_user))
    users = sorted(expected)
    job2 = cluster.submit(s, from_path=savepoint, parallelism=2)
    got = {}
    ok = wait_until(lambda: got.update(_event_counts(s, users)) or got == expected, 240, interval_s=2)
    diff = {u: (got.get(u), n) for u, n in expected.items() if got.get(u) != n}
    assert ok, f"after resume at parallelism 2 from {savepoint}: {list(diff.items())[:5]}"
    cluster.flink(s, "cancel", job2)

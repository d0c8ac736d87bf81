"""The smallest real job in a MiniCluster (thread mode, checkpoints on): exact committed output."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from pipeline import generator
from pipeline.flink_env import job_configuration, stream_env
from pipeline.jobs import count_job
from pipeline.kafka_io import produce, read_committed

pytestmark = [pytest.mark.integration, pytest.mark.flink]


def test_count_job_output_is_exact_for_read_committed_consumer(isolated) -> None:
    batch = generator.events(3000, users=50, malformed_every=100, start_ms=int(time.time() * 1000))
    produce(isolated, isolated.topic("events"), batch.records)

    conf = job_configuration(isolated)
    assert conf["python.execution-mode"] == "thread"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"

    env = stream_env(isolated)
    count_job.build(env, isolated, bounded=True, group_id=f"{isolated.topic_prefix}count")
    env.execute(f"{isolated.topic_prefix}count")

    outputs = [v.decode() for v in read_committed(isolated, isolated.topic("user-counts"), idle_ms=3000)]
    # One output per input record; each user's running counts are exactly 1..n (no duplicate, no gap;
    # order across output partitions is not guaranteed, so compare as sets), n = that user's input count.
    assert len(outputs) == len(batch.records)
    running: dict[str, list[int]] = defaultdict(list)
    for line in outputs:
        user, n = line.rsplit(",", 1)
        running[user].append(int(n))
    expected = dict(batch.per_user)
    expected[count_job.UNPARSABLE] = batch.malformed
    assert {u: len(ns) for u, ns in running.items()} == expected
    for user, ns in running.items():
        assert sorted(ns) == list(range(1, expected[user] + 1)), f"running counts of {user} repeat or skip"

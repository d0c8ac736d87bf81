"""Cassandra stopped for 60 s mid-stream: the job waits (retries with back-pressure), nothing is dropped.

Injected: Cassandra is stopped by its recorded pid while events keep arriving, and started again after
60 s. Counted: every user's event count in Cassandra afterwards equals what was sent, and the job
process never died during the outage (it retried instead of failing).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipeline import generator
from pipeline.cassandra_io import event_counts
from pipeline.infra import procs, stack
from pipeline.infra.procs import wait_until
from pipeline.infra.servers import CassandraServer
from pipeline.kafka_io import produce
from tests.recovery.counts import await_counts
from tests.recovery.test_kill_after_checkpoint import _job_env, _kill, _start

pytestmark = [pytest.mark.integration, pytest.mark.flink]

OUTAGE_S = 60


def test_a_60s_cassandra_outage_drops_no_write(isolated, tmp_path) -> None:
    s = isolated
    log = tmp_path / "job.log"
    start = int(time.time() * 1000) - 3600 * 1000
    first = generator.events(600, users=40, start_ms=start, seed=31, user_prefix=f"{s.topic_prefix}u", max_step_ms=20)
    produce(s, s.topic("events"), first.records)
    env = _job_env(s, tmp_path / "checkpoints", LIVEREC_PROFILE_FLUSH_MS="1000", LIVEREC_ONLINE_EVAL_PERCENT="0")
    proc = _start(env, log)
    users = sorted(first.per_user)
    try:
        assert wait_until(lambda: event_counts(s, users) == dict(first.per_user), 240, interval_s=1), (
            f"writes never flowed before the outage; job log {log}"
        )
        cassandra = CassandraServer(s)
        pid = procs.stop(cassandra.svc)
        assert pid is not None, "the test needs a Cassandra it can stop by pid"
        stopped = time.monotonic()
        second = generator.events(600, users=40, start_ms=first.max_ts + 1, seed=32,
                                  user_prefix=f"{s.topic_prefix}u", max_step_ms=20)
        produce(s, s.topic("events"), second.records)
        print(f"injected: Cassandra pid {pid} stopped; {len(second.records)} events sent during the outage")
        # The outage lasts OUTAGE_S: the job must stay up the whole time (retrying, not failing).
        assert not wait_until(lambda: proc.poll() is not None, OUTAGE_S, interval_s=1), f"the job died; log {log}"
        stack.up(s, log=lambda m: print(f"[outage] {m}"))
        print(f"Cassandra back after {time.monotonic() - stopped:.0f} s")
        expected = Counter(first.per_user) + Counter(second.per_user)
        ok, diff = await_counts(s, expected, 420)
        assert proc.poll() is None, f"the job process exited; log {log}"
    finally:
        _kill(proc)
    print(f"counted: {len(expected) - len(diff)}/{len(expected)} users exact, {sum(expected.values())} events")
    assert ok, f"profiles missing or stale after the outage: {list(diff.items())[:5]}; job log {log}"

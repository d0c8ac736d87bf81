"""Kill -9 the job right after a checkpoint, restore from that retained checkpoint, count exactly.

Run with the heap (hashmap) state backend and with RocksDB, full and incremental checkpoints.

Profile writes are coalesced (here: one per user per 10 days), so at the kill most profile changes
covered by the completed checkpoint have NOT reached Cassandra yet. They must arrive after the
restore (from restored state and restored flush timers), and replayed events must not count twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline import generator
from pipeline.cassandra_io import event_counts as _event_counts
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce
from tests.recovery.counts import await_counts

pytestmark = [pytest.mark.integration, pytest.mark.flink]


def _job_env(settings, chk_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "LIVEREC_TOPIC_PREFIX": settings.topic_prefix,
        "LIVEREC_CHECKPOINT_DIR": chk_dir.as_uri(),
        "LIVEREC_CHECKPOINT_INTERVAL_MS": "1000",
        "LIVEREC_JOB_NAME": "killtest",
    }
    env.update(extra)
    return env


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "pipeline.jobs.liverec_job"], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _committed_offsets(settings, group: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        topic = settings.topic("events")
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close()


def _latest_checkpoint(chk_dir: Path) -> Path | None:
    done = [p.parent for p in chk_dir.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


BACKENDS = {
    "hashmap": {"LIVEREC_STATE_BACKEND": "hashmap"},
    "rocksdb-full": {"LIVEREC_STATE_BACKEND": "rocksdb", "LIVEREC_INCREMENTAL_CHECKPOINTS": "false"},
    "rocksdb-incremental": {"LIVEREC_STATE_BACKEND": "rocksdb", "LIVEREC_INCREMENTAL_CHECKPOINTS": "true"},
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_nothing_acknowledged_by_a_checkpoint_is_lost_or_doubled(isolated, tmp_path, backend: str) -> None:
    chk_dir = tmp_path / "checkpoints"
    log = tmp_path / "job.log"
    start = int(time.time() * 1000) - 3600 * 1000
    # Small event-time steps: every user stays in one open session, so no session close writes early.
    first = generator.events(1500, users=50, start_ms=start, seed=21, user_prefix=f"{isolated.topic_prefix}u",
                             max_step_ms=20)
    produce(isolated, isolated.topic("events"), first.records)
    group = f"killtest-{isolated.topic_prefix}job"

    # Flush timers are aligned to multiples of the interval (epoch-based): with 10 days no boundary can
    # fall inside this run, so at the kill nothing has been flushed (a 60 s interval sometimes crossed one).
    proc = _start(_job_env(isolated, chk_dir, LIVEREC_PROFILE_FLUSH_MS=str(10 * 86_400_000), **BACKENDS[backend]), log)
    try:
        # A checkpoint that covers every record of the first batch has completed once the source
        # has committed (on checkpoint completion) offsets for all of them.
        assert wait_until(lambda: _committed_offsets(isolated, group) == len(first.records), 180, interval_s=0.5), (
            f"no checkpoint covered the first batch; job log: {log}"
        )
    finally:
        _kill(proc)
    checkpoint = _latest_checkpoint(chk_dir)
    assert checkpoint is not None
    # Incremental RocksDB checkpoints keep their SST files in the job's shared/ folder; full ones do not.
    shared = [f for f in checkpoint.parent.glob("shared/**/*") if f.is_file()]
    assert bool(shared) == (backend == "rocksdb-incremental"), f"{backend}: {len(shared)} shared files"
    users = sorted(first.per_user)
    before = _event_counts(isolated, users)
    exact_before = sum(1 for u in users if before.get(u) == first.per_user[u])
    print(f"[{backend}] killed after {checkpoint.name}; profiles already exact in Cassandra: "
          f"{exact_before}/{len(users)}")
    # The kill must have cut off unwritten changes, or this test would prove nothing.
    assert exact_before < len(users)

    second = generator.events(700, users=50, start_ms=first.max_ts + 1, seed=22,
                              user_prefix=f"{isolated.topic_prefix}u", max_step_ms=20)
    produce(isolated, isolated.topic("events"), second.records)
    expected = Counter(first.per_user) + Counter(second.per_user)
    users = sorted(expected)

    proc = _start(
        _job_env(isolated, chk_dir, LIVEREC_PROFILE_FLUSH_MS="1000", LIVEREC_RESTORE_PATH=str(checkpoint),
                 **BACKENDS[backend]),
        log,
    )
    try:
        ok, diff = await_counts(isolated, expected, 240)
    finally:
        _kill(proc)
    print(f"after restore: {len(users) - len(diff)}/{len(users)} users exact, {sum(expected.values())} events")
    assert ok, f"lost or doubled after restore from {checkpoint}: {list(diff.items())[:5]}; job log: {log}"

"""Throughput of the whole job on the local stack (MiniCluster, thread mode, exactly-once on).

Pre-produces N events, starts the job, and watches the events source's committed offsets (committed
when a checkpoint covering them completes) and the per-user counts landing in Cassandra. Reports
events/s between 20% and 80% of the input for both, which excludes start-up and the tail. Needs the
local stack (`liverec infra up`). BENCH_PROFILE_FLUSH_MS / LIVEREC_ITEM_FLUSH_MS change the write rates.

    .cache/venv/bin/python benchmarks/job_throughput.py --events 30000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from pipeline import generator
from pipeline.cassandra_io import event_counts
from pipeline.flink_env import stream_env
from pipeline.jobs import liverec_job
from pipeline.kafka_io import ensure_topics, produce
from pipeline.settings import load_settings


def committed(settings, group: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        topic = settings.topic("events")
        return sum(c.committed(TopicPartition(topic, p)) or 0 for p in c.partitions_for_topic(topic) or [])
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/job_throughput.json"))
    args = ap.parse_args()
    flush = int(os.environ.get("BENCH_PROFILE_FLUSH_MS", "5000"))
    s = load_settings(topic_prefix=f"bench{int(time.time())}-", profile_flush_ms=flush)
    ensure_topics(s)
    batch = generator.events(args.events, users=args.users, start_ms=int(time.time() * 1000) - 24 * 3600 * 1000,
                             seed=5, user_prefix=f"{s.topic_prefix}u", max_step_ms=100)
    produce(s, s.topic("events"), batch.records)
    print(f"produced {len(batch.records)} events for {args.users} users; starting the job")
    env = stream_env(s)
    liverec_job.build(env, s)
    client = env.execute_async("bench")
    users = sorted(batch.per_user)
    total = sum(batch.per_user.values())
    marks: dict[float, float] = {}
    src: dict[float, float] = {}
    group = f"{s.job_name}-{s.topic_prefix}job"
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 900:
            done = sum(event_counts(s, users).values())
            consumed = committed(s, group)
            now = time.monotonic()
            for frac in (0.2, 0.8, 1.0):
                if frac not in marks and done >= frac * total:
                    marks[frac] = now
                if frac not in src and consumed >= frac * len(batch.records):
                    src[frac] = now
            print(f"{now - t0:6.1f}s  checkpointed {consumed}/{len(batch.records)}  in Cassandra {done}/{total}")
            if 1.0 in marks and 1.0 in src:
                break
            time.sleep(1)
    finally:
        client.cancel().result()

    def rate(m: dict[float, float], n: int) -> float:
        return 0.6 * n / (m[0.8] - m[0.2]) if 0.8 in m and m[0.8] > m[0.2] else float("nan")

    result = {
        "events": total, "users": args.users,
        "checkpointed_events_per_s_20_80": round(rate(src, len(batch.records)), 1),
        "cassandra_events_per_s_20_80": round(rate(marks, total), 1),
        "profile_flush_ms": s.profile_flush_ms, "item_flush_ms": s.item_flush_ms,
        "seconds_to_all": round(marks.get(1.0, float("nan")) - t0, 1),
        "checkpoint_interval_ms": s.checkpoint_interval_ms, "parallelism": s.parallelism,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
    }
    print("| events | users | profile/item flush ms | checkpointed events/s | events/s into Cassandra | s to all |")
    print("|---|---|---|---|---|---|")
    print(f"| {total} | {args.users} | {s.profile_flush_ms}/{s.item_flush_ms} "
          f"| {result['checkpointed_events_per_s_20_80']:,.0f} | {result['cassandra_events_per_s_20_80']:,.0f} "
          f"| {result['seconds_to_all']} |")
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

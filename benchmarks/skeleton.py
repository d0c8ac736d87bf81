"""The per-record reference: a bare three-stage keyed PyFlink job (user → item → index), thread mode.

Why: the job's events/s means little alone on a shared 2-core machine (±2× run to run). This skeleton
does the least any per-record design of the job must do (one Python call per record per stage, bytes
state read and written per record, a rank-1 SGD step on float32[64], an event-time timer per event,
EXACTLY_ONCE checkpoints, a transactional Kafka sink) on the same Kafka input, in the same process
setup (`pipeline.flink_env.stream_env`), so the ratio job / skeleton measured in one run is the figure
to compare (../shared/MEASUREMENTS.md: 5,300–6,300 events/s with checkpoints every 1–10 s).

Rate: the 20–80% slope of the source's committed offsets (committed when a checkpoint completes), as
for the job, over the checkpoints inside the run (`benchmarks/progress.Curve.rate`); and, at record
grain, the 20–80% slope of the output records' broker append times (the output topic is LogAppendTime,
and the transactional sink appends as it goes). ``events_per_s`` is the offsets slope when the run had
two checkpoints inside it, else the append-time slope (``rate_source`` says which).

    .cache/venv/bin/python benchmarks/skeleton.py --events 100000 --users 10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.progress import Curve, Offsets, Probe, cancel, scratch_checkpoints, stamp, watch  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402

DIM = 64
LR = 0.05
INDEX_SHARDS = 4
SESSION_GAP_MS = 30 * 60 * 1000


def sgd_step(a: Any, b: Any) -> Any:
    """One rank-1 SGD step of ``a`` towards a dot product of 1 with ``b`` (float32[64]), norm-clipped.

    >>> import numpy as np
    >>> a = sgd_step(np.zeros(64, np.float32), np.full(64, 0.125, np.float32))
    >>> a.dtype, round(float(a[0]), 5)
    (dtype('float32'), 0.00625)
    """
    import numpy as np

    err = np.float32(1.0) - np.float32(a @ b)
    a = a + np.float32(LR) * err * b
    n = float(np.linalg.norm(a))
    return a * np.float32(4.0 / n) if n > 4.0 else a


def seed_vector(key: str) -> Any:
    """A small deterministic float32[64] for a key seen for the first time."""
    import numpy as np

    return (np.random.default_rng(zlib.crc32(key.encode())).standard_normal(DIM) * 0.1).astype(np.float32)


def build(env: Any, settings: Settings, *, topic: str, group: str, out_topic: str) -> None:
    """Add the skeleton to ``env``: Kafka bytes → parse → user stage → item stage → index shards → Kafka."""
    from pyflink.common import Duration, Types, WatermarkStrategy
    from pyflink.common.watermark_strategy import TimestampAssigner
    from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    from pipeline.sources_sinks import bytes_sink, bytes_source

    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    keyed_bytes = Types.TUPLE([Types.STRING(), bytes_type])

    class EventTime(TimestampAssigner):
        """Event time = the record's ``ts`` (field 2 of the parsed tuple)."""

        def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
            return value[2]

    class UserStep(KeyedProcessFunction):
        """Per user: read the vector, step it towards the item, write it back, set a session timer."""

        def open(self, runtime_context: RuntimeContext) -> None:
            self.vec = runtime_context.get_state(ValueStateDescriptor("user-vec", Types.PICKLED_BYTE_ARRAY()))
            self.items: dict[str, Any] = {}  # fixed item vectors of this stage: the job keeps a replica

        def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):  # noqa: ANN201
            import numpy as np

            user, item, ts = value
            raw = self.vec.value()
            u = np.frombuffer(raw, np.float32) if raw else seed_vector(user)
            x = self.items.get(item)
            if x is None:
                x = self.items[item] = seed_vector(item)
            u = sgd_step(u, x)
            ub = u.tobytes()
            self.vec.update(ub)
            ctx.timer_service().register_event_time_timer(ts + SESSION_GAP_MS)
            yield item, ub

        def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # noqa: ANN201
            return iter(())  # a session would close here; the call itself is what the skeleton costs

    class ItemStep(KeyedProcessFunction):
        """Per item: read the vector, step it towards the user's, write it back, pass it on."""

        def open(self, runtime_context: RuntimeContext) -> None:
            self.vec = runtime_context.get_state(ValueStateDescriptor("item-vec", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):  # noqa: ANN201
            import numpy as np

            item, ub = value
            raw = self.vec.value()
            v = np.frombuffer(raw, np.float32) if raw else seed_vector(item)
            v = sgd_step(v, np.frombuffer(bytes(ub), np.float32))
            vb = v.tobytes()
            self.vec.update(vb)
            yield item, vb

    class IndexShard(KeyedProcessFunction):
        """Per index shard: fold the item vector into the shard's bytes state, emit the item id."""

        def open(self, runtime_context: RuntimeContext) -> None:
            self.acc = runtime_context.get_state(ValueStateDescriptor("shard-acc", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):  # noqa: ANN201
            import numpy as np

            item, vb = value
            raw = self.acc.value()
            acc = np.frombuffer(raw, np.float32) if raw else np.zeros(DIM, np.float32)
            self.acc.update((acc * np.float32(0.999) + np.frombuffer(bytes(vb), np.float32)).tobytes())
            yield item.encode()

    def parse(raw: Any) -> tuple[str, str, int]:
        e = json.loads(bytes(raw))
        return e["user_id"], e["item_id"], int(e["ts"])

    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(settings.out_of_orderness_ms)).with_timestamp_assigner(EventTime())
    src = env.from_source(bytes_source(settings, topic, group_id=group), WatermarkStrategy.no_watermarks(),
                          "skeleton-source").uid("skeleton-source")
    parsed = (
        src.map(parse, output_type=Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG()]))
        .name("skeleton-parse").uid("skeleton-parse")
        .assign_timestamps_and_watermarks(strategy).name("skeleton-watermarks").uid("skeleton-watermarks")
    )
    users = (parsed.key_by(lambda r: r[0], key_type=Types.STRING())
             .process(UserStep(), output_type=keyed_bytes).name("skeleton-users").uid("skeleton-users"))
    items = (users.key_by(lambda r: r[0], key_type=Types.STRING())
             .process(ItemStep(), output_type=keyed_bytes).name("skeleton-items").uid("skeleton-items"))
    index = (items.key_by(lambda r: zlib.crc32(r[0].encode()) % INDEX_SHARDS, key_type=Types.INT())
             .process(IndexShard(), output_type=bytes_type).name("skeleton-index").uid("skeleton-index"))
    index.sink_to(bytes_sink(settings, out_topic, name=out_topic)).name("skeleton-sink").uid("skeleton-sink")


def _append_rate(settings: Settings, topic: str, n: int, timeout_s: float = 60) -> float | None:
    """20–80% slope of the committed output records' broker append times (records/s)."""

    from pipeline.kafka_io import consumer, seek_from

    c = consumer(settings, isolation_level="read_committed", enable_auto_commit=False, consumer_timeout_ms=3000)
    stamps: list[int] = []
    try:
        seek_from(c, settings.topic(topic), None)
        deadline = time.monotonic() + timeout_s
        for msg in c:
            stamps.append(msg.timestamp)
            if len(stamps) >= n or time.monotonic() > deadline:
                break
    finally:
        c.close()
    if len(stamps) < n:
        print(f"[skeleton] output has {len(stamps)} of {n} records; no append-time rate", flush=True)
        return None
    stamps.sort()
    lo, hi = stamps[int(0.2 * n)], stamps[int(0.8 * n) - 1]
    return round(0.6 * n / ((hi - lo) / 1000), 1) if hi > lo else None


def run_skeleton(settings: Settings, topic: str, n_records: int, deadline_s: float) -> dict[str, Any]:
    """Run the skeleton over the first ``n_records`` of logical ``topic`` (already produced); return its rates.

    ``settings`` give the Kafka address, topic prefix, checkpoint interval (the figure depends on it) and
    out-of-orderness; restarts are capped at 1 so a broken start fails instead of retrying forever.
    """
    from pipeline.flink_env import stream_env
    from pipeline.kafka_io import ensure_topics
    from state_schemas.topics import TopicSpec

    run = f"{int(time.time() * 1000) % 10**9}"
    out_topic = f"skeleton-out-{run}"
    group = f"skeleton-{settings.topic_prefix}{run}"
    ensure_topics(settings, (TopicSpec(out_topic, 1, {"message.timestamp.type": "LogAppendTime",
                                                      "retention.ms": str(24 * 3600 * 1000)}),))
    base = settings.model_copy(update={"restart_attempts": min(settings.restart_attempts, 1),
                                       "job_name": f"{settings.job_name}-skeleton"})
    with scratch_checkpoints(base) as s:
        env = stream_env(s)
        build(env, s, topic=topic, group=group, out_topic=out_topic)
        offsets = Offsets(s, group, s.topic(topic))
        t0 = time.monotonic()
        client = env.execute_async("liverec-skeleton")
        try:
            curves = watch(client, "skeleton", [Probe("checkpointed", offsets, n_records, 0.5)],
                           deadline_s=deadline_s, t0=t0)
        finally:
            cancel(client)
            offsets.close()
    curve: Curve = curves["checkpointed"]
    done = curve.last >= n_records
    offsets_rate, method = curve.rate()
    append = _append_rate(s, out_topic, n_records) if done else None
    # At ~5k events/s a 100k-event run spans two or three 10 s checkpoints: one step inside the run at
    # most, and the offsets slope then includes the idle wait for the last checkpoint. The append-time
    # slope is the same throughput at record grain (they agreed within 2% when both were available).
    rate, source = (offsets_rate, f"offsets, {method}") if method == "interior" or append is None else (
        append, "output append times (offsets had too few steps inside the run)")
    return {
        "events_per_s": rate, "rate_source": source, "rate_method": method,
        "offsets_events_per_s": offsets_rate, "append_events_per_s": append,
        "records": n_records, "completed": done, "seconds_to_all": curve.time_at(1.0),
        "checkpoints_seen": len(curve.points), "curve": [(round(t, 2), v) for t, v in curve.points],
        "checkpoint_interval_ms": s.checkpoint_interval_ms, "out_topic": s.topic(out_topic),
    }


def main() -> None:
    """Produce a dataset under a fresh topic prefix and run the skeleton over it alone."""
    from benchmarks.bench_data import make_stream, produce_all

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--checkpoint-ms", type=int, default=10_000)
    ap.add_argument("--deadline-s", type=float, default=600)
    ap.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = ap.parse_args()
    s = load_settings(topic_prefix=f"skel{int(time.time())}-", checkpoint_interval_ms=args.checkpoint_ms,
                      restart_attempts=0)
    stream = make_stream(args.events, args.users, args.items, 0.0, 5, user_prefix=f"{s.topic_prefix}u")
    n = produce_all(s, stream)["events"]
    print(f"produced {n} events for {args.users} users to {s.topic('events')}", flush=True)
    res = {**run_skeleton(s, "events", n, args.deadline_s), "users": args.users, "items": args.items, **stamp()}
    print(json.dumps({k: v for k, v in res.items() if k != "curve"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()

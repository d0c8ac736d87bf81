"""Throughput of the whole job beside its two references, measured in one run on one dataset.

Why three columns: on a shared 2-core machine an events/s figure alone swings ±2× run to run; the
ratios measured in the same run do not. One invocation produces the dataset once (events + 1%
requests, `benchmarks/bench_data.py`) under a fresh topic prefix, then runs

(a) the per-record skeleton (`benchmarks/skeleton.py`) over the same events topic, its own group;
(b) the liverec job exactly as deployed (`pipeline.jobs.liverec_job.build`, MiniCluster, thread mode,
    EXACTLY_ONCE), measured by its events source's committed offsets (committed when a checkpoint
    completes) and by the per-user counts landing in Cassandra (polled for a 5% sample of the users, every
    user read once at the end: a row read costs Cassandra CPU the job would otherwise have);
(c) the job's batch steps replayed in plain Python (`pipeline.batch_replay.replay`): the ceiling of
    the Python work alone.

Rates are the 20–80% slopes of the committed-offsets staircase, its steps joined by straight lines and
clipped to the steps strictly inside the run (start-up before the first checkpoint and the idle wait for
the last one excluded; `benchmarks/progress.Curve.rate`). Needs the local stack (`liverec infra up`).

    .cache/venv/bin/python benchmarks/job_throughput.py                      # 200k events, 10k users
    .cache/venv/bin/python benchmarks/job_throughput.py --events 3000 --users 300 --skip-replay
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_data import event_values, is_request, make_stream, per_user, produce_all  # noqa: E402
from benchmarks.cpu_share import CpuShare, child_jvms, per_event_us, servers  # noqa: E402
from benchmarks.progress import Offsets, Probe, cancel, scratch_checkpoints, stamp, watch  # noqa: E402
from benchmarks.skeleton import run_skeleton  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402


class CassandraCounts:
    """Sum of ``user_profiles.event_count`` over a fixed sample of the run's users, on one open session.

    Why a sample: reading a row costs Cassandra ~250 µs of CPU here (measured: 10k rows by ``IN`` queries of
    100 keys), so polling every user every 5 s took about half a core from the job being measured on a
    2-core machine. The curve follows one user in ``sample_every`` (chosen by crc32 of the id, so the same
    users every run); `full` reads every user once, at the end, for completeness. Why its own session:
    `pipeline.cassandra_io.event_counts` connects per call, about a second each time.
    """

    def __init__(self, settings: Settings, users: dict[str, int], sample_every: int = 20) -> None:
        from pipeline.cassandra_io import connect

        self._cluster, self._session = connect(settings, keyspace=settings.cassandra_keyspace)
        self._all = sorted(users)
        self.sample = [u for u in self._all if zlib.crc32(u.encode()) % sample_every == 0] or self._all[:1]
        self.sample_total = sum(users[u] for u in self.sample)
        self.scale = sum(users.values()) / max(1, self.sample_total)

    def __call__(self) -> int:
        """Events the job has written so far for the sampled users."""
        return self._count(self.sample)

    def full(self) -> int:
        """Events the job has written so far for every user of the run."""
        return self._count(self._all)

    def _count(self, users: list[str]) -> int:
        from cassandra.query import ValueSequence

        n = 0
        for i in range(0, len(users), 100):
            rows = self._session.execute("SELECT event_count FROM user_profiles WHERE user_id IN %s",
                                         (ValueSequence(users[i : i + 100]),))
            n += sum(r.event_count or 0 for r in rows)
        return n

    def close(self) -> None:
        """Shut the driver down."""
        self._cluster.shutdown()


def run_job(settings: Settings, n_events: int, users: dict[str, int], deadline_s: float) -> dict[str, Any]:
    """The job as deployed, over the pre-produced topics; its checkpointed and Cassandra rates."""
    from pipeline.flink_env import stream_env
    from pipeline.jobs import liverec_job

    group = f"{settings.job_name}-{settings.topic_prefix}job"
    total = sum(users.values())
    with scratch_checkpoints(settings) as s:
        env = stream_env(s)
        liverec_job.build(env, s)
        offsets = Offsets(s, group, s.topic("events"))
        counts = CassandraCounts(s, users)
        t0 = time.monotonic()
        client = env.execute_async(f"{s.job_name}-bench")
        jvms = child_jvms()
        cpu = CpuShare({**({"job": jvms[0]} if len(jvms) == 1 else {}), **servers()})
        cpu.start()
        try:
            curves = watch(client, "job", [Probe("checkpointed", offsets, n_events, 1.0),
                                           Probe("in Cassandra (sample)", counts, counts.sample_total, 5.0)],
                           deadline_s=deadline_s, t0=t0, settle_s=120)
            cpu_s = cpu.since()
            in_cassandra = counts.full()
        finally:
            cancel(client)
            offsets.close()
            counts.close()
    src, cas = curves["checkpointed"], curves["in Cassandra (sample)"]
    (rate, method), (cas_rate, cas_method) = src.rate(), cas.rate()
    cas_rate = None if cas_rate is None else round(cas_rate * counts.scale, 2)
    return {
        "events_per_s": rate, "rate_method": method, "cassandra_events_per_s": cas_rate,
        "cassandra_rate_method": cas_method,
        "completed": src.last >= n_events, "cassandra_complete": in_cassandra >= total,
        "cassandra_events": in_cassandra, "cassandra_sample_users": len(counts.sample),
        "seconds_to_all_checkpointed": src.time_at(1.0), "seconds_to_all_in_cassandra": cas.time_at(1.0),
        "checkpoints_seen": len(src.points),
        # From submission until every event is checkpointed and in Cassandra (start-up and JIT included;
        # Cassandra's share includes the probe's reads). Empty when the job's JVM was not identified.
        "cpu_us_per_event": per_event_us(cpu_s, n_events) if "job" in cpu.pids else {},
        "curve": [(round(t, 2), v) for t, v in src.points],
        "cassandra_curve": [(round(t, 2), round(v * counts.scale)) for t, v in cas.points],
    }


def run_replay(settings: Settings, stream: list[tuple[bytes | None, bytes]]) -> dict[str, Any] | None:
    """The job's batch steps in plain Python over the same records; None if that module is missing."""
    try:
        from pipeline.batch_replay import replay
    except ImportError as exc:
        print(f"[replay] replay column missing: cannot import pipeline.batch_replay.replay ({exc}); "
              "recorded as null", flush=True)
        return None
    values = [v for _, v in stream]
    if "topics" in inspect.signature(replay).parameters:
        topics = [settings.topic("rec-requests" if is_request(v) else "events") for v in values]
        out = replay(settings, values, topics=topics)
    else:  # the bare signature replay(settings, values) takes events only
        out = replay(settings, event_values(stream))
    events, seconds = out.get("events"), out.get("seconds")
    rate = round(events / seconds, 1) if events and seconds else None
    print(f"[replay] {events} events in {seconds} s: {rate} events/s", flush=True)
    return {**out, "events_per_s": rate}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b and math.isfinite(a) and math.isfinite(b) else None


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def main() -> int:
    """Produce once, run skeleton → job → replay, print a table, write the JSON; 1 if a run failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--requests-share", type=float, default=0.01)
    ap.add_argument("--checkpoint-ms", type=int, default=10_000)
    ap.add_argument("--skip-skeleton", action="store_true")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument("--skip-job", action="store_true", help="references only (plumbing checks)")
    ap.add_argument("--profile-flush-ms", type=int, default=None, help="default: the settings' value")
    ap.add_argument("--item-flush-ms", type=int, default=None, help="default: the settings' value")
    ap.add_argument("--restart-attempts", type=int, default=0, help="bounded: a failing run fails loudly")
    ap.add_argument("--skeleton-deadline-s", type=float, default=600)
    ap.add_argument("--job-deadline-s", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/job_throughput.json"))
    args = ap.parse_args()

    overrides: dict[str, Any] = {"topic_prefix": f"bench{int(time.time())}-",
                                 "checkpoint_interval_ms": args.checkpoint_ms,
                                 "restart_attempts": args.restart_attempts}
    if args.profile_flush_ms is not None:
        overrides["profile_flush_ms"] = args.profile_flush_ms
    if args.item_flush_ms is not None:
        overrides["item_flush_ms"] = args.item_flush_ms
    s = load_settings(**overrides)
    stream = make_stream(args.events, args.users, args.items, args.requests_share, args.seed,
                         user_prefix=f"{s.topic_prefix}u")
    users = dict(per_user(stream))
    produced = produce_all(s, stream)
    n = produced["events"]
    print(f"produced {n} events ({len(users)} users, {args.items} items) and {produced['requests']} requests "
          f"under prefix {s.topic_prefix}", flush=True)

    errors: dict[str, str] = {}
    skeleton = job = replayed = None
    if not args.skip_skeleton:
        try:
            skeleton = run_skeleton(s, "events", n, args.skeleton_deadline_s)
        except RuntimeError as exc:
            errors["skeleton"] = str(exc)
            print(f"[skeleton] FAILED: {exc}", flush=True)
    if not args.skip_job:
        try:
            job = run_job(s, n, users, args.job_deadline_s)
        except RuntimeError as exc:
            errors["job"] = str(exc)
            print(f"[job] FAILED: {exc}", flush=True)
    if not args.skip_replay:
        replayed = run_replay(s, stream)

    job_rate = job and job["events_per_s"]
    skel_rate = skeleton and skeleton["events_per_s"]
    replay_rate = replayed and replayed["events_per_s"]
    result: dict[str, Any] = {
        "events_per_s": job_rate,
        "cassandra_events_per_s": job and job["cassandra_events_per_s"],
        "skeleton_events_per_s": skel_rate,
        "skeleton_rate_source": skeleton and skeleton["rate_source"],
        "skeleton_append_events_per_s": skeleton and skeleton["append_events_per_s"],
        "replay_events_per_s": replay_rate,
        "ratio_vs_skeleton": _ratio(job_rate, skel_rate),
        "ratio_vs_replay": _ratio(job_rate, replay_rate),
        "events": n, "requests": produced["requests"], "users": len(users), "items": args.items,
        "seed": args.seed, "errors": errors or None,
        "job": job, "skeleton": skeleton, "replay": replayed,
        "settings": s.model_dump(mode="json", exclude={"cache_dir", "java_home"}),
        **stamp(),
    }
    print()
    print(f"{n:,} events, {len(users):,} users, {args.items:,} items, {produced['requests']:,} requests; "
          f"EXACTLY_ONCE every {s.checkpoint_interval_ms / 1000:g} s; load avg {result['machine']['load_avg_1m']}")
    print()
    sk, jb = skeleton or {}, job or {}
    print("| run | events/s (20–80%) | job ÷ this | slope over |")
    print("|---|---|---|---|")
    print(f"| **skeleton**, per record | {_fmt(skel_rate)} | {result['ratio_vs_skeleton'] or '—'} "
          f"| {sk.get('rate_source', '—')} |")
    print(f"| skeleton (checkpointed offsets) | {_fmt(sk.get('offsets_events_per_s'))} | "
          f"| {sk.get('rate_method', '—')} |")
    print(f"| skeleton (output append times) | {_fmt(result['skeleton_append_events_per_s'])} | | every record |")
    print(f"| **job** (checkpointed offsets) | **{_fmt(job_rate)}** | 1 | {jb.get('rate_method', '—')} |")
    print(f"| job (profiles into Cassandra) | {_fmt(result['cassandra_events_per_s'])} | "
          f"| {jb.get('cassandra_rate_method', '—')} |")
    print(f"| batch steps replayed in plain Python | {_fmt(replay_rate)} | {result['ratio_vs_replay'] or '—'} "
          "| whole run |")
    if jb.get("cpu_us_per_event"):
        print("\n| where the job's CPU went | µs per event |\n|---|---|")
        for name, us in jb["cpu_us_per_event"].items():
            if us >= 1.0:
                print(f"| {name} | {us:,.0f} |")
    print("\n'interior': between checkpoints strictly inside the run; 'with tail': includes the wait for the "
          "last checkpoint, a lower bound (run more events or checkpoint more often)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    from pipeline.plots import plot_result

    print(f"wrote {plot_result(args.out, 'job_throughput')}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Request → answer latency of the running job while events stream in at a set rate.

Why: throughput alone hides queueing; a client sees the time from sending a request to reading its
answer, which includes the events backlog ahead of it and (with EXACTLY_ONCE answers) the wait for the
checkpoint that commits the answer. The job runs exactly as deployed (`liverec_job.build`, MiniCluster,
thread mode) under a fresh topic prefix; one thread sends events at ``--rate`` (event time = send
time), another sends requests at ``--request-rate`` with unique ``request_id`` s once the job has
checkpointed its first events, and a ``read_committed`` consumer of ``recommendations`` matches
answers by ``request_id``. Every part is bounded in count and time; the job is cancelled at the end.

    .cache/venv/bin/python benchmarks/latency.py --rate 8000 --duration-s 60
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_data import make_stream  # noqa: E402
from benchmarks.progress import Offsets, cancel, failure_of, job_status, scratch_checkpoints, stamp  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402

# The generator writes `"ts": <digits>` once per event; rewriting it at send time keeps event time at
# wall-clock time whatever rate the producer reaches (a re-encode per event would cost more).
_TS = re.compile(rb'"ts": \d+')


@dataclass
class Shared:
    """What the threads report to the main loop (each field written by one thread only)."""

    stop: threading.Event = field(default_factory=threading.Event)
    events_sent: int = 0
    events_seconds: float = 0.0
    requests_sent: dict[str, float] = field(default_factory=dict)  # request_id → wall time sent
    answers: dict[str, list[float]] = field(default_factory=dict)  # request_id → wall times read
    other_answers: int = 0  # answers to request ids we did not send (must stay 0)
    errors: list[str] = field(default_factory=list)


def _producer(settings: Settings, linger_ms: int) -> Any:
    from pipeline.kafka_io import producer

    return producer(settings, acks="all", enable_idempotence=True, linger_ms=linger_ms)


def send_events(settings: Settings, values: list[tuple[bytes | None, bytes]], rate: float, duration_s: float,
                sh: Shared) -> None:
    """Send ``values`` paced at ``rate``/s, each stamped with the send time, until all sent or time is up."""
    try:
        p = _producer(settings, 5)
        topic = settings.topic("events")
        t0 = time.monotonic()
        i = 0
        while i < len(values) and not sh.stop.is_set():
            elapsed = time.monotonic() - t0
            if elapsed > duration_s:
                break
            target = min(len(values), int(rate * elapsed) + 1)
            now_ms = b'"ts": %d' % int(time.time() * 1000)
            while i < target:
                key, value = values[i]
                p.send(topic, key=key, value=_TS.sub(now_ms, value, count=1))
                i += 1
            sh.events_sent = i
            time.sleep(0.005)
        p.flush()
        sh.events_seconds = time.monotonic() - t0
        p.close()
    except Exception as exc:  # noqa: BLE001 - reported by the main loop, which stops the run
        sh.errors.append(f"event producer: {exc!r}")


def send_requests(settings: Settings, sent_users: list[str], n: int, rate: float, duration_s: float, sh: Shared,
                  run: str) -> None:
    """Send ``n`` requests at ``rate``/s, each for a user whose event was already sent; note each send time.

    ``sent_users[i]`` is the user of the i-th event the event thread sends.
    """
    try:
        p = _producer(settings, 0)
        topic = settings.topic("rec-requests")
        rng = random.Random(11)
        t0 = time.monotonic()
        for i in range(n):
            if sh.stop.is_set() or time.monotonic() - t0 > duration_s:
                break
            wait = t0 + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            k = sh.events_sent
            user = sent_users[rng.randrange(k)] if k else sent_users[0]
            rid = f"{run}q{i}"
            now = time.time()
            doc = {"request_id": rid, "user_id": user, "k": 10, "ts": int(now * 1000)}
            sh.requests_sent[rid] = now
            p.send(topic, key=user.encode(), value=json.dumps(doc, separators=(",", ":")).encode())
        p.flush()
        p.close()
    except Exception as exc:  # noqa: BLE001 - reported by the main loop
        sh.errors.append(f"request producer: {exc!r}")


def read_answers(settings: Settings, sh: Shared) -> None:
    """Read committed answers and note when each request_id arrived, until told to stop."""

    from pipeline.kafka_io import consumer, seek_from

    try:
        c = consumer(settings, isolation_level="read_committed", enable_auto_commit=False)
        seek_from(c, settings.topic("recommendations"), None)
        while not sh.stop.is_set():
            for batch in c.poll(timeout_ms=200).values():
                now = time.time()
                for msg in batch:
                    rid = json.loads(msg.value).get("request_id")
                    if rid in sh.requests_sent:
                        sh.answers.setdefault(rid, []).append(now)
                    else:
                        sh.other_answers += 1
        c.close()
    except Exception as exc:  # noqa: BLE001 - reported by the main loop
        sh.errors.append(f"answer consumer: {exc!r}")


def summarize(sh: Shared) -> dict[str, Any]:
    """Latency percentiles over first answers, and requests answered / missing / answered twice."""
    import numpy as np

    lat = np.array([(ts[0] - sh.requests_sent[r]) * 1000 for r, ts in sh.answers.items()], dtype=float)
    sent = len(sh.requests_sent)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 1) if lat.size else None

    return {
        "requests_sent": sent, "answered": len(sh.answers), "missing": sent - len(sh.answers),
        "answered_twice": sum(1 for ts in sh.answers.values() if len(ts) > 1),
        "unknown_answers": sh.other_answers,
        "latency_ms_p50": pct(50), "latency_ms_p99": pct(99),
        "latency_ms_percentiles": [pct(q) for q in range(101)],
        "latency_ms_max": round(float(lat.max()), 1) if lat.size else None,
    }


def main() -> int:
    """Start the job, stream events and requests, match answers, cancel, report; 1 if the run broke."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=8000, help="events/s offered")
    ap.add_argument("--duration-s", type=float, default=60,
                    help="how long requests are sent (events flow from the start until the requests are done)")
    ap.add_argument("--events", type=int, default=None, help="at most this many events (default rate × duration)")
    ap.add_argument("--request-rate", type=float, default=50)
    ap.add_argument("--requests", type=int, default=1_000, help="at most this many requests")
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--checkpoint-ms", type=int, default=None, help="default: the settings' value")
    ap.add_argument("--delivery", choices=("exactly_once", "at_least_once"), default=None,
                    help="recommendations sink; default: the settings' value")
    ap.add_argument("--warmup-s", type=float, default=90,
                    help="longest wait for the job to keep pace before requests start")
    ap.add_argument("--grace-s", type=float, default=60, help="wait this long after the last request for answers")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/latency.json"))
    args = ap.parse_args()

    run = f"lat{int(time.time())}-"
    overrides: dict[str, Any] = {"topic_prefix": run, "restart_attempts": 0}
    if args.checkpoint_ms is not None:
        overrides["checkpoint_interval_ms"] = args.checkpoint_ms
    if args.delivery is not None:
        overrides["recommendations_delivery"] = args.delivery
    base = load_settings(**overrides)
    # events flow through the warm-up and the whole request phase
    n_events = args.events if args.events is not None else int(args.rate * (args.warmup_s + args.duration_s))
    stream = make_stream(n_events, args.users, args.items, 0.0, 7, start_ms=int(time.time() * 1000),
                         user_prefix=f"{run}u")
    sent_users = [k.decode() for k, _ in stream if k]
    from pipeline.kafka_io import ensure_topics

    ensure_topics(base)
    sh = Shared()
    threads: list[threading.Thread] = []
    result: dict[str, Any] = {}
    from pipeline.flink_env import stream_env
    from pipeline.jobs import liverec_job

    with scratch_checkpoints(base) as s:
        env = stream_env(s)
        liverec_job.build(env, s)
        offsets = Offsets(s, f"{s.job_name}-{s.topic_prefix}job", s.topic("events"))
        t0 = time.monotonic()
        client = env.execute_async(f"{s.job_name}-latency")
        try:
            while job_status(client) in ("CREATED", "INITIALIZING") and time.monotonic() - t0 < 120:
                time.sleep(0.5)
            reader = threading.Thread(target=read_answers, args=(s, sh), name="answers", daemon=True)
            events = threading.Thread(target=send_events,
                                      args=(s, stream, args.rate, args.warmup_s + args.duration_s, sh),
                                      name="events", daemon=True)
            reader.start()
            events.start()
            threads += [reader, events]
            print(f"[latency] job {job_status(client)} after {time.monotonic() - t0:.1f}s; sending events at "
                  f"{args.rate:g}/s", flush=True)
            requests: threading.Thread | None = None
            last_print = 0.0
            requests_done_at: float | None = None
            while True:
                now = time.monotonic() - t0
                status = job_status(client)
                if status != "RUNNING":
                    sh.errors.append(f"job {status}: {failure_of(client)}")
                if sh.errors:
                    break
                committed = offsets()
                # Requests start once the job keeps pace: what it has checkpointed is within a checkpoint
                # interval (+2 s) of what was sent. Start-up leaves a backlog (JIT warm-up) that a request sent
                # then would wait behind; that is start-up, not the latency of a running job. A job that never
                # catches up gets its requests at --warmup-s anyway, and the figures show it.
                backlog = sh.events_sent - committed
                caught_up = committed > 0 and backlog <= args.rate * (s.checkpoint_interval_ms / 1000 + 2)
                if requests is None and (caught_up or now > args.warmup_s):
                    result["requests_started_s"] = round(now, 1)
                    result["backlog_at_requests_start"] = backlog
                    result["caught_up_before_requests"] = caught_up
                    requests = threading.Thread(
                        target=send_requests, name="requests", daemon=True,
                        args=(s, sent_users, args.requests, args.request_rate, args.duration_s, sh, run))
                    requests.start()
                    threads.append(requests)
                    print(f"[latency] {now:6.1f}s  job checkpointed {committed} events: sending requests at "
                          f"{args.request_rate:g}/s", flush=True)
                if requests is not None and not requests.is_alive() and requests_done_at is None:
                    requests_done_at = now
                if now - last_print >= 5:
                    last_print = now
                    print(f"[latency] {now:6.1f}s  events sent {sh.events_sent}/{len(stream)}  checkpointed "
                          f"{committed}  requests sent {len(sh.requests_sent)}  answered {len(sh.answers)}",
                          flush=True)
                all_in = requests_done_at is not None and len(sh.answers) >= len(sh.requests_sent)
                if all_in or (requests_done_at is not None and now - requests_done_at > args.grace_s):
                    break
                if now > args.warmup_s + 2 * args.duration_s + args.grace_s + 120:  # a hard stop, whatever happens
                    sh.errors.append("hard time limit reached")
                    break
                time.sleep(0.5)
            result["events_checkpointed"] = offsets()
        finally:
            sh.stop.set()
            cancel(client)
            offsets.close()
            for t in threads:
                t.join(timeout=30)
    summary = summarize(sh)
    achieved = round(sh.events_sent / sh.events_seconds, 1) if sh.events_seconds else None
    result = {
        **summary, **result, "events_sent": sh.events_sent, "events_per_s_offered": args.rate,
        "events_per_s_sent": achieved, "request_rate": args.request_rate, "users": args.users, "items": args.items,
        "recommendations_delivery": s.recommendations_delivery, "checkpoint_interval_ms": s.checkpoint_interval_ms,
        "errors": sh.errors or None, "topic_prefix": run,
        "settings": s.model_dump(mode="json", exclude={"cache_dir", "java_home", "checkpoint_dir"}), **stamp(),
    }
    print()
    print("| events/s offered / sent | checkpointed / sent | requests | answered | missing | twice "
          "| p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rate:,.0f} / {achieved or 0:,.0f} | {result.get('events_checkpointed', 0):,} / {sh.events_sent:,} "
          f"| {summary['requests_sent']} | {summary['answered']} | {summary['missing']} | {summary['answered_twice']} "
          f"| {summary['latency_ms_p50']} | {summary['latency_ms_p99']} | {summary['latency_ms_max']} |")
    print(f"requests started at {result.get('requests_started_s')} s, with {result.get('backlog_at_requests_start')} "
          f"events sent but not yet checkpointed (caught up: {result.get('caught_up_before_requests')})")
    if sh.errors:
        print("errors:", *sh.errors, sep="\n  ")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    from pipeline.plots import plot_result

    print(f"wrote {plot_result(args.out, 'latency')}")
    return 1 if sh.errors else 0


if __name__ == "__main__":
    sys.exit(main())

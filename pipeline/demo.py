"""`liverec run`: the job end to end on the local default stack, with a generator and a live view.

The full personalization job runs in a local MiniCluster; a generator sends events of users with
hidden favourite categories (1% malformed, some redelivered); the view shows events/s, sessions
closed and dead letters, then a few profiles read back from Cassandra. Last, a spotlight user browses
one category, asks for recommendations, moves to another category and asks again: the two answers
(read from the `recommendations` topic like any consumer would) show the shift and how long it took.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from pipeline import generator
from pipeline.errors import LiverecError
from pipeline.kafka_io import consumer, produce, read_committed, seek_from
from pipeline.settings import Settings


class CommittedCounter:
    """Counts committed records of a topic from a timestamp on, incrementally."""

    def __init__(self, settings: Settings, topic: str, from_ms: int) -> None:
        self.consumer = consumer(settings, isolation_level="read_committed", enable_auto_commit=False)
        seek_from(self.consumer, topic, from_ms)
        self.count = 0
        self.values: list[bytes] = []

    def poll(self, keep: bool = False) -> int:
        """Read what is committed so far; return the running count."""
        for records in self.consumer.poll(timeout_ms=200, max_records=10_000).values():
            self.count += len(records)
            if keep:
                self.values += [r.value for r in records]
        return self.count

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


def _profiles(settings: Settings, users: list[str]) -> dict[str, object]:
    from pipeline.cassandra_io import profile_rows

    return profile_rows(
        settings, users, "event_count, interests, recent_items, sessions_closed, vector, seq"
    )


def run_job_demo(
    settings: Settings, *, events: int, users: int, rate: float, timeout_s: float, console: Console
) -> None:
    """Stack up, job started, generator paced at `rate` events/s, live progress, profiles shown."""
    import numpy as np

    from pipeline.flink_env import stream_env
    from pipeline.infra import stack
    from pipeline.jobs import liverec_job

    console.rule("[bold]liverec demo: local stack")
    stack.up(settings, log=lambda m: console.print(f"  {m}"))
    start_ms = int(time.time() * 1000)
    run = f"r{start_ms // 1000 % 1_000_000}-"
    console.rule("[bold]starting the job (local MiniCluster, thread mode, exactly-once)")
    env = stream_env(settings)
    liverec_job.build(env, settings, start_from_ms=start_ms)
    client = env.execute_async(settings.job_name)
    console.print(f"  job id {client.get_job_id()}; Flink log in {settings.cache_dir / 'logs' / 'flink'}")

    batch = generator.events(
        events, users=users, malformed_every=100, duplicate_every=200, start_ms=start_ms, seed=start_ms % 10_000,
        user_prefix=f"{run}u",
    )
    sent = [0]

    def feed() -> None:
        chunk = max(1, int(rate))
        for i in range(0, len(batch.records), chunk):
            t = time.monotonic()
            sent[0] += produce(settings, settings.topic("events"), batch.records[i : i + chunk])
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

    threading.Thread(target=feed, daemon=True, name="generator").start()
    console.print(
        f"  generator: {len(batch.records)} records for {users} users of run {run!r} at ~{rate:.0f}/s "
        f"({batch.malformed} malformed, {batch.duplicates} redelivered); session gap {settings.session_gap_ms} ms"
    )
    sessions = CommittedCounter(settings, settings.topic("sessions"), start_ms)
    dead = CommittedCounter(settings, settings.topic("dead-letter"), start_ms)
    expected = dict(batch.per_user)
    user_ids = sorted(expected)
    t0 = time.monotonic()
    counted = 0
    last = [0.0, 0, 0]  # elapsed, sent, counted at the previous line
    try:
        while True:
            time.sleep(2)
            profiles = _profiles(settings, user_ids)
            counted = sum(getattr(r, "event_count", 0) or 0 for r in profiles.values())
            elapsed = time.monotonic() - t0
            # rates over the last interval: what the generator sent and what reached Cassandra (profiles
            # are written at most every profile_flush_ms, so the second one follows in steps)
            dt = max(elapsed - last[0], 1e-9)
            console.print(
                f"  {elapsed:5.0f}s  sent {sent[0]:>7} ({(sent[0] - last[1]) / dt:,.0f}/s)  in Cassandra "
                f"{counted:>7}/{sum(expected.values())} events ({(counted - last[2]) / dt:,.0f}/s)  "
                f"sessions closed {sessions.poll():>5}  dead letters {dead.poll():>4}", highlight=False,
            )
            last[:] = [elapsed, sent[0], counted]
            if counted >= sum(expected.values()) and sent[0] == len(batch.records):
                break
            status = str(client.get_job_status().result())
            if status in ("FAILED", "CANCELED", "FINISHED"):
                msg = f"the job is {status}; see the Flink log in {settings.cache_dir / 'logs/flink'}"
                raise LiverecError(msg)
            if elapsed > timeout_s:
                msg = f"demo timed out after {timeout_s:.0f}s; see the Flink log in {settings.cache_dir / 'logs/flink'}"
                raise LiverecError(msg)
        spotlight(settings, run, console, timeout_s=120)
    finally:
        client.cancel().result()
        sessions.close()
        dead.close()
    profiles = _profiles(settings, user_ids)
    table = Table(title="Profiles read back from Cassandra (busiest users)")
    for col in ("user", "events (job / generated)", "top interests", "recent items", "sessions", "|vector|", "seq"):
        table.add_column(col)
    for user, _n in Counter(expected).most_common(5):
        r = profiles[user]
        top = sorted((r.interests or {}).items(), key=lambda kv: -kv[1])[:3]
        norm = float(np.linalg.norm(np.frombuffer(r.vector, dtype="<f4"))) if r.vector else 0.0
        table.add_row(
            user, f"{r.event_count} / {expected[user]}", ", ".join(f"{c} {v:.1f}" for c, v in top),
            " ".join((r.recent_items or [])[-4:]), str(r.sessions_closed), f"{norm:.2f}", str(r.seq),
        )
    console.print(table)
    exact = all(getattr(profiles.get(u), "event_count", None) == n for u, n in expected.items())
    console.print(
        f"[bold]{'exact' if exact else 'MISMATCH'}:[/] per-user event counts in Cassandra vs generated "
        f"(duplicates dropped: {batch.duplicates}); dead letters {dead.count} of {batch.malformed} malformed"
    )
    if not exact or dead.count != batch.malformed:
        msg = "the job's output differs from what was generated (see above)"
        raise LiverecError(msg)


def run_count_demo(settings: Settings, *, events: int, users: int, timeout_s: float, console: Console) -> None:
    """The smallest job (count per user, exactly once): events in, committed counts out."""
    from pipeline.flink_env import stream_env
    from pipeline.infra import stack
    from pipeline.jobs import count_job

    stack.up(settings, log=lambda m: console.print(f"  {m}"))
    start_ms = int(time.time() * 1000)
    env = stream_env(settings)
    count_job.build(env, settings, start_from_ms=start_ms, group_id=f"liverec-demo-{start_ms}")
    client = env.execute_async(f"{settings.job_name}-count-demo")
    batch = generator.events(events, users=users, malformed_every=100, start_ms=start_ms, seed=start_ms % 10_000)
    threading.Thread(
        target=produce, args=(settings, settings.topic("events"), batch.records), daemon=True, name="generator"
    ).start()
    expected = dict(batch.per_user)
    expected[count_job.UNPARSABLE] = batch.malformed
    latest: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        while sum(latest.values()) < len(batch.records):
            if time.monotonic() - t0 > timeout_s:
                msg = f"count demo timed out after {timeout_s:.0f}s"
                raise LiverecError(msg)
            for value in read_committed(settings, settings.topic("user-counts"), from_ms=start_ms, idle_ms=1000):
                user, n = value.decode().rsplit(",", 1)
                latest[user] = max(latest.get(user, 0), int(n))
            console.print(f"  committed: {sum(latest.values())}/{len(batch.records)}")
    finally:
        client.cancel().result()
    exact = latest == expected
    console.print(f"[bold]{'exact' if exact else 'MISMATCH'}:[/] {sum(latest.values())} events counted")
    if not exact:
        msg = "committed counts differ from what was generated"
        raise LiverecError(msg)


def _category_of(item_id: str, items: int = 1000) -> str:
    """The generator's category of one of its item ids (``i<index>``)."""
    per = items // len(generator.CATEGORIES)
    return generator.CATEGORIES[min(int(item_id[1:]) // per, len(generator.CATEGORIES) - 1)]


def _ask(settings: Settings, answers: CommittedCounter, user: str, request_id: str, timeout_s: float) -> dict:
    """Send one request and wait (polling, with a deadline) for its committed answer."""
    import json

    doc = {"request_id": request_id, "user_id": user, "k": 10, "ts": int(time.time() * 1000)}
    produce(settings, settings.topic("rec-requests"), [(user.encode(), json.dumps(doc).encode())])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answers.poll(keep=True)
        for raw in answers.values:
            a = json.loads(raw)
            if a["request_id"] == request_id:
                return a
    msg = f"no answer to request {request_id} within {timeout_s:.0f}s; see the Flink log in {settings.cache_dir}/logs"
    raise LiverecError(msg)


def spotlight(settings: Settings, run: str, console: Console, *, timeout_s: float) -> None:
    """One user browses books, asks, moves to garden, asks again: recommendations follow within seconds."""
    import json

    user = f"{run}spotlight"
    answers = CommittedCounter(settings, settings.topic("recommendations"), int(time.time() * 1000) - 1000)
    console.rule(f"[bold]spotlight: {user} moves from books to garden")
    shown: list[tuple[str, dict, float]] = []
    try:
        for step, cat in enumerate(("books", "garden")):
            base = generator.CATEGORIES.index(cat) * 125
            now = int(time.time() * 1000)
            evs = [
                (user.encode(), json.dumps({"event_id": f"{user}-{cat}-{j}", "user_id": user,
                                            "item_id": f"i{base + 7 * j}", "type": "click", "ts": now + j,
                                            "category": cat}).encode())
                for j in range(6)
            ]
            t0 = time.monotonic()
            produce(settings, settings.topic("events"), evs)
            answer = _ask(settings, answers, user, f"{user}-{step}", timeout_s)
            shown.append((cat, answer, time.monotonic() - t0))
    finally:
        answers.close()
    table = Table(title=f"recommendations for {user} (k=10), as a consumer of the recommendations topic reads them")
    for col in ("after 6 clicks in", "source", "categories of the 10 items", "seconds from clicks to answer"):
        table.add_column(col)
    for cat, a, secs in shown:
        cats = Counter(_category_of(i["item_id"]) for i in a["items"])
        table.add_row(cat, a["source"], ", ".join(f"{c} {n}" for c, n in cats.most_common()), f"{secs:.1f}")
    console.print(table)
    share = [sum(_category_of(i["item_id"]) == "garden" for i in a["items"]) for _, a, _ in shown]
    console.print(f"garden items in the answer: {share[0]} before, {share[1]} after the move "
                  f"({'followed the session' if share[1] > share[0] else 'DID NOT MOVE'})")
    if share[1] <= share[0]:
        msg = "the spotlight user's recommendations did not follow the session into the new category"
        raise LiverecError(msg)

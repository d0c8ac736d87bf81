"""`liverec run`: the job end to end on the local default stack, with a generator and a live view.

Until the full personalization job lands, this runs the smallest real job (count per user,
exactly once): events in through Kafka, keyed state in Flink, committed results out.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from pipeline import generator
from pipeline.errors import LiverecError
from pipeline.kafka_io import produce, read_committed
from pipeline.settings import Settings


def run_count_demo(settings: Settings, *, events: int, users: int, timeout_s: float, console: Console) -> None:
    """Bring the stack up, start the job, feed it, watch committed output until every event is counted."""
    from pipeline.flink_env import stream_env
    from pipeline.infra import stack
    from pipeline.jobs import count_job

    console.rule("[bold]liverec demo: local stack")
    stack.up(settings, log=lambda m: console.print(f"  {m}"))
    start_ms = int(time.time() * 1000)
    console.rule("[bold]starting the Flink job (local MiniCluster, thread mode, exactly-once)")
    env = stream_env(settings)
    count_job.build(env, settings, start_from_ms=start_ms, group_id=f"liverec-demo-{start_ms}")
    client = env.execute_async(f"{settings.job_name}-count-demo")
    console.print(f"  job id {client.get_job_id()}; Flink logs in {settings.cache_dir / 'logs' / 'flink'}")

    batch = generator.events(events, users=users, malformed_every=100, start_ms=start_ms, seed=start_ms % 10_000)
    feeder = threading.Thread(
        target=produce, args=(settings, settings.topic("events"), batch.records), daemon=True, name="generator"
    )
    feeder.start()
    console.print(f"  generator: {len(batch.records)} events for {users} users ({batch.malformed} malformed)")

    expected = dict(batch.per_user)
    expected[count_job.UNPARSABLE] = batch.malformed
    latest: dict[str, int] = {}
    outputs = 0
    t0 = time.monotonic()
    last_print = 0.0
    try:
        while sum(latest.values()) < len(batch.records):
            if time.monotonic() - t0 > timeout_s:
                msg = (
                    f"demo timed out after {timeout_s:.0f}s with {sum(latest.values())} of "
                    f"{len(batch.records)} events counted; see the Flink log in {settings.cache_dir / 'logs/flink'}"
                )
                raise LiverecError(msg)
            for value in read_committed(settings, settings.topic("user-counts"), from_ms=start_ms, idle_ms=1000):
                user, n = value.decode().rsplit(",", 1)
                latest[user] = max(latest.get(user, 0), int(n))
            outputs = sum(latest.values())
            now = time.monotonic()
            if now - last_print > 2:
                rate = outputs / max(now - t0, 1e-9)
                console.print(f"  committed: {outputs}/{len(batch.records)} events counted ({rate:,.0f}/s overall)")
                last_print = now
    finally:
        client.cancel().result()
    table = Table(title="Committed per-user counts (read_committed consumer)")
    for col in ("user", "counted by the job", "generated"):
        table.add_column(col)
    for user, n in Counter(latest).most_common(8):
        table.add_row(user, str(n), str(expected.get(user, 0)))
    console.print(table)
    exact = latest == expected
    console.print(
        f"[bold]{'exact' if exact else 'MISMATCH'}:[/] {outputs} events counted, "
        f"{len(batch.records)} generated, {len(latest)} keys, {time.monotonic() - t0:.1f}s"
    )
    if not exact:
        msg = "committed counts differ from what was generated (see table above)"
        raise LiverecError(msg)

"""`liverec status`: how a running job is doing, from Flink's REST API, the Kafka admin API and `alerts`.

Read in one go: the job's own metrics (group ``liverec``, summed over subtasks: events/s, dead letters by
reason, index size, online hit-rate beside most-popular, freshness), the last completed checkpoint (age,
size, duration), the consumer lag of every input partition (committed offsets of the job's group against
the partitions' ends) and the drift alerts of the last hour (the `alerts` topic, read_committed).

Works the same for a MiniCluster (`liverec job` serves REST on ``LIVEREC_REST_PORT``) and for the standalone
cluster (``--rest http://127.0.0.1:8081``). Metrics count from each subtask's last start (Flink does not
checkpoint them); the topics are the complete record.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import InfraError
from pipeline.recovery import group
from pipeline.settings import Settings

ALERT_WINDOW_MS = 3_600_000
INPUT_TOPICS = ("events", "rec-requests")


@dataclass
class PartitionLag:
    """One input partition: the job group's committed offset, the partition's end and the difference."""

    topic: str
    partition: int
    committed: int | None  # None: the job has not committed an offset there yet (it commits on checkpoints)
    end: int
    lag: int  # records not yet committed by the job (from the partition's start when nothing is committed)


@dataclass
class Checkpoint:
    """The last completed checkpoint."""

    id: int
    age_s: float
    state_bytes: int  # full size of the checkpointed state
    checkpointed_bytes: int  # written by this checkpoint (smaller than the state with incremental checkpoints)
    duration_ms: int
    completed: int  # checkpoints completed since the job started
    failed: int


@dataclass
class JobStatus:
    """What `liverec status` reports (also its `--json` document)."""

    rest: str
    job_id: str
    job_name: str
    state: str
    uptime_s: float
    events_per_s: float | None = None  # valid events, mean over the last minute (the router's meter)
    events_total: int | None = None  # valid events since the router subtasks started
    consumer_group: str = ""
    consumer_lag: list[PartitionLag] = field(default_factory=list)
    consumer_lag_total: int | None = None
    checkpoint: Checkpoint | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)  # by reason, since the router started
    drift_alerts_last_hour: dict[str, int] = field(default_factory=dict)  # by feature
    index_items: int | None = None
    evaluated: int | None = None
    hit_rate: float | None = None  # online hit-rate@k of the served answers (hits / evaluated events)
    baseline_hit_rate: float | None = None  # most-popular on the same events
    profile_freshness_ms: int | None = None
    answer_lag_ms: int | None = None
    problems: list[str] = field(default_factory=list)  # parts that could not be read, and why

    def to_json(self) -> str:
        """The status as one JSON document."""
        return json.dumps(asdict(self), indent=1)


def rest_url(settings: Settings) -> str:
    """Where `liverec job` serves the REST API (`pipeline.flink_env.rest_configuration`)."""
    return f"http://127.0.0.1:{settings.rest_port}"


class Rest:
    """A small client of Flink's REST API."""

    def __init__(self, base: str, timeout_s: float = 5.0) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str) -> Any:
        """GET ``path`` as JSON."""
        with urllib.request.urlopen(self.base + path, timeout=self.timeout_s) as r:  # noqa: S310 - operator's URL
            return json.load(r)


def find_job(rest: Rest, settings: Settings, job_id: str | None) -> dict[str, Any]:
    """The job to report on: ``job_id``; else the only running job; else the running one named like the settings."""
    try:
        jobs = rest.get("/jobs/overview")["jobs"]
    except (OSError, urllib.error.URLError) as exc:
        msg = (f"no Flink REST API answers at {rest.base} ({exc}): is a job running? `liverec job` serves it on "
               f"LIVEREC_REST_PORT ({settings.rest_port}); for the standalone cluster pass --rest http://127.0.0.1:8081")
        raise InfraError(msg) from exc
    if job_id:
        found = [j for j in jobs if j["jid"] == job_id]
        if not found:
            msg = f"no job {job_id} at {rest.base}; its jobs: {_names(jobs) or 'none'}"
            raise InfraError(msg)
        return dict(found[0])
    running = [j for j in jobs if j["state"] in ("RUNNING", "RESTARTING", "CREATED", "INITIALIZING")]
    if len(running) == 1:
        return dict(running[0])
    named = [j for j in running if j["name"] == settings.job_name]
    if len(named) == 1:
        return dict(named[0])
    msg = (f"{'no running job' if not running else 'several running jobs'} at {rest.base} "
           f"({_names(jobs) or 'no jobs'}); pick one with --job ID")
    raise InfraError(msg)


def _names(jobs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{j['jid']} {j['name']!r} {j['state']}" for j in jobs)


def job_metrics(rest: Rest, job_id: str, *, wait_s: float = 5.0) -> dict[str, float]:
    """The job's ``liverec`` metrics summed over subtasks, by name below the group (e.g. ``reason.empty.dead_letters``).

    The REST API serves metrics from a cache it refreshes on demand: right after a job starts the first
    answer can be empty, so this asks again for up to ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        out: dict[str, float] = {}
        for vertex in rest.get(f"/jobs/{job_id}")["vertices"]:
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
            ids = [m["id"] for m in rest.get(base) if ".liverec." in m["id"]]
            if not ids:
                continue
            query = urllib.parse.urlencode({"get": ",".join(ids), "agg": "sum"})
            for m in rest.get(f"{base}?{query}"):
                name = m["id"].split(".liverec.", 1)[1]
                out[name] = out.get(name, 0.0) + float(m.get("sum", 0.0))
        if "events_valid" in out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def checkpoint_of(rest: Rest, job_id: str, now_ms: int) -> Checkpoint | None:
    """The last completed checkpoint (None before the first)."""
    doc = rest.get(f"/jobs/{job_id}/checkpoints")
    last = (doc.get("latest") or {}).get("completed")
    if not last:
        return None
    return Checkpoint(
        id=int(last["id"]), age_s=round((now_ms - int(last["latest_ack_timestamp"])) / 1000, 1),
        state_bytes=int(last["state_size"]), checkpointed_bytes=int(last.get("checkpointed_size", last["state_size"])),
        duration_ms=int(last["end_to_end_duration"]), completed=int(doc["counts"]["completed"]),
        failed=int(doc["counts"]["failed"]),
    )


def consumer_lag(settings: Settings) -> list[PartitionLag]:
    """Committed offsets of the job's consumer group on every input partition, against each partition's end."""
    from kafka import TopicPartition

    from pipeline.kafka_io import admin, consumer

    client = admin(settings, request_timeout_ms=15_000)
    try:
        committed = client.list_group_offsets(group(settings)).get(group(settings), {})
    finally:
        client.close()
    reader = consumer(settings, request_timeout_ms=15_000, isolation_level="read_committed")
    try:
        parts = [TopicPartition(settings.topic(t), p) for t in INPUT_TOPICS
                 for p in sorted(reader.partitions_for_topic(settings.topic(t)) or ())]
        ends = reader.end_offsets(parts)
        starts = reader.beginning_offsets(parts)
    finally:
        reader.close()
    out = []
    for tp in parts:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else None
        end = int(ends[tp])
        lag = max(0, end - (starts[tp] if done is None else done))
        out.append(PartitionLag(tp.topic, tp.partition, done, end, lag))
    return out


def drift_alerts(settings: Settings, now_ms: int, *, timeout_s: float = 10.0) -> Counter[str]:
    """Alerts written to `alerts` in the last hour (by record time), counted by feature."""
    from kafka import TopicPartition

    from pipeline.kafka_io import consumer

    topic = settings.topic("alerts")
    reader = consumer(settings, isolation_level="read_committed", enable_auto_commit=False,
                      request_timeout_ms=15_000)
    found: Counter[str] = Counter()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not parts:
            return found
        reader.assign(parts)
        ends = reader.end_offsets(parts)
        starts = reader.offsets_for_times({tp: now_ms - ALERT_WINDOW_MS for tp in parts})
        for tp in parts:
            reader.seek(tp, starts[tp].offset if starts.get(tp) else ends[tp])
        deadline = time.monotonic() + timeout_s
        while any(reader.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                msg = f"reading {topic} took longer than {timeout_s:.0f}s"
                raise InfraError(msg)
            for batch in reader.poll(timeout_ms=500).values():
                for record in batch:
                    try:
                        found[str(json.loads(record.value)["feature"])] += 1
                    except (ValueError, KeyError, TypeError):
                        found["(unreadable record)"] += 1
    finally:
        reader.close()
    return found


def collect(settings: Settings, *, rest: str | None = None, job_id: str | None = None) -> JobStatus:
    """Everything `liverec status` shows; a part that cannot be read is left empty and named in ``problems``."""
    client = Rest(rest or rest_url(settings))
    job = find_job(client, settings, job_id)
    now_ms = int(time.time() * 1000)
    status = JobStatus(rest=client.base, job_id=job["jid"], job_name=job["name"], state=job["state"],
                       uptime_s=round(int(job.get("duration", 0)) / 1000, 1), consumer_group=group(settings))
    try:
        _fill_metrics(status, job_metrics(client, status.job_id))
        status.checkpoint = checkpoint_of(client, status.job_id, now_ms)
    except (OSError, urllib.error.URLError, KeyError, ValueError) as exc:
        status.problems.append(f"Flink REST API at {client.base}: {exc}")
    try:
        status.consumer_lag = consumer_lag(settings)
        status.consumer_lag_total = sum(p.lag for p in status.consumer_lag)
    except Exception as exc:  # noqa: BLE001 - reported, the other parts still show
        status.problems.append(f"consumer lag of group {status.consumer_group} (Kafka {settings.kafka_bootstrap}): "
                               f"{exc}")
    try:
        status.drift_alerts_last_hour = dict(sorted(drift_alerts(settings, now_ms).items()))
    except Exception as exc:  # noqa: BLE001 - reported, the other parts still show
        status.problems.append(f"drift alerts ({settings.topic('alerts')}): {exc}")
    return status


def _fill_metrics(status: JobStatus, m: dict[str, float]) -> None:
    def whole(name: str) -> int | None:
        return int(m[name]) if name in m else None

    status.events_per_s = round(m["events_per_second"], 1) if "events_per_second" in m else None
    status.events_total = whole("events_valid")
    status.dead_letters = {name.split(".")[1]: int(v) for name, v in sorted(m.items())
                           if name.startswith("reason.") and name.endswith(".dead_letters") and v}
    status.index_items = whole("index_items")
    status.evaluated = whole("eval_evaluated")
    if status.evaluated:
        status.hit_rate = round(m.get("eval_hits", 0.0) / status.evaluated, 4)
        status.baseline_hit_rate = round(m.get("eval_baseline_hits", 0.0) / status.evaluated, 4)
    status.profile_freshness_ms = whole("profile_freshness_ms")
    status.answer_lag_ms = whole("answer_lag_ms")


def render(status: JobStatus, console: Any) -> None:
    """The human view: one table of figures, then the consumer lag per partition."""
    from rich.table import Table

    def num(x: float | None, unit: str = "") -> str:
        return "-" if x is None else f"{x:,}{unit}"

    table = Table(title=f"liverec job {status.job_name} ({status.job_id})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state", f"{status.state}, up {status.uptime_s:,.0f} s  [dim]({status.rest})[/]")
    table.add_row("events/s", f"{num(status.events_per_s)}  [dim](last minute; {num(status.events_total)} "
                  "since start)[/]")
    table.add_row("consumer lag", f"{num(status.consumer_lag_total)} records  [dim](group {status.consumer_group}; "
                  "offsets commit on checkpoints)[/]")
    cp = status.checkpoint
    table.add_row("last checkpoint", "none yet" if cp is None else
                  f"#{cp.id}, {cp.age_s:,.1f} s ago, {cp.state_bytes / 1e6:,.1f} MB "
                  f"({cp.checkpointed_bytes / 1e6:,.1f} MB written), {cp.duration_ms:,} ms  "
                  f"[dim]({cp.completed:,} completed, {cp.failed:,} failed)[/]")
    dead = sum(status.dead_letters.values())
    table.add_row("dead letters", f"{dead:,}" + (": " + ", ".join(f"{r} {n:,}" for r, n in status.dead_letters.items())
                                                 if dead else ""))
    alerts = sum(status.drift_alerts_last_hour.values())
    table.add_row("drift alerts, last hour", f"{alerts:,}" + (
        ": " + ", ".join(f"{f} {n:,}" for f, n in status.drift_alerts_last_hour.items()) if alerts else ""))
    table.add_row("index size", f"{num(status.index_items)} items")
    if status.hit_rate is None:
        table.add_row("online hit-rate", "no evaluated events yet")
    else:
        table.add_row("online hit-rate", f"{status.hit_rate:.4f}  [dim]most-popular {status.baseline_hit_rate:.4f}, "
                      f"{status.evaluated:,} evaluated events[/]")
    table.add_row("freshness", f"profile written {_duration(status.profile_freshness_ms)} after its newest event; "
                  f"answer {_duration(status.answer_lag_ms)} after its request  [dim](latest of each)[/]")
    console.print(table)
    if status.consumer_lag:
        lag = Table(title="consumer lag per partition", title_justify="left")
        for col in ("topic", "partition", "committed", "end", "lag"):
            lag.add_column(col, justify="left" if col == "topic" else "right")
        for p in status.consumer_lag:
            lag.add_row(p.topic, str(p.partition), num(p.committed), f"{p.end:,}", f"{p.lag:,}")
        console.print(lag)
    for problem in status.problems:
        console.print(f"[bold yellow]could not read[/] {problem}")


def _duration(ms: int | None) -> str:
    """Milliseconds as a person reads them: 840 ms, 18.7 s, 12.5 min, 5.7 h."""
    if ms is None:
        return "-"
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if abs(ms) >= size:
            return f"{ms / size:,.1f} {unit}"
    return f"{ms:,} ms"

"""Metrics and `liverec status` of the real job: one job run on the real stack, read the ways an operator would.

The job gets 15,000 events with dead letters, duplicates, requests, a shift of the type mix and categories
at a known event time (so the drift monitor alerts), and a sweep of 10,050 distinct items (so an index shard
holds more than `ShardParams.scan_below` items and builds its HNSW graph). Then:

- the Prometheus endpoint (`/metrics` of the reporter the job's JVM starts) is scraped: every metric the
  Grafana dashboard (docker/grafana/dashboards/liverec.json) names must be exported, and must show a
  non-zero value in some scrape while the events flow, except the few listed in ``MAY_STAY_ZERO`` with
  the reason; the counters must equal what was sent;
- `liverec status` (a subprocess, as a user runs it) must report this job, exactly: its events, consumer
  lag per partition against the produced offsets, a recent checkpoint, dead letters by reason, the drift
  alerts found on the `alerts` topic, the index size, the hit-rates the `evaluations` topic gives.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline import generator
from pipeline.settings import REPO_ROOT, Settings, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.flink]

DASHBOARD = REPO_ROOT / "docker" / "grafana" / "dashboards" / "liverec.json"
PREFIX = "flink_taskmanager_job_task_operator_liverec_"
SWEEP_ITEMS = 10_050  # > ShardParams.scan_below (10,000): the index shard builds its HNSW graph
REQUESTS = 50

# Named by the dashboard, exported by the job, and legitimately 0 in this run; each with the reason.
MAY_STAY_ZERO = {
    PREFIX + "cassandra_write_errors": "Cassandra is healthy here (test_cassandra_rows_sink.py cuts it and sees them)",
    PREFIX + "cassandra_write_retries": "likewise: nothing to retry while Cassandra answers",
    PREFIX + "cassandra_in_flight": "requests in flight at the instant of a scrape: usually none between flushes",
    PREFIX + "index_tombstones": "the job never removes an item from the index (AnnIndex unit tests count them)",
    PREFIX + "late_events": "events behind a closed session: none are sent on purpose (may be a few)",
    "flink_jobmanager_job_numberOfFailedCheckpoints": "no checkpoint needs to fail",
    "flink_taskmanager_job_task_operator_pendingRecords": "the sources read the test's backlog within seconds",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dashboard_metrics() -> set[str]:
    """Every Prometheus metric name in the dashboard's queries (targets and template variables)."""
    return set(re.findall(r"\b(flink_[A-Za-z0-9_]+)", DASHBOARD.read_text()))


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format → name → [(labels, value)] (the reporter writes no timestamps)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        out.setdefault(name, []).append((dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)), float(value)))
    return out


@dataclass
class Run:
    """The running job and what was sent to it."""

    settings: Settings
    client: Any
    job_id: str
    valid_events: int
    malformed: int
    duplicates: int
    events_records: int

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.settings.prometheus_port}/metrics"

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        with urllib.request.urlopen(self.prometheus, timeout=5) as r:  # noqa: S310 - loopback
            return parse_metrics(r.read().decode())

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`liverec status` in a process of its own, with this job's settings as LIVEREC_* variables."""
        return subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pipeline.cli", "status", *args], env={**_base_env(), **settings_env(self.settings)},
            capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("LIVEREC_")} | {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def run(stack: Settings) -> Iterator[Run]:
    from pipeline.flink_env import rest_configuration, stream_env
    from pipeline.jobs import liverec_job
    from pipeline.kafka_io import ensure_topics, produce

    s = stack.model_copy(update={
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}-", "prometheus_port": str(_free_port()), "rest_port": _free_port(),
        "session_gap_ms": 5_000, "checkpoint_interval_ms": 1_000, "profile_flush_ms": 1_000,
        "online_eval_percent": 20, "rehydrate": False,
        # as tests/flink/test_drift_job.py: small windows, so the shift below alerts within the run
        "drift_reference_samples": 1_000, "drift_reference_ms": 120_000, "drift_window_samples": 500,
        "drift_window_ms": 60_000, "drift_min_samples": 200, "drift_warmup_ms": 30_000,
    })
    ensure_topics(s)
    start = int(time.time() * 1000) - 6 * 3600 * 1000  # event time in the past, as in a replay
    users = f"{s.topic_prefix}u"
    sweep = []
    for i in range(SWEEP_ITEMS):
        user = f"{s.topic_prefix}sweep{i % 40}"
        event = {"event_id": f"sw-{i}", "user_id": user, "item_id": f"sw{i}", "type": "view", "ts": start + 100 * i,
                 "category": "books"}
        sweep.append((user.encode(), json.dumps(event).encode()))
    before = generator.events(3000, users=200, seed=21, start_ms=start, max_step_ms=400, user_prefix=users,
                              malformed_every=100, duplicate_every=150)
    after = generator.events(2000, users=200, seed=22, start_ms=before.max_ts + 1, max_step_ms=400, user_prefix=users,
                             types=("purchase", "add_to_cart", "add_to_cart", "click"), categories=("garden", "toys"))
    records = sweep + before.records + after.records
    produce(s, s.topic("events"), records)
    now = int(time.time() * 1000)
    produce(s, s.topic("rec-requests"), [
        (f"{users}{u}".encode(), json.dumps({"request_id": f"r{u}", "user_id": f"{users}{u}", "ts": now}).encode())
        for u in range(REQUESTS)])

    env = stream_env(s, extra=rest_configuration(s))
    liverec_job.build(env, s)
    client = env.execute_async(s.job_name)
    try:
        yield Run(settings=s, client=client, job_id=str(client.get_job_id()),
                  valid_events=len(records) - before.malformed - after.malformed,
                  malformed=before.malformed + after.malformed, duplicates=before.duplicates + after.duplicates,
                  events_records=len(records))
    finally:
        client.cancel().result()


def _total(scrape: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in scrape.get(PREFIX + name, []))


def test_every_metric_the_dashboard_names_is_exported_and_moves(run: Run) -> None:
    names = dashboard_metrics()
    assert len(names) >= 30, f"the dashboard names only {sorted(names)}"
    stale = set(MAY_STAY_ZERO) - names
    assert not stale, f"exemptions for metrics the dashboard no longer names: {stale}"
    peak: dict[str, float] = {}  # largest value of any series of each metric, over every scrape
    last: dict[str, list[tuple[dict[str, str], float]]] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            last = run.scrape()
        except OSError:
            last = {}
        for name in names & set(last):
            peak[name] = max(peak.get(name, 0.0), *(v for _, v in last[name]))
        moved = {n for n in names if peak.get(n, 0.0) > 0}
        # every stage's counters, not just the router's: the user shards count duplicates a batch later
        counted = (_total(last, "events_valid") == run.valid_events and _total(last, "source_answers") == REQUESTS
                   and _total(last, "user_events") + _total(last, "duplicates") == run.valid_events)
        if counted and moved | set(MAY_STAY_ZERO) >= names:
            break
        time.sleep(2)
    missing = sorted(names - set(peak))
    assert not missing, f"named by the dashboard but not exported by the job: {missing}"
    still = sorted(n for n in names - set(MAY_STAY_ZERO) if peak[n] <= 0)
    assert not still, f"never above zero while events flowed: {still}"
    # the counters mean what they say
    assert _total(last, "events_valid") == run.valid_events
    assert _total(last, "dead_letters") == run.malformed
    assert _total(last, "reason_dead_letters") == run.malformed
    assert _total(last, "duplicates") == run.duplicates
    assert _total(last, "user_events") == run.valid_events - run.duplicates
    assert _total(last, "requests_valid") == REQUESTS
    assert _total(last, "source_answers") == REQUESTS
    assert {labels["reason"] for labels, v in last[PREFIX + "reason_dead_letters"] if v} <= {
        "bad_json", "not_utf8", "not_object", "missing_field"}
    assert peak[PREFIX + "index_items"] > SWEEP_ITEMS and peak[PREFIX + "index_graph_rebuilds"] >= 1
    features = {labels["feature"] for labels, _ in last[PREFIX + "feature_drift_statistic_permille"]}
    assert features == set(run.settings.drift_features.split(","))


def _evaluations(s: Settings) -> tuple[int, int, int]:
    from pipeline.kafka_io import read_committed

    recs = [json.loads(v) for v in read_committed(s, s.topic("evaluations"), idle_ms=1000)]
    done = [r for r in recs if r["evaluated"]]
    return len(done), sum(r["hit"] for r in done), sum(r["baseline_hit"] for r in done)


def test_status_reports_the_running_job(run: Run) -> None:
    from pipeline.kafka_io import read_committed

    s = run.settings
    doc: dict[str, Any] = {}
    truth: tuple[int, int, int] = (0, 0, 0)

    def settled() -> bool:
        nonlocal doc, truth
        proc = run.status("--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc = json.loads(proc.stdout)
        truth = _evaluations(s)
        return (doc["events_total"] == run.valid_events and doc["consumer_lag_total"] == 0
                and doc["evaluated"] == truth[0] > 0 and bool(doc["drift_alerts_last_hour"]))

    deadline = time.monotonic() + 240
    while not settled() and time.monotonic() < deadline:
        time.sleep(2)
    assert doc["job_id"] == run.job_id and doc["job_name"] == s.job_name and doc["state"] == "RUNNING"
    assert doc["events_total"] == run.valid_events
    lag = {(p["topic"], p["partition"]): p for p in doc["consumer_lag"]}
    assert {t for t, _ in lag} == {s.topic("events"), s.topic("rec-requests")}
    assert sum(p["end"] for (t, _), p in lag.items() if t == s.topic("events")) == run.events_records
    assert sum(p["end"] for (t, _), p in lag.items() if t == s.topic("rec-requests")) == REQUESTS
    assert doc["consumer_lag_total"] == 0 and all(p["committed"] == p["end"] for p in lag.values())
    cp = doc["checkpoint"]
    assert cp["completed"] >= 1 and cp["state_bytes"] > 0 and cp["duration_ms"] >= 0
    assert 0 <= cp["age_s"] < 30, f"checkpoints every {s.checkpoint_interval_ms} ms; the last is {cp['age_s']} s old"
    assert sum(doc["dead_letters"].values()) == run.malformed
    alerts = Counter(json.loads(v)["feature"] for v in read_committed(s, s.topic("alerts"), idle_ms=1000))
    assert doc["drift_alerts_last_hour"] == dict(alerts) and alerts
    assert doc["index_items"] > SWEEP_ITEMS
    evaluated, hits, base = truth
    assert doc["evaluated"] == evaluated
    assert doc["hit_rate"] == round(hits / evaluated, 4) and doc["baseline_hit_rate"] == round(base / evaluated, 4)
    assert doc["problems"] == []

    human = run.status()
    assert human.returncode == 0, human.stdout + human.stderr
    text = human.stdout
    for needle in (run.job_id, "events/s", "last checkpoint", "dead letters", "drift alerts, last hour",
                   "index size", f"{doc['hit_rate']:.4f}", f"most-popular {doc['baseline_hit_rate']:.4f}",
                   "consumer lag per partition", s.topic("rec-requests")):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    print(text)  # `pytest -s` shows what a user sees


def test_status_without_a_job_says_where_it_looked(stack: Settings) -> None:
    port = _free_port()  # nothing listens there
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pipeline.cli", "status", "--rest", f"http://127.0.0.1:{port}"],
        env=_base_env(), capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT)
    assert proc.returncode == 2
    assert f"http://127.0.0.1:{port}" in proc.stderr and "--rest" in proc.stderr

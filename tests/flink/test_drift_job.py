"""Drift through the real job: events whose type mix and categories change at a known event time.

Kafka → router → user shards (drift features) → drift monitor → `alerts` (exactly-once, read_committed).
Asserted: the two shifted features each alert exactly once, with a current window that reaches past
the shift and a reference that ends before it; no input feature alerts before the shift; dwell, whose
distribution does not change, never alerts. ``user_norm`` is left out of the "before" check: the
learner's vectors grow from their small initial values while a fresh job warms up, which is drift of
the model, and the monitor reports it (operators/drift/features.py).
"""

from __future__ import annotations

import json
import time

import pytest

from pipeline import generator
from pipeline.flink_env import stream_env
from pipeline.infra.procs import wait_until
from pipeline.jobs import liverec_job
from pipeline.kafka_io import produce, read_committed

pytestmark = [pytest.mark.integration, pytest.mark.flink]

SHIFTED = ("event_type", "category")
AFTER_TYPES = ("purchase", "add_to_cart", "add_to_cart", "click")
AFTER_CATEGORIES = ("garden", "toys")


def test_a_shift_at_a_known_event_time_alerts_after_it_and_not_before(isolated) -> None:
    s = isolated.model_copy(update={
        "session_gap_ms": 5_000, "checkpoint_interval_ms": 1_000, "profile_flush_ms": 2_000,
        "drift_reference_samples": 1_000, "drift_reference_ms": 120_000,
        "drift_window_samples": 500, "drift_window_ms": 60_000, "drift_min_samples": 200,
        "drift_warmup_ms": 30_000,
    })
    start = int(time.time() * 1000) - 6 * 3600 * 1000  # event time in the past, as in a replay
    prefix = f"{s.topic_prefix}u"
    before = generator.events(3000, users=200, seed=21, start_ms=start, max_step_ms=400, user_prefix=prefix)
    shift_ts = before.max_ts + 1
    after = generator.events(2000, users=200, seed=22, start_ms=shift_ts, max_step_ms=400, user_prefix=prefix,
                             types=AFTER_TYPES, categories=AFTER_CATEGORIES)
    produce(s, s.topic("events"), before.records + after.records)

    env = stream_env(s)
    liverec_job.build(env, s)
    started = int(time.time() * 1000)
    client = env.execute_async(f"{s.topic_prefix}drift")
    alerts: list[dict] = []

    def shifted_alerts_seen() -> bool:
        alerts[:] = [json.loads(v) for v in read_committed(s, s.topic("alerts"), idle_ms=1000)]
        return all(any(a["feature"] == f for a in alerts) for f in SHIFTED)

    try:
        ok = wait_until(shifted_alerts_seen, 150, interval_s=2)
    finally:
        client.cancel().result()

    summary = [(a["feature"], a["current"]["start_ts"] - shift_ts, a["current"]["end_ts"] - shift_ts) for a in alerts]
    assert ok, f"no alert for both of {SHIFTED}; alerts (feature, current window relative to the shift): {summary}"
    for f in SHIFTED:
        mine = [a for a in alerts if a["feature"] == f]
        assert len(mine) == 1, f"{f}: one alert per episode, got {len(mine)}: {summary}"
        (a,) = mine
        assert a["current"]["end_ts"] >= shift_ts, f"{f} alerted on a window before the shift: {a}"
        assert a["reference"]["end_ts"] < shift_ts, f"{f}: the reference should be the old normal: {a}"
        assert a["statistic"] >= 0.1 and a["p_value"] < 0.001 / 7
        assert a["current"]["size"] >= 200 and a["reference"]["size"] >= 200
        assert a["job_name"] == s.job_name and a["model_version"] == "bpr-d64-n8-s7"
        assert started <= a["detected_at"] <= int(time.time() * 1000)
    early = [a for a in alerts if a["current"]["end_ts"] < shift_ts and a["feature"] != "user_norm"]
    assert not early, f"input features alerted before the shift: {early}"
    assert not [a for a in alerts if a["feature"] == "dwell_ms"], "dwell did not change"

"""Each Flink adapter on its own in a MiniCluster (thread mode), fed from a collection."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.flink_env import stream_env
from pipeline.settings import load_settings
from state_schemas.events import decode_event

pytestmark = pytest.mark.flink


def _b(value) -> bytes:
    """Bytes of a collected BYTES field (execute_and_collect hands Java's signed bytes back as ints)."""
    return value if isinstance(value, bytes) else bytes(b & 0xFF for b in value)


def _env(settings):
    env = stream_env(settings)
    env.set_parallelism(1)
    return env


def test_router_adapter_splits_a_window_into_shard_batches_and_dead_letters() -> None:
    from pyflink.common import Row, Types

    from operators.events.flink import DEAD_LETTERS, ROUTER_KEY, SHARD_BATCH_TYPE, EventsRouter, shard_key
    from operators.events.router import RouterParams, user_shard
    from state_schemas.batches import decode_records

    s = load_settings()
    now = int(time.time() * 1000)
    good = [
        json.dumps({"event_id": f"e{i}", "user_id": f"u{i % 3}", "item_id": "i1", "type": "click", "ts": now})
        .encode()
        for i in range(6)
    ]
    bad = [b"{oops", b"\xff\xfe", json.dumps({"event_id": "x", "user_id": "u", "item_id": "i", "type": "teleport",
                                               "ts": now}).encode()]
    values = good + bad
    # Two windows, as the SQL batch query delivers them: arrays of values, topics, partitions, offsets.
    rows = [Row(values[:4], ["events"] * 4, [1] * 4, list(range(4))),
            Row(values[4:], ["events"] * 5, [1] * 5, list(range(4, 9)))]
    row_type = Types.ROW([Types.OBJECT_ARRAY(Types.PRIMITIVE_ARRAY(Types.BYTE())), Types.OBJECT_ARRAY(Types.STRING()),
                          Types.OBJECT_ARRAY(Types.INT()), Types.OBJECT_ARRAY(Types.LONG())])
    params = RouterParams(user_shards=4, events_topic="events", requests_topic="rec-requests")

    def run(collect_dead: bool) -> list:
        # Both outputs are always consumed, as in the job (an unconsumed side output's records would
        # fall through to the main output in PyFlink's embedded operators).
        env = _env(s)
        out = env.from_collection(rows, type_info=row_type).key_by(
            lambda _r: ROUTER_KEY, key_type=Types.STRING()).process(EventsRouter(params), output_type=SHARD_BATCH_TYPE)
        dead = out.get_side_output(DEAD_LETTERS)
        (out if collect_dead else dead).filter(lambda _: False).print()
        return list((dead if collect_dead else out).execute_and_collect())

    routed = run(collect_dead=False)
    dead = [json.loads(_b(d)) for d in run(collect_dead=True)]

    got = {}
    for key, blob in routed:
        for rec in decode_records(_b(blob))[1]:
            e = decode_event(rec)
            assert key == shard_key(user_shard(e.user_id, 4))
            got[e.event_id] = e
    assert sorted(got) == [f"e{i}" for i in range(6)]
    assert all(e.ts == now for e in got.values())
    assert sorted(d["source"]["offset"] for d in dead) == [6, 7, 8]
    assert {d["reason"] for d in dead} == {"bad_json", "not_utf8", "unknown_type"}


# The user and item stages coalesce their output with processing-time timers and need the feedback
# topic, so they are tested through the whole job on the real stack instead
# (tests/flink/test_liverec_job.py, tests/recovery/).


def test_drift_adapter_keeps_its_windows_in_keyed_state_and_emits_alert_json() -> None:
    import numpy as np
    from pyflink.common import Types

    from operators.drift.flink import DRIFT_KEY, DriftMonitor
    from operators.drift.logic import DriftParams, WindowSpec
    from state_schemas import feature_batch
    from state_schemas.feature_batch import FeatureSamples

    s = load_settings()
    t = 1_764_000_000_000
    rng = np.random.default_rng(3)
    params = DriftParams(features=("dwell_ms", "event_type"), reference=WindowSpec(300, 0, 300),
                         current=WindowSpec(200, 0, 200), job_name="adapter-test", model_version="m1")
    batches = []
    for i in range(10):  # 3 batches fill the reference, then 200-sample windows; the shift starts at batch 5
        vals = rng.normal(3.0 if i >= 5 else 0.0, 1.0, 100)
        batches.append(feature_batch.encode((FeatureSamples.from_array("dwell_ms", t + 100 * i, t + 100 * i + 99,
                                                                        vals),
                                             FeatureSamples.from_array("unmonitored", t, t, [1.0]))))
    env = _env(s)
    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    # from_collection cannot carry byte arrays: send indices and map them to the records
    out = (env.from_collection(list(range(len(batches))), type_info=Types.INT())
           .map(lambda i: batches[i], output_type=bytes_type)
           .key_by(lambda _b: DRIFT_KEY, key_type=Types.STRING())
           .process(DriftMonitor(params), output_type=bytes_type))
    alerts = [json.loads(_b(v)) for v in out.execute_and_collect()]
    assert [a["feature"] for a in alerts] == ["dwell_ms"], alerts
    (a,) = alerts
    # windows 300-499 (before), 500-699 (the shift): the second one alerts, then the reference refills
    assert (a["reference"]["start_ts"], a["reference"]["end_ts"]) == (t, t + 299)
    assert (a["current"]["start_ts"], a["current"]["end_ts"]) == (t + 500, t + 699)
    assert (a["job_name"], a["model_version"], a["alert_version"]) == ("adapter-test", "m1", 1)

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


def test_validate_adapter_splits_good_events_and_dead_letters() -> None:
    from pyflink.common import Row, Types

    from operators.events.flink import DEAD_LETTERS, EVENT_TYPE, ValidateEvents

    s = load_settings()
    now = int(time.time() * 1000)
    good = [
        json.dumps({"event_id": f"e{i}", "user_id": f"u{i % 3}", "item_id": "i1", "type": "click", "ts": now})
        .encode()
        for i in range(6)
    ]
    bad = [b"{oops", b"\xff\xfe", json.dumps({"event_id": "x", "user_id": "u", "item_id": "i", "type": "teleport",
                                               "ts": now}).encode()]
    rows = [Row(v, "events", 1, off) for off, v in enumerate(good + bad)]
    row_type = Types.ROW([Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.STRING(), Types.INT(), Types.LONG()])
    def run(collect_dead: bool) -> list:
        # Both outputs are always consumed, as in the job (an unconsumed side output's records would
        # fall through to the main output in PyFlink's embedded operators).
        env = _env(s)
        out = env.from_collection(rows, type_info=row_type).process(
            ValidateEvents(max_bytes=s.max_event_bytes, max_skew_ms=s.max_clock_skew_ms, min_ts_ms=s.min_event_ts_ms),
            output_type=EVENT_TYPE,
        )
        dead = out.get_side_output(DEAD_LETTERS)
        (out if collect_dead else dead).filter(lambda _: False).print()
        return list((dead if collect_dead else out).execute_and_collect())

    valid = run(collect_dead=False)
    dead = [json.loads(_b(d)) for d in run(collect_dead=True)]

    assert sorted(decode_event(_b(v[2])).event_id for v in valid) == [f"e{i}" for i in range(6)]
    assert all(v[0] == decode_event(_b(v[2])).user_id and v[1] == now for v in valid)
    assert sorted(d["source"]["offset"] for d in dead) == [6, 7, 8]
    assert {d["reason"] for d in dead} == {"bad_json", "not_utf8", "unknown_type"}


# The user and item stages coalesce their output with processing-time timers, which a bounded
# collection source never lets fire (the job ends first); they are tested through the whole job on the
# real stack instead (tests/flink/test_liverec_job.py, tests/recovery/).

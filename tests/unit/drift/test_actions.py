"""The action policy: which alerts call for which adjustment, for how long, and how adjustments combine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.drift.actions import MAX_HELD, ActionParams, factor_at, hold, plan, plan_record
from pipeline.errors import ConfigError, SchemaError
from state_schemas import adjustment
from state_schemas.adjustment import LEARNING_RATE, POPULARITY_WEIGHT, Adjustment
from state_schemas.alerts_v1 import Alert, WindowSpan, alert_json
from tests.contracts.strategies import PROPS

T = 1_764_000_000_000


def alert(feature: str = "category", end_ts: int = T) -> Alert:
    return Alert(feature, 0.4, 1e-30, 0.3, WindowSpan(T - 600_000, T - 300_001, 2000, 9000),
                 WindowSpan(T - 300_000, end_ts, 1000, 4000), 1e-4, 0.1, T + 5_000, "liverec", "bpr-d64-n8-s7")


def test_popularity_boost_for_the_configured_features_only() -> None:
    p = ActionParams("popularity_boost", features=("category", "served_score"), factor=3.0, duration_ms=60_000)
    assert plan(alert("category"), p) == Adjustment(POPULARITY_WEIGHT, 3.0, T, T + 60_000, "category")
    assert plan(alert("served_score"), p) is not None
    assert plan(alert("dwell_ms"), p) is None


def test_learning_rate_action_and_no_action() -> None:
    p = ActionParams("learning_rate", features=("event_type",), factor=0.5, duration_ms=10)
    assert plan(alert("event_type"), p) == Adjustment(LEARNING_RATE, 0.5, T, T + 10, "event_type")
    assert plan(alert("category"), ActionParams()) is None, "the default action is none"


def test_an_adjustment_applies_from_the_end_of_the_alert_window_until_it_expires() -> None:
    adj = plan(alert(end_ts=T), ActionParams("popularity_boost", duration_ms=1_000))
    assert adj is not None
    assert [factor_at((adj,), POPULARITY_WEIGHT, t) for t in (T - 1, T, T + 999, T + 1_000)] == [1.0, 2.0, 2.0, 1.0]
    assert factor_at((adj,), LEARNING_RATE, T) == 1.0, "another knob is untouched"


def test_overlapping_adjustments_do_not_compound_the_latest_applies() -> None:
    a = Adjustment(POPULARITY_WEIGHT, 2.0, T, T + 1_000, "category")
    b = Adjustment(POPULARITY_WEIGHT, 4.0, T + 500, T + 700, "served_score")
    held = hold(hold((), a), b)
    assert [factor_at(held, POPULARITY_WEIGHT, t) for t in (T + 100, T + 600, T + 800)] == [2.0, 4.0, 2.0]


def test_hold_drops_expired_and_repeated_adjustments_and_stays_small() -> None:
    a = Adjustment(POPULARITY_WEIGHT, 2.0, T, T + 10, "category")
    later = Adjustment(POPULARITY_WEIGHT, 2.0, T + 20, T + 30, "category")
    assert hold((a,), a) == (a,), "a replayed alert is held once"
    assert hold((a,), later) == (later,), "expired by the time the new one starts"
    held: tuple[Adjustment, ...] = ()
    for i in range(3 * MAX_HELD):
        held = hold(held, Adjustment(LEARNING_RATE, 0.5, T + i, T + 10**9, "event_type"))
    assert len(held) == MAX_HELD and held[-1].start_ts == T + 3 * MAX_HELD - 1


@PROPS
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 10_000), st.floats(0.1, 10)), max_size=20),
       st.integers(-100, 25_000))
def test_the_factor_is_one_or_the_factor_of_an_active_adjustment(adds: list, ts: int) -> None:
    held: tuple[Adjustment, ...] = ()
    for start, length, factor in adds:
        held = hold(held, Adjustment(POPULARITY_WEIGHT, factor, start, start + length, "category"))
    f = factor_at(held, POPULARITY_WEIGHT, ts)
    active = [a for a in held if a.active(ts)]
    assert (f == 1.0) if not active else f in {a.factor for a in active}


def test_plan_from_a_record_of_the_alerts_topic_and_foreign_records_raise() -> None:
    p = ActionParams("popularity_boost")
    adj = plan_record(alert_json(alert()), p)
    assert adj is not None and adjustment.decode(adjustment.encode(adj)) == adj
    for junk in (b"{not json", b'{"alert_version":2,"kind":"drift"}', b'{"alert_version":1,"kind":"latency"}',
                 b'{"alert_version":1,"kind":"drift"}'):
        with pytest.raises(SchemaError):
            plan_record(junk, p)


@pytest.mark.parametrize("bad", [{"action": "reboot"}, {"factor": 0.0}, {"factor": float("nan")},
                                 {"duration_ms": -1}])
def test_bad_policies_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="LIVEREC_DRIFT_ACTION"):
        ActionParams(**bad)  # type: ignore[arg-type]

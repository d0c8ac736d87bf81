"""Drift logic: windows, the breach rule, debouncing, re-baselining, bounded state that round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.drift.logic import DriftParams, WindowSpec, initial_state, max_state_bytes, reconcile, step
from pipeline.errors import ConfigError
from state_schemas import drift_state
from state_schemas.drift_state import DriftState, Window
from state_schemas.feature_batch import FeatureSamples
from tests.contracts.strategies import FEW, PROPS

T = 1_764_000_000_000
X = "dwell_ms"


def params(**kw: object) -> DriftParams:
    base: dict[str, object] = {
        "features": (X,), "reference": WindowSpec(400, 0, 400), "current": WindowSpec(200, 0, 200),
        "alpha": 0.001, "min_statistic": 0.1, "job_name": "job-a", "model_version": "bpr-test",
    }
    base.update(kw)
    return DriftParams(**base)  # type: ignore[arg-type]


class Stream:
    """Feeds batches of one feature with increasing event time (``per_ms`` samples per ms)."""

    def __init__(self, p: DriftParams, seed: int = 0) -> None:
        self.p, self.state, self.ts = p, initial_state(p), T
        self.rng = np.random.default_rng(seed)
        self.alerts: list = []
        self.tests: list = []

    def feed(self, values: np.ndarray, name: str = X, batch: int = 50) -> None:
        for i in range(0, len(values), batch):
            chunk = values[i : i + batch]
            fb = (FeatureSamples.from_array(name, self.ts, self.ts + len(chunk) - 1, chunk),)
            self.ts += len(chunk)
            self.state, out = step(self.state, fb, self.p, now_ms=self.ts)
            self.alerts += out.alerts
            self.tests += out.tests

    def normal(self, n: int, mean: float = 0.0) -> np.ndarray:
        return self.rng.normal(mean, 1.0, n)


def test_reference_fills_first_then_each_full_current_window_is_tested_once() -> None:
    s = Stream(params())
    s.feed(s.normal(400))
    f = s.state.features[0]
    assert f.reference.seen == 400 and f.current.seen == 0 and not s.tests
    s.feed(s.normal(1000))
    assert len(s.tests) == 5, "200-sample windows, tumbling"
    assert s.state.features[0].reference.seen == 400, "the reference stays frozen"
    assert not s.alerts


def test_a_window_is_complete_only_with_enough_samples_and_enough_event_time() -> None:
    p = params(reference=WindowSpec(100, 1_000, 50), current=WindowSpec(100, 500, 50))
    s = Stream(p)
    s.feed(s.normal(400), batch=400)  # 400 samples, but only 399 ms of event time
    assert s.state.features[0].reference.seen == 400 and not p.reference.complete(s.state.features[0].reference)
    s.feed(s.normal(700), batch=100)
    ref = s.state.features[0].reference
    assert ref.end_ts - ref.start_ts >= 1_000 and ref.kept == 100, "kept at most its capacity"
    assert p.reference.complete(ref) and s.state.features[0].current.seen == 0
    s.feed(s.normal(500), batch=100)
    assert not s.tests, "499 ms of event time in the current window"
    s.feed(s.normal(100), batch=100)
    assert len(s.tests) == 1, "the current window is tested once it spans 500 ms"
    # a window that spans enough time but holds too few samples waits
    w = Window(0, T, T + 10_000, 10, np.zeros(10, "<f4").tobytes())
    assert not WindowSpec(100, 500, 50).complete(w)


@PROPS
@given(st.floats(1.5, 6.0), st.integers(0, 2**31), st.sampled_from([(300, 100), (1000, 300), (2000, 1000)]))
def test_a_large_shift_always_alerts_after_one_current_window(shift: float, seed: int, sizes: tuple[int, int]) -> None:
    ref_n, cur_n = sizes
    p = params(features=("event_type", X, "category"), reference=WindowSpec(ref_n, 0, ref_n),
               current=WindowSpec(cur_n, 0, cur_n))
    s = Stream(p, seed)
    s.feed(s.normal(ref_n), batch=100)
    shift_ts = s.ts
    s.feed(s.normal(cur_n, shift), batch=100)
    assert len(s.tests) == 1 and len(s.alerts) == 1
    a = s.alerts[0]
    assert a.feature == X and a.statistic >= 0.1 and a.p_value < p.alpha / 3
    assert a.reference.end_ts < shift_ts <= a.current.start_ts
    assert (a.reference.size, a.current.size) == (ref_n, cur_n)
    assert (a.alpha, a.min_statistic, a.job_name, a.model_version) == (p.alpha / 3, 0.1, "job-a", "bpr-test")


@PROPS
@given(st.integers(0, 2**31), st.sampled_from(["normal", "codes", "counts"]))
def test_identical_distributions_rarely_alert(seed: int, kind: str) -> None:
    """At most one alert in 10 windows (the rule's false-alarm probability per test is below 1/7000)."""
    p = params(features=("event_type", X, "category", "session_events", "session_ms", "user_norm", "served_score"))
    s = Stream(p, seed)
    draw = {
        "normal": lambda n: s.rng.normal(0, 1, n),
        "codes": lambda n: s.rng.choice([0, 0, 0, 1, 1, 2, 4], n).astype(float),
        "counts": lambda n: s.rng.poisson(3, n).astype(float),
    }[kind]
    s.feed(draw(400 + 10 * 200))
    assert len(s.tests) == 10
    assert len(s.alerts) <= 1


def test_false_alarms_over_many_stationary_windows_stay_below_alpha() -> None:
    """3,000 tests of one feature at 1/7 of alpha each: the expected count is 0.43; more than 4 has p < 0.001."""
    p = params(features=("event_type", X, "category", "session_events", "session_ms", "user_norm", "served_score"))
    alerts = 0
    for seed in range(100):
        s = Stream(p, seed)
        s.feed(s.normal(400 + 30 * 200), batch=200)
        assert len(s.tests) == 30
        alerts += len(s.alerts)
    assert alerts <= 4


def test_both_parts_of_the_rule_are_needed() -> None:
    # Tiny effect, huge windows: p is small, the statistic is below the floor.
    p = params(reference=WindowSpec(20_000, 0, 20_000), current=WindowSpec(20_000, 0, 20_000))
    s = Stream(p, 1)
    s.feed(s.normal(20_000), batch=5000)
    s.feed(s.normal(20_000, 0.12), batch=5000)
    (t,) = s.tests
    assert t.p_value < p.test_alpha and t.statistic < 0.1 and not t.breach and not s.alerts
    # Large effect, tiny windows: the statistic is above the floor, p is not small enough.
    p = params(reference=WindowSpec(8, 0, 8), current=WindowSpec(8, 0, 8))
    s = Stream(p, 1)
    s.feed(np.arange(8.0))
    s.feed(np.arange(8.0) + 3)
    (t,) = s.tests
    assert t.statistic >= 0.1 and t.p_value >= p.test_alpha and not s.alerts


def test_without_rebaseline_one_alert_per_episode_and_the_episode_ends_when_quiet() -> None:
    p = params(rebaseline=False, quiet_windows=2)
    s = Stream(p, 3)
    s.feed(s.normal(400))
    s.feed(s.normal(200 * 6, 3.0))  # six breaching windows
    assert len(s.tests) == 6 and all(t.breach for t in s.tests)
    assert len(s.alerts) == 1 and s.state.features[0].episode
    s.feed(s.normal(200))  # one quiet window: still in the episode
    assert s.state.features[0].episode and s.state.features[0].quiet == 1
    s.feed(s.normal(200 * 3, 3.0))  # breaching again within the episode: no new alert
    assert len(s.alerts) == 1 and s.state.features[0].quiet == 0
    s.feed(s.normal(200 * 2))  # two quiet windows end it
    assert not s.state.features[0].episode
    s.feed(s.normal(200, -3.0))  # a new shift is a new episode
    assert len(s.alerts) == 2
    assert s.state.features[0].reference.seen == 400, "the reference was never replaced"


def test_with_rebaseline_the_reference_refills_after_the_shift_and_a_second_shift_alerts_again() -> None:
    p = params(rebaseline=True)
    s = Stream(p, 4)
    s.feed(s.normal(400))
    first_ref = s.state.features[0].reference
    shift_ts = s.ts
    s.feed(s.normal(200, 3.0))
    assert len(s.alerts) == 1 and s.state.features[0].episode
    assert s.state.features[0].reference == Window(first_ref.serial + 1), "emptied, not filled from the alert window"
    s.feed(s.normal(400 + 200 * 5, 3.0))  # the new reference fills from the new normal; then quiet
    f = s.state.features[0]
    assert not f.episode and f.reference.start_ts > shift_ts and len(s.alerts) == 1
    assert len(s.tests) == 6 and not any(t.breach for t in s.tests[1:])
    s.feed(s.normal(200, 0.0))
    assert len(s.alerts) == 2 and s.alerts[1].reference.start_ts == f.reference.start_ts


def test_unknown_features_and_non_finite_samples_are_counted_not_used() -> None:
    p = params()
    fb = (FeatureSamples.from_array("brand_new", T, T, [1.0, 2.0]),
          FeatureSamples.from_array(X, T, T + 1, [1.0, np.nan, np.inf, 2.0]))
    state, out = step(initial_state(p), fb, p, now_ms=T)
    assert out.ignored == {"brand_new": 2} and out.nonfinite == 2
    assert state.features[0].reference.values().tolist() == [1.0, 2.0]
    assert [f.name for f in state.features] == [X]


def test_state_round_trip_mid_stream_continues_identically() -> None:
    p = params(features=(X, "user_norm"), reference=WindowSpec(300, 100, 200), current=WindowSpec(100, 50, 100))
    rng = np.random.default_rng(9)
    batches = []
    for i in range(60):
        mean = 0.0 if i < 30 else 2.0
        batches.append((FeatureSamples.from_array(X, T + 20 * i, T + 20 * i + 19, rng.normal(mean, 1, 40)),
                        FeatureSamples.from_array("user_norm", T + 20 * i, T + 20 * i + 19, rng.gamma(2, 1, 7))))
    mem, via = initial_state(p), initial_state(p)
    alerts_mem, alerts_via = [], []
    for fb in batches:
        mem, out = step(mem, fb, p, now_ms=1)
        alerts_mem += out.alerts
        via, out = step(drift_state.decode(drift_state.encode(via)), fb, p, now_ms=1)
        alerts_via += out.alerts
    assert drift_state.encode(mem) == drift_state.encode(via)
    assert alerts_mem == alerts_via and [a.feature for a in alerts_mem] == [X]


@FEW
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 5_000)), min_size=1, max_size=30),
       st.integers(0, 2**31))
def test_state_stays_within_its_bound_whatever_the_stream(batches: list[tuple[int, int]], seed: int) -> None:
    p = params(features=(X, "event_type"), reference=WindowSpec(500, 2_000, 10), current=WindowSpec(200, 1_000, 10))
    rng = np.random.default_rng(seed)
    state, ts = initial_state(p), T
    for n, dt in batches:
        fb = (FeatureSamples.from_array(X, ts, ts + dt, rng.normal(0, 1, n)),
              FeatureSamples.from_array("event_type", ts, ts + dt, rng.integers(0, 6, n)))
        ts += dt
        state, _ = step(state, fb, p, now_ms=ts)
        assert len(drift_state.encode(state)) <= max_state_bytes(p)
        for f in state.features:
            assert f.reference.kept == min(f.reference.seen, 500) and f.current.kept <= 200


def test_the_reservoir_keeps_a_uniform_sample_of_a_long_window() -> None:
    """10,000 samples 0..9999 through a 1,000-sample window: every tenth of the stream keeps about a tenth."""
    p = params(reference=WindowSpec(1_000, 0, 10_000))
    s = Stream(p)
    s.feed(np.arange(10_000, dtype=float), batch=250)
    kept = s.state.features[0].reference.values()
    assert kept.size == 1_000 and s.state.features[0].reference.seen == 10_000
    deciles = np.bincount((kept // 1_000).astype(int), minlength=10)
    assert deciles.min() >= 70 and deciles.max() <= 130, deciles  # binomial(1000, 0.1): sd 9.5
    assert len(set(kept.tolist())) == 1_000, "each sample is kept at most once"


def test_same_batches_same_state_bytes() -> None:
    def run() -> bytes:
        s = Stream(params(reference=WindowSpec(100, 0, 1_000)), seed=5)
        s.feed(s.normal(3_000), batch=70)
        return drift_state.encode(s.state)

    assert run() == run()


def test_reconcile_adds_and_drops_features_and_restarts_oversized_windows() -> None:
    p = params(features=(X, "user_norm"))
    full = Window(2, T, T + 5, 900, np.zeros(300, "<f4").tobytes())
    old = DriftState((drift_state.FeatureState("gone", full), drift_state.FeatureState(X, full, full, True)))
    new = reconcile(old, p)
    assert [f.name for f in new.features] == [X, "user_norm"]
    x = new.features[0]
    assert x.reference == full, "300 samples fit the 400 of the reference"
    assert x.current == Window(3), "300 samples do not fit 200: a new window"
    small = reconcile(new, params(features=(X,), reference=WindowSpec(100, 0, 100)))
    assert small.features[0].reference == Window(3) and not small.features[0].episode


@pytest.mark.parametrize("bad", [
    {"features": ()}, {"features": (X, X)}, {"alpha": 0.0}, {"alpha": 1.0}, {"min_statistic": 1.5},
    {"quiet_windows": 0},
])
def test_bad_settings_are_refused_naming_them(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="LIVEREC_DRIFT"):
        params(**bad)


def test_bad_window_specs_are_refused() -> None:
    for args in [(0, 0, 1), (10, -1, 1), (10, 0, 0)]:
        with pytest.raises(ConfigError, match="LIVEREC_DRIFT"):
            WindowSpec(*args)


def test_samples_within_the_warm_up_are_counted_and_not_used() -> None:
    p = params(warmup_ms=1_000)
    s = Stream(p)
    s.feed(s.normal(1_000, mean=5.0), batch=100)  # batches starting at T..T+900: all in the warm-up, and far off
    f = s.state.features[0]
    assert f.reference.seen == 0 and f.hold_ts == T + 1_000
    s.feed(s.normal(400), batch=100)  # starts at T+1000: used
    assert s.state.features[0].reference.seen == 400
    s.feed(s.normal(200 * 3), batch=100)
    assert len(s.tests) == 3 and not s.alerts, "the warm-up's outliers never reached a window"
    state, out = step(s.state, (FeatureSamples.from_array(X, T - 10, T + 5_000, [1.0, 2.0]),), p, now_ms=0)
    assert out.held == 2 and state.features[0].current == s.state.features[0].current, "a batch from before it"


def test_after_an_alert_batches_that_start_before_the_alert_window_ends_are_held() -> None:
    """Sibling batches (other user shards) over the same event time must not seed the new reference."""
    p = params()
    s = Stream(p, 6)
    s.feed(s.normal(400))
    s.feed(s.normal(200, 3.0))
    (a,) = s.alerts
    assert s.state.features[0].hold_ts == a.current.end_ts + 1
    late = (FeatureSamples.from_array(X, a.current.start_ts, a.current.end_ts, s.normal(300)),)
    state, out = step(s.state, late, p, now_ms=0)
    assert out.held == 300 and state.features[0].reference.seen == 0
    s.feed(s.normal(400, 3.0))
    assert s.state.features[0].reference.start_ts > a.current.end_ts

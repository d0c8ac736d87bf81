"""Event-time decayed popularity."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import operators.learner.popularity as pop_mod
from operators.learner.popularity import bump, decay, log_popularity
from pipeline.errors import ConfigError

values = st.floats(0.0, 1e6)
times = st.floats(0.0, 1e7)
half_lives = st.floats(1.0, 1e7)


def test_doctests_pass() -> None:
    assert doctest.testmod(pop_mod).failed == 0


def test_one_half_life_halves() -> None:
    assert decay(10.0, 100.0, 100.0 + 3600.0, 3600.0) == pytest.approx(5.0)
    assert decay(10.0, 5.0, 5.0, 1.0) == 10.0


def test_vectorised_matches_scalar() -> None:
    v = np.array([1.0, 2.0, 4.0])
    last = np.array([0.0, 10.0, 20.0])
    out = decay(v, last, 30.0, 10.0)
    assert out.tolist() == pytest.approx([decay(float(a), float(b), 30.0, 10.0) for a, b in zip(v, last, strict=True)])
    assert log_popularity(v, last, 30.0, 10.0).tolist() == pytest.approx(np.log1p(out).tolist())


@settings(max_examples=200, deadline=None)
@given(v=values, t0=times, d1=times, d2=times, hl=half_lives)
def test_decay_composes(v: float, t0: float, d1: float, d2: float, hl: float) -> None:
    t1, t2 = t0 + d1, t0 + d1 + d2
    assert decay(decay(v, t0, t1, hl), t1, t2, hl) == pytest.approx(decay(v, t0, t2, hl), rel=1e-9, abs=1e-300)


@settings(max_examples=200, deadline=None)
@given(v=values, t0=times, d1=times, d2=times, hl=half_lives)
def test_decay_is_monotone_in_time(v: float, t0: float, d1: float, d2: float, hl: float) -> None:
    early, late = decay(v, t0, t0 + d1, hl), decay(v, t0, t0 + d1 + d2, hl)
    assert 0.0 <= late <= early <= v


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(times, st.floats(0.1, 10.0)), min_size=1, max_size=8), hl=half_lives)
def test_bump_is_independent_of_arrival_order(events: list[tuple[float, float]], hl: float) -> None:
    def fold(evs: list[tuple[float, float]]) -> tuple[float, float]:
        value, last = 0.0, 0.0
        for ts, w in evs:
            value, last = bump(value, last, ts, hl, w)
        return value, last

    in_order, shuffled = fold(sorted(events)), fold(list(reversed(events)))
    now = max(ts for ts, _ in events)
    assert in_order[1] == shuffled[1] == now
    expected = math.fsum(w * 2 ** (-(now - ts) / hl) for ts, w in events)
    assert in_order[0] == pytest.approx(expected, rel=1e-9)
    assert shuffled[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("hl", [0.0, -1.0, float("nan")])
def test_bad_half_life_raises(hl: float) -> None:
    with pytest.raises(ConfigError, match="half_life"):
        decay(1.0, 0.0, 1.0, hl)

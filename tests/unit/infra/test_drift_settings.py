"""LIVEREC_DRIFT_* settings: validation when they load, and their mapping onto the drift parameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from operators.drift.features import FEATURES
from operators.drift.logic import WindowSpec
from pipeline.drift_params import action_params, drift_params
from pipeline.settings import load_settings


def test_drift_settings_reach_the_monitor_and_the_policy(monkeypatch) -> None:
    monkeypatch.setenv("LIVEREC_DRIFT_FEATURES", " category , event_type")
    monkeypatch.setenv("LIVEREC_DRIFT_WINDOW_MS", "60000")
    monkeypatch.setenv("LIVEREC_DRIFT_REBASELINE", "false")
    monkeypatch.setenv("LIVEREC_DRIFT_ACTION", "learning_rate")
    monkeypatch.setenv("LIVEREC_DRIFT_ACTION_FACTOR", "0.5")
    s = load_settings(job_name="j1", embedding_dim=32)
    p = drift_params(s)
    assert p.features == ("category", "event_type") and p.test_alpha == pytest.approx(0.0005)
    assert p.current == WindowSpec(1_000, 60_000, 200) and p.reference == WindowSpec(2_000, 600_000, 200)
    assert not p.rebaseline and p.warmup_ms == 1_800_000
    assert (p.job_name, p.model_version) == ("j1", "bpr-d32-n8-s7")
    a = action_params(s)
    assert (a.action, a.factor, a.features, a.duration_ms) == ("learning_rate", 0.5, ("category", "served_score"),
                                                               900_000)


def test_defaults_monitor_every_feature() -> None:
    assert drift_params(load_settings()).features == FEATURES


@pytest.mark.parametrize(("name", "value"), [
    ("drift_features", "category,colour"), ("drift_features", " , "), ("drift_action_features", "nope"),
    ("drift_action", "panic"), ("drift_alpha", 0.0), ("drift_min_statistic", 2.0), ("drift_window_samples", 0),
])
def test_bad_drift_settings_are_refused_when_they_load(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match=name):
        load_settings(**{name: value})

"""Flink adapter of the drift monitor: FeatureBatch records keyed by one constant → alert JSON.

Per call: one `FeatureBatch` (from a user shard, or the gather step) goes through
`operators.drift.logic.step`; the state is written back to keyed state before the call returns, and
every alert leaves on the main output as alert JSON (contract v1, `state_schemas.alerts_v1`).

One key (`DRIFT_KEY`): the windows must see every shard's samples, and a record per batch is cheap. The
state is one `DriftState` blob in a `ValueState` of `PICKLED_BYTE_ARRAY` (holding `bytes`), which works
in thread mode where a `PRIMITIVE_ARRAY` value state does not (../shared/MEASUREMENTS.md). The decoded
state stays in memory between calls (a cache of keyed state, loaded on the first record after `open()`
and written back on every call), so a call costs one encode, not a decode as well.

Metrics, group ``liverec``: counters ``drift_alerts``, ``drift_windows`` (tests run),
``drift_ignored_samples`` (samples of features not monitored), ``drift_nonfinite_samples``,
``drift_held_samples`` (in a feature's warm-up, or in batches that began before its last alert window
ended); per feature
(group ``feature``, ``<name>``): counters ``drift_alerts`` and ``drift_windows``, gauges
``drift_statistic_permille`` and ``drift_p_value_permille`` (last test, ×1000 rounded down; -1 before
the first test).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from operators.drift.logic import DriftParams, initial_state, reconcile, step
from operators.metrics import Level
from state_schemas import drift_state, feature_batch
from state_schemas.alerts_v1 import alert_json
from state_schemas.drift_state import DriftState

DRIFT_KEY = "drift"
DRIFT_STATE = "drift-state"  # the DriftState blob under DRIFT_KEY (docs/state.md)


class DriftMonitor(KeyedProcessFunction):  # type: ignore[misc]
    """FeatureBatch bytes keyed by `DRIFT_KEY` → alert JSON bytes."""

    def __init__(self, params: DriftParams) -> None:
        self.params = params

    def open(self, runtime_context: RuntimeContext) -> None:
        self.store = runtime_context.get_state(ValueStateDescriptor(DRIFT_STATE, Types.PICKLED_BYTE_ARRAY()))
        self.states: dict[str, DriftState] = {}  # key -> decoded state (one key in the job)
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.alerts = group.counter("drift_alerts")
        self.windows = group.counter("drift_windows")
        self.ignored = group.counter("drift_ignored_samples")
        self.nonfinite = group.counter("drift_nonfinite_samples")
        self.held = group.counter("drift_held_samples")
        self.per_feature: dict[str, tuple[Any, Any]] = {}
        self.last: dict[str, tuple[Level, Level]] = {}  # levels, not gauges (operators/metrics.py)
        for name in self.params.features:
            sub = group.add_group("feature", name)
            self.per_feature[name] = (sub.counter("drift_alerts"), sub.counter("drift_windows"))
            self.last[name] = (Level(sub.counter("drift_statistic_permille"), -1),
                               Level(sub.counter("drift_p_value_permille"), -1))

    def _load(self) -> DriftState:
        blob = self.store.value()
        state = initial_state(self.params) if blob is None else drift_state.decode(bytes(blob))
        state = reconcile(state, self.params)
        for f in state.features:
            self._last(f.name, f.statistic, f.p_value)
        return state

    def _last(self, feature: str, statistic: float, p_value: float) -> None:
        if feature in self.last:
            self.last[feature][0].set(_permille(statistic))
            self.last[feature][1].set(_permille(p_value))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[bytes]:
        key = ctx.get_current_key()
        state = self.states.get(key)
        if state is None:
            state = self._load()
        batch = feature_batch.decode(bytes(value))
        state, out = step(state, batch, self.params, now_ms=int(time.time() * 1000))
        self.states[key] = state
        self.store.update(drift_state.encode(state))
        if out.ignored:
            self.ignored.inc(sum(out.ignored.values()))
        if out.nonfinite:
            self.nonfinite.inc(out.nonfinite)
        if out.held:
            self.held.inc(out.held)
        for t in out.tests:
            self.windows.inc()
            self.per_feature[t.feature][1].inc()
            self._last(t.feature, t.statistic, t.p_value)
        for a in out.alerts:
            self.alerts.inc()
            self.per_feature[a.feature][0].inc()
            yield alert_json(a)


def _permille(x: float) -> int:
    return -1 if x < 0 else int(x * 1000)

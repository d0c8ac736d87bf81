"""`pipeline.replay` without a broker: pacing, timestamp order, validation counts, the final table."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import pipeline.replay as replay_mod
from pipeline.errors import ConfigError
from pipeline.interactions import ReadOptions
from pipeline.replay import Pacer, Pacing, replay
from pipeline.settings import load_settings

T0 = 1_736_150_400_000  # 2025-01-06T08:00:00Z
NOW = 1_764_000_000_000


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 50.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_callback(self, fn: Any) -> None:
        if self.error is None:
            fn(object())

    def add_errback(self, fn: Any) -> None:
        if self.error is not None:
            fn(self.error)


class FakeProducer:
    def __init__(self, fail_user: str | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_user = fail_user
        self.flushed = self.closed = False

    def send(self, topic: str, *, key: bytes, value: bytes) -> FakeFuture:
        self.sent.append((topic, key, value))
        return FakeFuture(RuntimeError("refused") if key.decode() == self.fail_user else None)

    def flush(self, timeout: float) -> None:
        self.flushed = True

    def close(self, timeout: float) -> None:
        self.closed = True


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(replay_mod).failed == 0


def test_rate_spaces_rows_evenly_and_speedup_follows_event_time() -> None:
    p = Pacer(Pacing(rate=10.0), start=0.0, first_ts_ms=T0)
    assert [round(p.due(T0), 3) for _ in range(4)] == [0.0, 0.1, 0.2, 0.3]
    p = Pacer(Pacing(rate=None, speedup=60.0), start=0.0, first_ts_ms=T0)
    assert [p.due(T0 + m * 60_000) for m in (0, 1, 1, 10)] == [0.0, 1.0, 1.0, 10.0]
    # both: the file's gaps, but never two rows closer than 1/rate
    p = Pacer(Pacing(rate=2.0, speedup=1.0), start=0.0, first_ts_ms=T0)
    assert [p.due(T0 + ms) for ms in (0, 0, 0, 5_000)] == [0.0, 0.5, 1.0, 5.0]


@pytest.mark.parametrize(("args", "words"), [
    ((5.0, None, True), "cannot go with"),
    ((None, 2.0, True), "cannot go with"),
    ((0.0, None, False), "--rate must be > 0"),
    ((None, -1.0, False), "--speedup must be > 0"),
])
def test_pacing_flags_that_contradict_are_refused(args: tuple[Any, ...], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Pacing.from_cli(*args)


def test_pacing_defaults() -> None:
    assert Pacing.from_cli(None, None, False) == Pacing(rate=1_000.0, speedup=None)
    assert Pacing.from_cli(None, None, True) == Pacing(rate=None, speedup=None)
    assert Pacing.from_cli(None, 30.0, False) == Pacing(rate=None, speedup=30.0)


def _log(tmp_path: Path) -> Path:
    # out of timestamp order; line 4 is too old for the job, line 5 has a 200-character item id
    path = tmp_path / "log.csv"
    path.write_text("user;item;ts\n"
                    f"bob;i2;{T0 + 2000}\n"
                    f"alice;i1;{T0}\n"
                    "old;i0;946684799999\n"
                    f"long;{'x' * 200};{T0}\n"
                    f"alice;i3;{T0 + 2000}\n"
                    "broken;row\n")
    return path


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, producer: FakeProducer, **kw: Any) -> Any:
    monkeypatch.setattr(replay_mod, "_producer", lambda settings, topic: producer)
    clock = FakeClock()
    console = Console(record=True, width=200)
    result = replay(load_settings(topic_prefix="unit-"), _log(tmp_path), ReadOptions(), console=console,
                    clock=clock, sleep=clock.sleep, wall_ms=lambda: NOW, **kw)
    return result, clock, console.export_text()


def test_replay_sends_valid_events_in_timestamp_order_and_counts_the_rest(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    result, _, text = _run(tmp_path, monkeypatch, producer, pacing=Pacing(rate=None))
    assert [(t, k.decode(), json.loads(v)["item_id"]) for t, k, v in producer.sent] == [
        ("unit-events", "alice", "i1"), ("unit-events", "bob", "i2"), ("unit-events", "alice", "i3")]
    assert [json.loads(v)["event_id"].rsplit(":", 1)[1] for _, _, v in producer.sent] == ["3", "2", "6"]
    assert result.acked == 3 and result.handed == 3 and not result.failed
    assert result.rejected == {"ts_out_of_range": 1, "bad_value": 1}
    assert [p.line for p in result.examples["ts_out_of_range"]] == [4]
    assert [p.line for p in result.examples["bad_value"]] == [5]
    assert result.read.rejected == {"field_count": 1}
    assert producer.flushed and producer.closed
    for words in ("rejected by the reader: field_count", "rejected by validation: ts_out_of_range",
                  "sent to unit-events (acknowledged)", "line 4: ts_out_of_range", "line 7: field_count"):
        assert words in text, text


def test_replay_paces_by_rate_and_by_event_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, clock, _ = _run(tmp_path, monkeypatch, FakeProducer(), pacing=Pacing(rate=4.0))
    assert sum(clock.slept) == pytest.approx(0.5)  # 3 rows at 4/s: due at 0, 0.25, 0.5
    _, clock, _ = _run(tmp_path, monkeypatch, FakeProducer(), pacing=Pacing(rate=None, speedup=2.0))
    assert sum(clock.slept) == pytest.approx(1.0)  # 2 s of event time at 2x
    _, clock, _ = _run(tmp_path, monkeypatch, FakeProducer(), pacing=Pacing(rate=None))
    assert clock.slept == []


def test_send_failures_are_counted_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, _, text = _run(tmp_path, monkeypatch, FakeProducer(fail_user="alice"), pacing=Pacing(rate=None))
    assert result.acked == 1 and result.failed == {"RuntimeError": 2}
    assert "failed to send: RuntimeError" in text


def test_dry_run_sends_nothing_and_shift_to_now_rescues_old_times(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    result, clock, text = _run(tmp_path, monkeypatch, producer, pacing=Pacing(), dry_run=True, shift_to_now=True)
    assert producer.sent == [] and clock.slept == []
    assert result.shifted_ms == NOW - (T0 + 2000)
    assert result.to_send == 4 and result.rejected == {"bad_value": 1}, "the 1999 event is recent once shifted"
    assert "would be sent (dry run)" in text


def test_limit_keeps_the_earliest_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    producer = FakeProducer()
    _run(tmp_path, monkeypatch, producer, pacing=Pacing(rate=None), limit=2)
    assert [json.loads(v)["ts"] for _, _, v in producer.sent] == [T0]  # the other earliest one is too old

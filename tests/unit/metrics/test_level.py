"""`operators.metrics.Level`: the counter always holds the last value set, with one JVM call per change."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from operators.metrics import Level


class Counter:
    """Stands in for a Flink counter; records each call, as each is a call into the JVM."""

    def __init__(self) -> None:
        self.count = 0
        self.calls = 0

    def inc(self, n: int = 1) -> None:
        self.count += n
        self.calls += 1


@given(st.integers(-10**12, 10**12), st.lists(st.integers(-10**12, 10**12), max_size=50))
def test_the_counter_holds_the_last_value_set(initial: int, values: list[int]) -> None:
    c = Counter()
    level = Level(c, initial=initial)
    changes = int(initial != 0)
    last = initial
    for v in values:
        level.set(v)
        changes += v != last
        last = v
    assert c.count == level.value == last
    assert c.calls == changes  # no call when the value did not change


def test_floats_are_truncated() -> None:
    c = Counter()
    level = Level(c)
    level.set(12.9)
    assert c.count == 12

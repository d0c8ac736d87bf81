"""`Level`: a gauge whose value the Python code sets, held by the JVM in a Flink counter.

Why not a PyFlink gauge: in thread mode a gauge is a Python callable that the JVM calls from whatever
thread reads the metric: the Prometheus reporter's HTTP threads and the REST API's metric fetcher. A
read that meets the end of the task's interpreter (a cancel, a restart after a failure) crashes the
whole JVM in ``take_gil`` (SIGSEGV). Measured here with the reporter scraped by three threads: a job
with Python gauges crashed the JVM at its first cancel; with levels, six cancels in a row passed. A
`Level` is a plain Flink counter moved by the difference to the new value, so reading it never enters
Python. Flink's Prometheus reporter exports counters as Prometheus gauges, so a level looks like any
other gauge on `/metrics` and in the REST API.

>>> class FakeCounter:
...     def __init__(self) -> None:
...         self.count = 0
...     def inc(self, n: int = 1) -> None:
...         self.count += n
>>> c = FakeCounter()
>>> level = Level(c, initial=-1)
>>> c.count
-1
>>> level.set(250); level.set(40)
>>> c.count, level.value
(40, 40)
"""

from __future__ import annotations

from typing import Protocol


class Incrementable(Protocol):
    """What a level needs of a Flink counter (`pyflink.metrics.Counter`)."""

    def inc(self, n: int = 1) -> None: ...


class Level:
    """A settable gauge kept in a counter: `set` moves the counter to the value (one JVM call when it changed)."""

    __slots__ = ("counter", "value")

    def __init__(self, counter: Incrementable, initial: int = 0) -> None:
        self.counter = counter
        self.value = 0
        self.set(initial)

    def set(self, value: float) -> None:
        """Make the exported value ``value`` (truncated to an int: counters hold integers)."""
        new = int(value)
        if new != self.value:
            self.counter.inc(new - self.value)
            self.value = new

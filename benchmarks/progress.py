"""Measuring a running Flink job from outside: committed offsets, a deadline, and the 20–80% slope.

Why from outside: a source's offsets are committed to its consumer group when a checkpoint covering
them completes, so "offsets committed" counts records the job has processed *and* made durable, the
same figure for the skeleton and the job, with no probe inside either. Checkpoints make that curve a
staircase (one step per checkpoint): the rate is taken between the steps, interpolated linearly, and
only over steps inside the run, not from the first poll that crosses 20% and 80% (at 10 s checkpoints
that alone could be off by 50%, and the last step includes the wait for the final checkpoint).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.settings import Settings

TERMINAL = ("FAILED", "CANCELED", "FINISHED", "SUSPENDED")


class Offsets:
    """Sum of a consumer group's committed offsets over every partition of one topic (one open consumer)."""

    def __init__(self, settings: Settings, group: str, topic: str) -> None:
        from kafka import TopicPartition

        from pipeline.kafka_io import consumer

        self._c = consumer(settings, group_id=group, enable_auto_commit=False)
        self._parts = [TopicPartition(topic, p) for p in sorted(self._c.partitions_for_topic(topic) or [])]
        if not self._parts:
            self._c.close()
            raise RuntimeError(f"topic {topic!r} has no partitions (not created?)")

    def __call__(self) -> int:
        """Committed records now (offsets start at 0 in a fresh, non-transactional topic)."""
        return sum(self._c.committed(tp) or 0 for tp in self._parts)

    def close(self) -> None:
        """Close the consumer (it never joined the group: nothing to leave)."""
        self._c.close()


@dataclass
class Curve:
    """(seconds since start, value) each time a probe's value changed: the steps of a staircase."""

    total: int
    points: list[tuple[float, int]] = field(default_factory=list)

    def add(self, t: float, value: int) -> None:
        """Record ``value`` at ``t`` if it differs from the last one."""
        if not self.points or value != self.points[-1][1]:
            self.points.append((t, value))

    @property
    def last(self) -> int:
        """The latest value (0 before the first step)."""
        return self.points[-1][1] if self.points else 0

    def time_at(self, frac: float) -> float | None:
        """When the value first reached ``frac`` of total (None if it has not)."""
        return next((t for t, v in self.points if v >= frac * self.total), None)

    def rate(self, lo: float = 0.2, hi: float = 0.8) -> tuple[float | None, str]:
        """Records/s between ``lo`` and ``hi`` of total, the steps joined by straight lines, and how.

        Only the steps strictly between 0 and total are used when there are two of them ("interior"):
        the ramp to the first step holds the job's start-up, and the step to total holds the idle wait
        for the checkpoint after the last record, neither of them throughput. The range is clipped to
        the interior steps. With fewer interior steps the last step is used too ("with tail"): a lower
        bound. None when not even that is possible (a run shorter than two checkpoints).

        >>> c = Curve(100, [(0.0, 0), (10.0, 10), (20.0, 50), (30.0, 90), (45.0, 100)])
        >>> c.rate()  # 4/s between the steps at 10 and 90; the tail (10 records in 15 s) is left out
        (4.0, 'interior')
        >>> Curve(100, [(10.0, 30), (30.0, 100)]).rate()  # one interior step: 30 → 80 of the line to 100
        (3.5, 'with tail')
        """
        inner = [(t, v) for t, v in self.points if 0 < v < self.total]
        if len(inner) >= 2:
            r = self._slope(inner, max(lo * self.total, inner[0][1]), min(hi * self.total, inner[-1][1]))
            if r is not None:
                return r, "interior"
        pts = [(t, v) for t, v in self.points if v > 0]
        if len(pts) >= 2:
            r = self._slope(pts, max(lo * self.total, pts[0][1]), hi * self.total)
            if r is not None:
                return r, "with tail"
        return None, "too few checkpoints"

    @classmethod
    def _slope(cls, pts: list[tuple[float, int]], a: float, b: float) -> float | None:
        if b <= a:
            return None
        ta, tb = cls._interp(pts, a), cls._interp(pts, b)
        if ta is None or tb is None or tb <= ta:
            return None
        return round((b - a) / (tb - ta), 2)

    @staticmethod
    def _interp(pts: list[tuple[float, int]], target: float) -> float | None:
        if target <= pts[0][1]:
            return pts[0][0]
        for (t0, v0), (t1, v1) in zip(pts, pts[1:], strict=False):
            if v0 < target <= v1:
                return t0 + (target - v0) / (v1 - v0) * (t1 - t0)
        return None


@dataclass
class Probe:
    """A value to poll while the job runs, the total that means done, and how often to poll it."""

    name: str
    read: Callable[[], int]
    total: int
    every_s: float = 1.0


def job_status(client: Any) -> str:
    """The job's status name (RUNNING, FAILED, …) from a PyFlink JobClient."""
    return client.get_job_status().result().name


def failure_of(client: Any) -> str:
    """The job's failure cause as a short string (the execution result raises it)."""
    try:
        client.get_job_execution_result().result()
    except Exception as exc:  # noqa: BLE001 - any Java failure, reported verbatim
        lines = [ln for ln in str(exc).splitlines() if "Caused by" in ln or "Error" in ln or "Exception" in ln]
        return "\n".join(lines[-6:]) or str(exc)[-2000:]
    return "no failure recorded"


def watch(client: Any, label: str, probes: list[Probe], *, deadline_s: float, print_every_s: float = 5.0,
          t0: float | None = None, settle_s: float | None = None) -> dict[str, Curve]:
    """Poll ``probes`` until each reaches its total, the job stops, or ``deadline_s`` passes.

    ``settle_s``: once the first probe is done, the others get this long more (a secondary figure, such
    as rows landing in Cassandra, must not hold the run to the deadline).

    A job that leaves RUNNING early raises with its cause (restart attempts are bounded by the callers,
    so a broken start fails here instead of idling until the deadline); the deadline returns what was
    seen, with ``timed_out`` printed, so a slow job still gives a partial curve.
    """
    start = time.monotonic() if t0 is None else t0
    curves = {p.name: Curve(p.total) for p in probes}
    due = dict.fromkeys(curves, 0.0)
    last_print = -print_every_s
    first_done: float | None = None
    while True:
        now = time.monotonic() - start
        for p in probes:
            if now >= due[p.name] and curves[p.name].last < p.total:
                curves[p.name].add(time.monotonic() - start, p.read())
                due[p.name] = now + p.every_s
        if all(curves[p.name].last >= p.total for p in probes):
            print(f"[{label}] {now:6.1f}s  done: " + "  ".join(f"{p.name} {curves[p.name].last}/{p.total}"
                                                        for p in probes), flush=True)
            return curves
        if first_done is None and curves[probes[0].name].last >= probes[0].total:
            first_done = now
        if settle_s is not None and first_done is not None and now - first_done > settle_s:
            print(f"[{label}] {now:6.1f}s  stopped {settle_s:.0f}s after {probes[0].name} was done: "
                  + "  ".join(f"{p.name} {curves[p.name].last}/{p.total}" for p in probes), flush=True)
            return curves
        status = job_status(client)
        if status != "RUNNING" and status not in ("CREATED", "INITIALIZING", "RESTARTING"):
            raise RuntimeError(f"[{label}] job is {status} after {now:.0f}s:\n{failure_of(client)}")
        if now - last_print >= print_every_s:
            last_print = now
            print(f"[{label}] {now:6.1f}s  " + "  ".join(f"{p.name} {curves[p.name].last}/{p.total}"
                                                      for p in probes) + f"  ({status})", flush=True)
        if now > deadline_s:
            print(f"[{label}] timed out after {deadline_s:.0f}s", flush=True)
            return curves
        time.sleep(0.5)


def cancel(client: Any, timeout_s: float = 60) -> None:
    """Cancel the job unless it already stopped, and wait for the cancellation (bounded)."""
    try:
        if job_status(client) in TERMINAL:
            return
        client.cancel()
    except Exception as exc:  # noqa: BLE001 - a job that failed meanwhile cannot be cancelled: fine
        print(f"cancel: {exc.__class__.__name__}: {str(exc)[:200]}", flush=True)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if job_status(client) in TERMINAL:
                return
        except Exception:  # noqa: BLE001 - the per-job MiniCluster is gone once the job stopped
            return
        time.sleep(0.5)
    print(f"cancel: job still not stopped after {timeout_s:.0f}s", flush=True)


@contextmanager
def scratch_checkpoints(settings: Settings) -> Iterator[Settings]:
    """Settings whose checkpoints go to a fresh directory, removed afterwards.

    Why: the job retains checkpoints on cancellation (RETAIN_ON_CANCELLATION); a benchmark's would pile
    up in the shared checkpoint directory run after run.
    """
    root = settings.cache_dir / "bench-checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix="run-", dir=root)
    try:
        yield settings.model_copy(update={"checkpoint_dir": f"file://{path}"})
    finally:
        shutil.rmtree(path, ignore_errors=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on (they are only comparable within one machine and hour)."""
    return {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def stamp() -> dict[str, Any]:
    """Date, machine and command line for a result file."""
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
            "command": shlex.join([sys.executable, *sys.argv])}

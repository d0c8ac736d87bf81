"""CPU time per thread of the processes a benchmark drives: where the cores went, per event.

Why: on this 2-core machine events/s swings ±2× between runs, while the CPU seconds a stage spends per
event barely move. Linux keeps every thread's user+system time in ``/proc/<pid>/task/<tid>/stat``; Flink
names its task threads after their operator chain (``user-shards -> ...``) and, in thread mode, runs each
Python operator on that thread, so the difference of two snapshots says which stage used how much.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

_HZ = os.sysconf("SC_CLK_TCK")
#: Heads (Linux keeps 15 characters of a thread name) of the task chains whose work is Python.
STAGES = ("_stream_key_by_", "events-router", "user-shards", "item-shards", "vectors-to-inde", "index-shard", "gather")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def servers() -> dict[str, int]:
    """Pids of the local Kafka broker and Cassandra node, found by their main classes."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if "kafka.Kafka " in cmd:
                found["kafka"] = int(entry.name)
            elif "CassandraDaemon" in cmd:
                found["cassandra"] = int(entry.name)
    return found


def child_jvms(parent: int | None = None) -> list[int]:
    """Java processes started by ``parent`` (default: this process): the MiniCluster of an in-process job."""
    parent = os.getpid() if parent is None else parent
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and "java" in _cmdline(int(entry.name)):
            out.append(int(entry.name))
    return out


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    res: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return res
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        res[int(tid)] = (stat[stat.index("(") + 1 : stat.rindex(")")], (int(fields[11]) + int(fields[12])) / _HZ)
    return res


def _group(process: str, thread: str) -> str:
    if process != "job":
        return process
    if " -" in thread:  # a task thread: "<chain head> -> ...", its operators
        return f"job: {thread.split(' -', 1)[0]}"
    if "CompilerThre" in thread:
        return "job: JIT compiler"
    if re.match(r"(GC Thread|G1 )", thread):
        return "job: GC"
    return "job: other JVM threads"


@dataclass
class CpuShare:
    """Snapshots of named processes' thread CPU; `since` gives seconds per group since `start`."""

    pids: dict[str, int]
    _start: dict[str, dict[int, tuple[str, float]]] = field(default_factory=dict)

    def start(self) -> None:
        """Take the first snapshot."""
        self._start = {name: _threads(pid) for name, pid in self.pids.items()}

    def since(self) -> dict[str, float]:
        """CPU seconds per group (process, or stage of the job) since `start`, largest first."""
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            before = self._start.get(name, {})
            for tid, (thread, cpu) in _threads(pid).items():
                used = cpu - before.get(tid, (thread, 0.0))[1]
                key = _group(name, thread)
                out[key] = out.get(key, 0.0) + used
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def per_event_us(seconds: dict[str, float], events: int) -> dict[str, float]:
    """CPU microseconds per event of each group, plus the job's Python stages and everything together."""
    us = {k: round(v / events * 1e6, 1) for k, v in seconds.items()}
    us["job: Python stages"] = round(sum(v for k, v in seconds.items()
                                         if k.removeprefix("job: ") in STAGES) / events * 1e6, 1)
    us["all"] = round(sum(seconds.values()) / events * 1e6, 1)
    return us

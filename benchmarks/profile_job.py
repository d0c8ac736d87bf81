"""Where the job's time goes: a cProfile of the batch steps, and a GIL profile of the running job.

Why both: every Python operator of a thread-mode job runs in one embedded interpreter, so the job's
Python work is bounded by one core whatever the parallelism; the batch steps replayed alone
(`pipeline.batch_replay`) show the cost of the logic, the GIL profile of the live job (py-spy, threads
holding the GIL only) shows what the Flink adapters, the state conversions and the Cassandra driver add.

    .cache/venv/bin/python benchmarks/profile_job.py                 # replay only (no stack needed)
    .cache/venv/bin/python benchmarks/profile_job.py --job --seconds 20   # + the live job (`liverec infra up`)

Prints the top functions (inclusive share of samples or of CPU time) and writes
``benchmarks/results/profile_job.json``.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_data  # noqa: E402

from pipeline.batch_replay import replay  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402


def replay_profile(events: int, users: int, items: int, top: int) -> list[dict[str, Any]]:
    """cProfile of the batch steps over the benchmark's dataset: top functions by cumulative time."""
    stream = bench_data.make_stream(events, users, items, 0.01, 7)
    values = bench_data.event_values(stream)
    s = load_settings()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    out = replay(s, values)
    prof.disable()
    print(f"replay: {out['events']} events in {time.perf_counter() - t0:.1f} s under cProfile")
    stats = pstats.Stats(prof)
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, fn), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{fn} ({Path(file).name}:{line})", "cum_share": ct / total, "self_share": tt / total})
    rows.sort(key=lambda r: -r["self_share"])
    return rows[:top]


def _agg(raw: Path, top: int) -> list[dict[str, Any]]:
    tot: collections.Counter[str] = collections.Counter()
    n = 0
    for line in raw.read_text().splitlines():
        stack, cnt = line.rsplit(" ", 1)
        n += int(cnt)
        for frame in {re.sub(r"\s*\(/.*?/(site-packages|main)/", " (", f) for f in stack.split(";")}:
            tot[frame] += int(cnt)
    return [{"function": k, "share": v / n} for k, v in tot.most_common(top) if k]


def job_profile(events: int, users: int, items: int, seconds: float, top: int) -> list[dict[str, Any]]:
    """Start the job over a pre-produced backlog and record its GIL-holding threads with py-spy."""
    from pipeline.flink_env import stream_env
    from pipeline.jobs import liverec_job
    from pipeline.kafka_io import ensure_topics

    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        msg = f"{spy} is missing: bin/setup installs the dev dependencies (py-spy among them)"
        raise SystemExit(msg)
    s = load_settings(topic_prefix=f"prof{int(time.time())}-", checkpoint_interval_ms=10_000, restart_attempts=0)
    ensure_topics(s)
    bench_data.produce_all(s, bench_data.make_stream(events, users, items, 0.01, 7))
    env = stream_env(s)
    liverec_job.build(env, s)
    client = env.execute_async("profile")
    pid = next(p for p in _children(os.getpid()) if "java" in _cmd(p))
    raw = Path(tempfile.mkstemp(suffix=".txt")[1])
    try:
        time.sleep(15)  # past start-up and the first batches
        print(f"recording py-spy --gil on the job's JVM (pid {pid}) for {seconds:.0f} s")
        subprocess.run([str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "40", "--gil",
                        "-f", "raw", "-o", str(raw)], check=True, capture_output=True, timeout=seconds + 60)
    finally:
        threading.Thread(target=lambda: client.cancel().result(), daemon=True).start()
    return _agg(raw, top)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--job", action="store_true", help="also profile the live job (needs the local stack)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/profile_job.json")
    args = ap.parse_args()
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": {"nproc": os.cpu_count(),
                              "python": platform.python_version()}, "events": args.events, "users": args.users}
    result["replay_self_time"] = replay_profile(args.events, args.users, args.items, args.top)
    print("| batch steps (cProfile, self time) | share |\n|---|---|")
    for r in result["replay_self_time"]:
        print(f"| {r['function']} | {100 * r['self_share']:.1f}% |")
    if args.job:
        result["job_gil_inclusive"] = job_profile(args.events, args.users, args.items, args.seconds, args.top)
        print("| live job (py-spy --gil, inclusive) | share |\n|---|---|")
        for r in result["job_gil_inclusive"]:
            print(f"| {r['function']} | {100 * r['share']:.1f}% |")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

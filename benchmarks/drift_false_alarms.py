"""False alarms and detection delay of the drift monitor's pure logic (operators/drift/logic.py).

    python benchmarks/drift_false_alarms.py [--events 400000] [--windows 5000] [--data ../shared/data/movielens-100k]

Runs `step` (the same function the job's drift monitor calls) over:

1. ``generated``: a long stationary stream of `pipeline.generator.events` (2,000 users with favourite
   categories, uniform types and dwell, ~5 events/s of event time), its features built with
   `user_features` (the function the user stage calls); sessions by a 5 min gap, closed as the user
   stage closes them (the user's next event, or the watermark: newest event time - 5 s). ``user_norm``
   and ``served_score`` have no learner behind them here: they are drawn i.i.d. (gamma, normal) per batch,
   which measures the test machinery on continuous data. The job's settings (defaults: span-based
   windows, reference 10 min, current 5 min, 30 min warm-up).
2. ``shift``: the same stream, but from its middle (event time) on the type mix and the categories
   change as in tests/flink/test_drift_job.py, dwell halves and the two continuous draws move by half a
   standard deviation. Reports, per feature, the delay in event time from the shift to the end of the
   window that alerted, and alerts of features that did not change.
3. ``iid``: ``--windows`` count-based windows per feature (reference 2,000, current 1,000 samples) of i.i.d.
   draws shaped like each feature (codes, hashed categories, uniform dwell, Poisson counts, gamma,
   normal); once with the default rule and once with the effect-size floor off (``min_statistic`` 0:
   the Bonferroni p-value rule alone), to show what each part of the rule contributes.
4. ``movielens`` (when ``--data`` exists; read at run time, never copied): MovieLens-100K ratings as
   events, category = the item's first genre, sessions by a 30 min gap; once in time order (real
   drift and per-user bursts) and once with the timestamps shuffled over the ratings (stationary by
   construction, the real discrete marginals).

Prints a table and writes benchmarks/results/drift_false_alarms.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import platform
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.drift import features as F  # noqa: E402
from operators.drift.logic import DriftParams, WindowSpec, initial_state, step  # noqa: E402
from pipeline import generator  # noqa: E402
from pipeline.drift_params import drift_params  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from state_schemas.events import EVENT_TYPE_CODES  # noqa: E402
from state_schemas.feature_batch import FeatureSamples  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "drift_false_alarms.json"
START = 1_764_000_000_000
AFTER_TYPES = ("purchase", "add_to_cart", "add_to_cart", "click")
AFTER_CATEGORIES = ("garden", "toys")
MIN = 60_000


class Sessions:
    """Sessions by an event-time gap, closed as the user stage closes them: by the user's next event after
    the gap, or when the watermark passes the session's last event + gap (`close`)."""

    def __init__(self, gap_ms: int) -> None:
        self.gap = gap_ms
        self.open: dict[str, list[int]] = {}
        self.ends: list[tuple[int, str]] = []

    def add(self, user: str, ts: int) -> tuple[int, int, int] | None:
        s = self.open.get(user)
        if s is not None and ts - s[2] <= self.gap:
            s[0] += 1
            s[2] = max(s[2], ts)
            heapq.heappush(self.ends, (s[2] + self.gap, user))
            return None
        self.open[user] = [1, ts, ts]
        heapq.heappush(self.ends, (ts + self.gap, user))
        return None if s is None else (s[0], s[1], s[2])

    def close(self, watermark: int) -> list[tuple[int, int, int]]:
        out = []
        while self.ends and self.ends[0][0] <= watermark:
            end, user = heapq.heappop(self.ends)
            s = self.open.get(user)
            if s is not None and s[2] + self.gap == end:
                out.append((s[0], s[1], s[2]))
                del self.open[user]
        return out


def run(batches: Iterator[tuple], p: DriftParams, series: dict | None = None) -> dict:
    """Feed batches, count tests and alerts per feature; ``series`` collects every test per feature as
    [minutes since START at the batch's end, statistic, breach] (for the plot)."""
    state = initial_state(p)
    tests: Counter[str] = Counter()
    alerts: list = []
    for fb in batches:
        state, out = step(state, fb, p, now_ms=0)
        tests.update(t.feature for t in out.tests)
        alerts += out.alerts
        if series is not None and out.tests:
            end = max(f.end_ts for f in fb)
            for t in out.tests:
                series.setdefault(t.feature, []).append(
                    [round((end - START) / MIN, 2), round(float(t.statistic), 4), bool(t.breach)])
    return {"tests": dict(tests), "alerts": alerts}


def event_batches(events: list[dict], batch: int, rng: np.random.Generator, gap_ms: int,
                  shift_ts: int | None = None) -> Iterator[tuple]:
    """FeatureBatches of ``batch`` events each, as the user stage would send them (plus the two i.i.d. draws)."""
    sessions = Sessions(gap_ms)
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        closed = [c for e in chunk if (c := sessions.add(e["user_id"], e["ts"])) is not None]
        ts = [e["ts"] for e in chunk]
        closed += sessions.close(max(ts) - 5_000)  # the router's watermark: newest event time - 5 s
        after = shift_ts is not None and ts[0] >= shift_ts
        fb = F.user_features(
            types=[EVENT_TYPE_CODES[e["type"]] for e in chunk], ts=ts,
            dwell_ms=[e.get("dwell_ms") for e in chunk], categories=[e.get("category") for e in chunk],
            norms=rng.gamma(4.0, 0.5, len(chunk) // 3) + (0.5 if after else 0.0), sessions=closed)
        scores = rng.normal(0.5 if after else 0.0, 1.0, len(chunk) // 10)
        yield (*fb, FeatureSamples.from_array(F.SERVED_SCORE, ts[0], ts[-1], scores))


def generated(n: int, seed: int, *, shift: bool) -> tuple[list[dict], int | None]:
    half = n // 2 if shift else n
    a = generator.events(half, users=2000, seed=seed, start_ms=START, max_step_ms=400)
    evs = [json.loads(v) for _, v in a.records]
    if not shift:
        return evs, None
    shift_ts = a.max_ts + 1
    b = generator.events(n - half, users=2000, seed=seed + 1, start_ms=shift_ts, max_step_ms=400,
                         types=AFTER_TYPES, categories=AFTER_CATEGORIES)
    later = [json.loads(v) for _, v in b.records]
    for e in later:
        e["dwell_ms"] //= 2
    return evs + later, shift_ts


def summarize(name: str, res: dict, p: DriftParams, span_ms: int, shift_ts: int | None = None,
              shifted: tuple[str, ...] = (), t0: int = START) -> dict:
    by: dict[str, list] = defaultdict(list)
    for a in res["alerts"]:
        by[a.feature].append(a)
    rows = {}
    windows = sum(res["tests"].values())
    for f in p.features:
        n_tests, mine = res["tests"].get(f, 0), by.get(f, [])
        row: dict = {"windows": n_tests, "alerts": len(mine)}
        if mine:  # where the first few alerts were: current window in minutes of event time from the start
            row["first_alerts"] = [{"current_min": [round((a.current.start_ts - t0) / MIN, 1),
                                                    round((a.current.end_ts - t0) / MIN, 1)],
                                    "statistic": round(a.statistic, 3), "p_value": float(f"{a.p_value:.3g}")}
                                   for a in mine[:5]]
        if shift_ts is None:
            row["false_alarms_per_1000_windows"] = round(1000 * len(mine) / n_tests, 3) if n_tests else None
        else:
            before = [a for a in mine if a.current.end_ts < shift_ts]
            after = [a for a in mine if a.current.end_ts >= shift_ts]
            row["alerts_before_shift"] = len(before)
            row["alerts_after_shift"] = len(after)
            row["shifted"] = f in shifted
            if f in shifted and after:
                row["delay_min"] = round((after[0].current.end_ts - shift_ts) / MIN, 2)
                row["statistic"] = round(after[0].statistic, 3)
        rows[f] = row
    out = {"scenario": name, "event_time_h": round(span_ms / 3_600_000, 1), "windows": windows,
           "alerts": len(res["alerts"]), "features": rows}
    if shift_ts is None and windows:
        out["alerts_per_1000_windows"] = round(1000 * len(res["alerts"]) / windows, 3)
    return out


IID = {
    F.EVENT_TYPE: lambda r, n: r.choice([0, 0, 0, 1, 1, 2, 4], n).astype(np.float32),
    F.DWELL: lambda r, n: r.integers(0, 60_000, n).astype(np.float32),
    F.CATEGORY: lambda r, n: np.asarray([F.category_code(c) for c in r.choice(generator.CATEGORIES, n)], np.float32),
    F.SESSION_EVENTS: lambda r, n: (1 + r.poisson(1.2, n)).astype(np.float32),
    F.SESSION_MS: lambda r, n: np.where(r.random(n) < 0.5, 0, r.exponential(200_000, n)).astype(np.float32),
    F.USER_NORM: lambda r, n: r.gamma(4.0, 0.5, n).astype(np.float32),
    F.SERVED_SCORE: lambda r, n: r.normal(0, 1, n).astype(np.float32),
}


def iid(windows: int, seed: int, p: DriftParams) -> dict:
    r = np.random.default_rng(seed)
    per = 1_000

    def batches() -> Iterator[tuple]:
        total = p.reference.samples + windows * p.current.samples
        for i in range(0, total, per):
            yield tuple(FeatureSamples.from_array(f, START + i, START + i + per - 1, draw(r, per))
                        for f, draw in IID.items())

    return run(batches(), p)


def movielens(data: Path, shuffle: bool, seed: int) -> tuple[list[dict], int]:
    genres = [line.split("|")[0] for line in (data / "u.genre").read_text(encoding="latin-1").splitlines() if line]
    first: dict[str, str] = {}
    for line in (data / "u.item").read_text(encoding="latin-1").splitlines():
        cols = line.split("|")
        flags = [i for i, v in enumerate(cols[5:]) if v == "1"]
        first[cols[0]] = genres[flags[0]] if flags else "unknown"
    rows = np.loadtxt(data / "u.data", dtype=np.int64)
    ts = np.sort(rows[:, 3]) if shuffle else rows[:, 3]
    if shuffle:
        rows = rows[np.random.default_rng(seed).permutation(len(rows))]
    else:
        rows = rows[np.argsort(rows[:, 3], kind="stable")]
        ts = rows[:, 3]
    evs = [{"user_id": str(u), "type": "rate", "ts": int(t) * 1000, "category": first[str(i)]}
           for (u, i, _r, _), t in zip(rows.tolist(), ts.tolist(), strict=True)]
    return evs, int(ts[-1] - ts[0]) * 1000


def table(results: list[dict]) -> None:
    feats = list(F.FEATURES)
    print(f"{'scenario':34s}" + "".join(f"{f[:12]:>14s}" for f in feats) + f"{'all':>14s}")
    for r in results:
        cells = []
        for f in feats:
            row = r["features"].get(f)
            if row is None or not row["windows"]:
                cells.append("-")
            elif row.get("shifted"):
                cells.append(f"{row['delay_min']} min" if "delay_min" in row else "missed")
            else:
                cells.append(f"{row['alerts']}/{row['windows']}")
        total = f"{r['alerts']}/{r['windows']}"
        print(f"{r['scenario'][:34]:34s}" + "".join(f"{c:>14s}" for c in cells) + f"{total:>14s}")
    print("cells: alerts / windows tested; for shifted features, event time from the shift to the end of the "
          "window that alerted")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--windows", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/movielens-100k")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    t0 = time.perf_counter()
    p = drift_params(load_settings())  # the job's settings (defaults unless LIVEREC_DRIFT_* are set)
    rng = np.random.default_rng(args.seed)
    results = []

    evs, _ = generated(args.events, args.seed, shift=False)
    span = evs[-1]["ts"] - evs[0]["ts"]
    res = run(event_batches(evs, 200, rng, 5 * MIN), p)
    results.append(summarize("generated, stationary", res, p, span))

    evs, shift_ts = generated(args.events, args.seed + 100, shift=True)
    series: dict = {}
    res = run(event_batches(evs, 200, rng, 5 * MIN, shift_ts), p, series)
    results.append({**summarize("generated, shift at the middle", res, p, evs[-1]["ts"] - evs[0]["ts"], shift_ts,
                                (F.EVENT_TYPE, F.CATEGORY, F.DWELL, F.USER_NORM, F.SERVED_SCORE)),
                    "series": series, "shift_min": round((shift_ts - START) / MIN, 2)})

    counted = replace(p, reference=WindowSpec(2_000, 0, 2_000), current=WindowSpec(1_000, 0, 1_000), warmup_ms=0)
    for name, q in (("iid, default rule", counted), ("iid, p-value rule alone", replace(counted, min_statistic=0.0))):
        res = iid(args.windows, args.seed, q)
        results.append(summarize(name, res, q, 0))

    if (args.data / "u.data").exists():
        ml_p = replace(p, features=(F.CATEGORY, F.SESSION_EVENTS, F.SESSION_MS))
        for shuffle in (False, True):
            evs, span = movielens(args.data, shuffle, args.seed)
            batches = event_batches(evs, 200, rng, 30 * MIN)
            res = run((tuple(f for f in fb if f.name in ml_p.features) for fb in batches), ml_p)
            results.append(summarize(f"movielens, {'timestamps shuffled' if shuffle else 'time order'}", res,
                                     ml_p, span, t0=evs[0]["ts"]))

    table(results)
    doc = {
        "what": "drift monitor false alarms and detection delay, pure logic (benchmarks/drift_false_alarms.py)",
        "measured": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "python": platform.python_version(),
        "params": asdict(p), "events": args.events, "iid_windows": args.windows, "seed": args.seed,
        "seconds": round(time.perf_counter() - t0, 1), "results": results,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} in {doc['seconds']} s")
    from pipeline.plots import plot_result

    print(f"wrote {plot_result(args.out, 'drift_false_alarms')}")


if __name__ == "__main__":
    main()

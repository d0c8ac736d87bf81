"""`liverec eval-pipeline`: replay a dataset through Kafka → the job → the index, and score it online.

The job's own online evaluation does the scoring (test-then-learn inside the user stage and the index
operator, `operators.profile.flink` / `operators.serving.flink`); this command only feeds the events
and reads the `evaluations` topic. The protocol is the offline evaluator's (`pipeline.eval_offline`):
an event is evaluated when its user has history, has not interacted with the item before and the item
is known; recall@k = hits / evaluated events, over all events and over the last 50% of the stream;
the most-popular baseline is scored by the job on the same evaluated events.

Replay details: every event goes to partition 0 of the events topic (so the job sees the file's order,
as the offline replay does) under a topic prefix of its own (a clean, isolated run); timestamps are
shifted so the last event is one hour ago (their spacing is kept: sessions and popularity decay see
the real gaps); every rating is a ``view`` (weight 1, as offline).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.errors import LiverecError
from pipeline.eval_offline import Events, load_events
from pipeline.interactions import ReadOptions
from pipeline.settings import Settings

SERIES_WINDOW = 5_000  # evaluated events per point of the windowed recall in the JSON (and its plot)


@dataclass(slots=True)
class Tally:
    """Hits and evaluated events, all and last half, for the model and the baseline."""

    half: int
    evaluated: int = 0
    hits: int = 0
    base_hits: int = 0
    evaluated_l50: int = 0
    hits_l50: int = 0
    base_hits_l50: int = 0
    records: int = 0
    seen: set[str] = field(default_factory=set)
    outcomes: list[tuple[int, bool, bool]] = field(default_factory=list)  # (event index, hit, baseline hit)

    def add(self, rec: dict[str, object]) -> None:
        """Count one evaluations-topic record (a repeated event id would be a duplicate: counted once)."""
        eid = str(rec["event_id"])
        if eid in self.seen:
            return
        self.seen.add(eid)
        self.records += 1
        if not rec["evaluated"]:
            return
        t = int(eid.rsplit("-", 1)[1])
        late = t >= self.half
        self.outcomes.append((t, bool(rec["hit"]), bool(rec["baseline_hit"])))
        self.evaluated += 1
        self.hits += bool(rec["hit"])
        self.base_hits += bool(rec["baseline_hit"])
        if late:
            self.evaluated_l50 += 1
            self.hits_l50 += bool(rec["hit"])
            self.base_hits_l50 += bool(rec["baseline_hit"])


def windowed(outcomes: list[tuple[int, bool, bool]], window: int = SERIES_WINDOW) -> list[dict[str, float]]:
    """Recall@k of the model and of most-popular per ``window`` evaluated events, in the replay's event order.

    Why: the totals hide how the learner gets there; a window shows the cold start, and whether the
    model stays above the baseline as the stream goes on. The last window may be shorter.

    >>> for w in windowed([(0, True, False), (1, False, False), (5, True, True)], window=2):
    ...     print(w)
    {'events_to': 1, 'evaluated': 2, 'recall': 0.5, 'most_popular': 0.0}
    {'events_to': 5, 'evaluated': 3, 'recall': 1.0, 'most_popular': 1.0}
    """
    ordered = sorted(outcomes)
    out = []
    for i in range(0, len(ordered), window):
        chunk = ordered[i : i + window]
        out.append({"events_to": chunk[-1][0], "evaluated": i + len(chunk),
                    "recall": round(sum(h for _, h, _ in chunk) / len(chunk), 4),
                    "most_popular": round(sum(b for _, _, b in chunk) / len(chunk), 4)})
    return out


def expected_queries(events: Events) -> int:
    """How many evaluation records the job must emit: events of users with history on unseen items."""
    seen: dict[int, set[int]] = {}
    n = 0
    for u, i in zip(events.users.tolist(), events.items.tolist(), strict=True):
        s = seen.setdefault(u, set())
        n += bool(s) and i not in s
        s.add(i)
    return n


def records(events: Events, now_ms: int, run: str) -> list[tuple[bytes, bytes]]:
    """Event JSON records of the replay (ids prefixed by the run, times shifted to end an hour ago)."""
    shift = now_ms - 3_600_000 - int(events.ts.max()) * 1000
    out = []
    for t, (u, i, ts) in enumerate(zip(events.users.tolist(), events.items.tolist(), events.ts.tolist(), strict=True)):
        doc = {"event_id": f"{run}ml-{t}", "user_id": f"{run}u{u}", "item_id": f"m{i}", "type": "view",
               "ts": int(ts) * 1000 + shift}
        out.append((doc["user_id"].encode(), json.dumps(doc, separators=(",", ":")).encode()))
    return out


def run(settings: Settings, data: Path, *, limit: int, timeout_s: float, console: Console,
        json_out: Path | None = None, options: ReadOptions | None = None) -> Tally:
    """Replay, wait for every evaluation record, print the table; return the tally."""
    from pipeline.flink_env import stream_env
    from pipeline.infra import stack
    from pipeline.jobs import liverec_job
    from pipeline.kafka_io import consumer, ensure_topics, producer, seek_from

    events = load_events(data, options).head(limit)
    now_ms = int(time.time() * 1000)
    run_id = f"ep{now_ms // 1000 % 10_000_000}-"
    # rehydrate off: the figure is learning from nothing, and the item ids (m<n>) are the same in every run, so
    # item_vectors rows of earlier runs would seed this one (measured: 0.1879 with them against 0.2077 before)
    s = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{run_id}", "rehydrate": False})
    console.rule("[bold]liverec eval-pipeline")
    stack.up(s, log=lambda m: console.print(f"  {m}"))
    ensure_topics(s)
    want = expected_queries(events)
    console.print(f"  {len(events)} events of {events.source}; the job must score {want} of them; topics {run_id}*")
    out = producer(s, acks="all", enable_idempotence=True, linger_ms=20)
    for key, value in records(events, now_ms, run_id):
        out.send(s.topic("events"), key=key, value=value, partition=0)
    out.flush()
    out.close()

    env = stream_env(s)
    liverec_job.build(env, s)
    client = env.execute_async(f"{s.job_name}-eval")
    tally = Tally(half=len(events) // 2)
    reader = consumer(s, isolation_level="read_committed", enable_auto_commit=False)
    seek_from(reader, s.topic("evaluations"), None)
    t0 = last = time.monotonic()
    try:
        while tally.records < want:
            for batch in reader.poll(timeout_ms=500, max_records=20_000).values():
                for r in batch:
                    tally.add(json.loads(r.value))
            elapsed = time.monotonic() - t0
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                rate = tally.hits / tally.evaluated if tally.evaluated else 0.0
                console.print(f"  {elapsed:6.0f}s  scored {tally.records:>6}/{want}  "
                              f"({tally.records / elapsed:,.0f}/s)  recall@{s.eval_k} so far {rate:.4f}",
                              highlight=False)
            status = str(client.get_job_status().result())
            if status in ("FAILED", "CANCELED", "FINISHED"):
                msg = f"eval-pipeline: the job is {status}; see the Flink log in {s.cache_dir / 'logs/flink'}"
                raise LiverecError(msg)
            if elapsed > timeout_s:
                msg = (f"eval-pipeline: only {tally.records} of {want} evaluation records after {timeout_s:.0f}s; "
                       f"raise --timeout or check the Flink log in {s.cache_dir / 'logs/flink'}")
                raise LiverecError(msg)
    finally:
        reader.close()
        client.cancel().result()
    wall = time.monotonic() - t0
    _table(console, tally, s.eval_k, len(events), events.source, wall)
    if json_out is not None:
        doc = _payload(tally, s, len(events), events.source, wall)
        doc["topic_prefix"] = s.topic_prefix  # its evaluations topic holds every outcome behind these figures
        doc["measured"] = time.strftime("%Y-%m-%d")
        Path(json_out).write_text(json.dumps(doc, indent=2) + "\n")
        _plot(Path(json_out), console)
    return tally


def _plot(json_out: Path, console: Console) -> None:
    """The windowed recall as a PNG next to the JSON (matplotlib is a dev dependency: skipped without it)."""
    from pipeline import plots

    try:
        png = plots.plot_result(json_out, "eval_pipeline")
    except ImportError as exc:
        console.print(f"  no plot: {exc} (pip install matplotlib)")
        return
    console.print(f"  wrote {json_out} and {png}")


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _payload(t: Tally, s: Settings, n: int, source: str, wall: float) -> dict[str, object]:
    return {
        "protocol": "online test-then-learn inside the job (user stage + index operator), offline rules",
        "data": source, "events": n, "k": s.eval_k, "wall_seconds": round(wall, 1),
        "settings": {"embedding_dim": s.embedding_dim, "negatives": s.negatives, "model_seed": s.model_seed,
                     "index_candidates": s.index_candidates, "index_shards": s.index_shards,
                     "personalize_after_events": s.personalize_after_events, "session_weight": s.session_weight,
                     "checkpoint_interval_ms": s.checkpoint_interval_ms, "item_flush_ms": s.item_flush_ms,
                     "batch_ms": s.batch_ms, "user_shards": s.user_shards, "item_shards": s.item_shards},
        "evaluated": t.evaluated, "evaluated_last_half": t.evaluated_l50,
        "pipeline": {"recall": _ratio(t.hits, t.evaluated), "recall_last_half": _ratio(t.hits_l50, t.evaluated_l50)},
        "most-popular": {"recall": _ratio(t.base_hits, t.evaluated),
                         "recall_last_half": _ratio(t.base_hits_l50, t.evaluated_l50)},
        "series_window": SERIES_WINDOW, "series": windowed(t.outcomes),
    }


def _table(console: Console, t: Tally, k: int, n: int, source: str, wall: float) -> None:
    table = Table(title=f"pipeline recall@{k} (online, through Kafka → job → index), {n} events", caption=source)
    for col in ("model", f"R@{k}", f"R@{k} l50", "x pop", "evaluated"):
        table.add_column(col, justify="left" if col == "model" else "right")
    base, base50 = _ratio(t.base_hits, t.evaluated), _ratio(t.base_hits_l50, t.evaluated_l50)
    model, model50 = _ratio(t.hits, t.evaluated), _ratio(t.hits_l50, t.evaluated_l50)
    table.add_row("pipeline (blend via index)", f"{model:.4f}", f"{model50:.4f}",
                  f"{model / base:.2f}" if base else "-", str(t.evaluated))
    table.add_row("most-popular (same run)", f"{base:.4f}", f"{base50:.4f}", "1.00", str(t.evaluated))
    console.print(table)
    console.print(f"wall {wall:.0f} s for the job to score {t.records} events ({t.evaluated} evaluated)",
                  highlight=False)


def run_batched(settings: Settings, data: Path, *, limit: int, console: Console, batch_size: int = 1_000,
                json_out: Path | None = None, options: ReadOptions | None = None) -> Tally:
    """The same replay through the job's batch steps in this process (no Flink, Kafka or Cassandra).

    Same records, same steps, same scoring as `run`: what the job computes when each batch holds
    ``batch_size`` records and the item feedback keeps up (`pipeline.batch_replay`).
    """
    from pipeline.batch_replay import replay

    events = load_events(data, options).head(limit)
    now_ms = int(time.time() * 1000)
    run_id = "ob-"
    recs = records(events, now_ms, run_id)
    s = settings.model_copy(update={"online_eval_percent": 100})
    tally = Tally(half=len(events) // 2)
    console.rule("[bold]liverec eval-offline --batched")
    console.print(f"  {len(events)} events of {events.source} through the job's batch steps, {batch_size} a batch")
    t0 = time.monotonic()
    out = replay(s, [v for _, v in recs], batch_size=batch_size,
                 on_outcome=lambda o: tally.add(json.loads(o.to_json())))
    wall = time.monotonic() - t0
    _table(console, tally, s.eval_k, len(events), events.source, wall)
    console.print(f"  batch replay: {out['events']} events in {out['seconds']} s ({out['events_per_s']:,.0f}/s)",
                  highlight=False)
    if json_out is not None:
        doc = _payload(tally, s, len(events), events.source, wall)
        doc["protocol"] = f"the job's batch steps in one process, {batch_size} records a batch (pipeline.batch_replay)"
        Path(json_out).write_text(json.dumps(doc, indent=2) + "\n")
        _plot(Path(json_out), console)
    return tally

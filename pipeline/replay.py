"""`liverec replay`: send an interaction file's events to the `events` topic in timestamp order, paced.

Every event goes through the job's own validation (`operators.events.logic.validate`, with the job's
size, clock-skew and oldest-timestamp settings and the wall clock as ``now``) before it is sent: a
row the job would dead-letter is counted by its reason here and not sent, so what reaches the topic
is what the job will use.

The whole file is read into memory and sorted (stable: rows with the same timestamp keep file order)
before the first event is sent; files larger than memory are not supported. Records are keyed by
``user_id`` (one user's events stay in one partition, in order) and carry the broker's clock as their
Kafka timestamp, not the event time: old event times as record timestamps would be deleted by
retention at once, or refused by the broker.

Pacing: ``rate`` sends at most that many rows per second on average; ``speedup`` keeps the file's
gaps between event times, divided by it (1 = real time); both together follow the gaps, never faster
than the rate; neither: as fast as the producer goes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from operators.events.logic import Rejection, validate
from pipeline.errors import ConfigError, InfraError
from pipeline.interactions import Interactions, ReadOptions, ReadReport, Row, RowProblem
from pipeline.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

# rows/s when no pacing option is given: a pace to watch a live job follow (on the 2-core development machine
# the job keeps up with it and live traffic beside it), not a flood of a shared broker by a forgotten flag
DEFAULT_RATE = 1_000.0
_PROGRESS_EVERY = 512  # rows between progress-bar updates (an update costs a lock and a redraw check)
_LOG_EVERY_S = 10.0  # a plain progress line this often when the console is not a terminal


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast to send: ``rate`` rows/s on average and/or ``speedup`` × the file's own pace; None: no limit."""

    rate: float | None = DEFAULT_RATE
    speedup: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            msg = f"--rate must be > 0 rows per second, got {self.rate}; for no limit pass --as-fast-as-possible"
            raise ConfigError(msg)
        if self.speedup is not None and not self.speedup > 0:
            msg = f"--speedup must be > 0 (1 = the file's own pace, 60 = an hour a minute), got {self.speedup}"
            raise ConfigError(msg)

    @classmethod
    def from_cli(cls, rate: float | None, speedup: float | None, as_fast_as_possible: bool) -> Pacing:
        """Pacing of the CLI flags; ``--as-fast-as-possible`` excludes the other two."""
        if as_fast_as_possible:
            if rate is not None or speedup is not None:
                msg = "--as-fast-as-possible cannot go with --rate or --speedup; pass one way of pacing"
                raise ConfigError(msg)
            return cls(rate=None, speedup=None)
        if rate is None and speedup is None:
            return cls()
        return cls(rate=rate, speedup=speedup)

    def describe(self) -> str:
        """How it reads in the replay's header line."""
        parts = []
        if self.speedup is not None:
            parts.append(f"event-time gaps / {self.speedup:g}")
        if self.rate is not None:
            parts.append(f"at most {self.rate:,.0f} rows/s" if parts else f"{self.rate:,.0f} rows/s")
        return ", ".join(parts) or "as fast as possible"


class Pacer:
    """When each row is due, in seconds of a monotonic clock; pure, so it is tested without sleeping.

    Event time counts from the first row asked about (``first_ts_ms`` when given): the first row *sent*,
    so an early row that validation refuses does not hold the rest back.

    >>> p = Pacer(Pacing(rate=2.0, speedup=None), start=100.0)
    >>> [p.due(ts) for ts in (0, 0, 0)]
    [100.0, 100.5, 101.0]
    >>> p = Pacer(Pacing(rate=None, speedup=10.0), start=0.0)
    >>> [p.due(ts) for ts in (1_000, 21_000, 21_000)]
    [0.0, 2.0, 2.0]
    """

    def __init__(self, pacing: Pacing, start: float, first_ts_ms: int | None = None) -> None:
        self.pacing = pacing
        self.start = start
        self.first_ts_ms = first_ts_ms
        self._interval = 0.0 if pacing.rate is None else 1.0 / pacing.rate
        self._last: float | None = None

    def due(self, ts_ms: int) -> float:
        """The time the next row (event time ``ts_ms``) should go; rows must come in timestamp order."""
        if self.first_ts_ms is None:
            self.first_ts_ms = ts_ms
        at = self.start
        if self.pacing.speedup is not None:
            at += (ts_ms - self.first_ts_ms) / 1000.0 / self.pacing.speedup
        if self._last is not None:
            at = max(at, self._last + self._interval)
        self._last = at
        return at


@dataclass(slots=True)
class ReplayResult:
    """Counts of one replay: what the reader made of the file, what validation refused, what was sent."""

    topic: str
    read: ReadReport
    to_send: int = 0  # events that passed validation
    handed: int = 0  # given to the producer
    acked: int = 0  # acknowledged by the broker (acks=all)
    failed: Counter[str] = field(default_factory=Counter)  # send errors by exception name
    rejected: Counter[str] = field(default_factory=Counter)  # validation rejections by reason
    examples: dict[str, list[RowProblem]] = field(default_factory=dict)
    shifted_ms: int = 0
    read_seconds: float = 0.0
    send_seconds: float = 0.0
    dry_run: bool = False

    @property
    def rows_per_s(self) -> float:
        """Rows acknowledged (validated, for a dry run) per second of sending."""
        done = self.to_send if self.dry_run else self.acked
        return done / self.send_seconds if self.send_seconds > 0 else 0.0

    def reject(self, line: int, reason: str, detail: str) -> None:
        """Count a validation rejection, keeping the first examples as the reader does."""
        self.rejected[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.read.max_examples:
            kept.append(RowProblem(line, reason, detail))


def load(data: Interactions, *, limit: int = 0, on_row: Callable[[int], None] | None = None) -> list[Row]:
    """Every event of the file, sorted by timestamp (stable); the first ``limit`` of them when limit > 0."""
    rows = []
    for n, row in enumerate(data.rows(), start=1):
        rows.append(row)
        if on_row is not None and n % 4096 == 0:
            on_row(n)
    rows.sort(key=lambda r: r.event["ts"])
    return rows[:limit] if limit > 0 else rows


def validated(
    rows: Iterable[Row], settings: Settings, result: ReplayResult, *, now_ms: Callable[[], int]
) -> Iterable[tuple[Row, bytes]]:
    """Each row's record value, when the job's validator accepts it at the current wall clock."""
    for row in rows:
        value = json.dumps(row.event, separators=(",", ":"), ensure_ascii=False).encode()
        verdict = validate(value, now_ms=now_ms(), max_bytes=settings.max_event_bytes,
                           max_skew_ms=settings.max_clock_skew_ms, min_ts_ms=settings.min_event_ts_ms)
        if isinstance(verdict, Rejection):
            result.reject(row.line, str(verdict.reason), verdict.detail)
            continue
        result.to_send += 1
        yield row, value


def replay(
    settings: Settings,
    path: Path,
    options: ReadOptions,
    *,
    pacing: Pacing,
    console: Console,
    limit: int = 0,
    shift_to_now: bool = False,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> ReplayResult:
    """Read, sort, validate and send the file's events; print progress and a final table; return the counts."""
    topic = settings.topic("events")
    data = Interactions(path, options)
    console.print(f"[bold]replay[/] {data.path} → {topic} at {settings.kafka_bootstrap}", highlight=False)
    console.print(f"  layout: {data.layout.describe()}", highlight=False)
    if limit < 0:
        msg = f"--limit must be >= 0 (0 = every row), got {limit}"
        raise ConfigError(msg)

    t0 = clock()
    with _progress(console, "reading", total=None) as bar:
        rows = load(data, limit=limit, on_row=bar)
    result = ReplayResult(topic, data.report, read_seconds=clock() - t0, dry_run=dry_run)
    if rows and shift_to_now:
        result.shifted_ms = wall_ms() - rows[-1].event["ts"]
        for row in rows:
            row.event["ts"] += result.shifted_ms
    paced = "none (dry run)" if dry_run else pacing.describe()
    console.print(f"  read {data.report.rows:,} rows in {result.read_seconds:.1f} s: {len(rows):,} events to "
                  f"validate, {data.report.rejected_total:,} rows rejected by the reader; pacing: {paced}"
                  + (f"; times shifted by {result.shifted_ms / 86_400_000:+,.2f} days" if shift_to_now else ""),
                  highlight=False)

    producer = None if dry_run else _producer(settings, topic)
    t1 = clock()
    pacer = Pacer(pacing, start=t1)
    limited = not dry_run and (pacing.rate is not None or pacing.speedup is not None)
    try:
        with _progress(console, "sending" if producer else "validating", total=len(rows)) as bar:
            for n, (row, value) in enumerate(validated(rows, settings, result, now_ms=wall_ms), start=1):
                if limited:
                    delay = pacer.due(row.event["ts"]) - clock()
                    if delay > 0.0005:
                        sleep(delay)
                if producer is not None:
                    _send(producer, topic, row, value, result)
                if n % _PROGRESS_EVERY == 0:
                    bar(result.to_send + result.rejected.total())
            bar(len(rows))
            if producer is not None:
                _flush(producer, console)
    finally:
        if producer is not None:
            producer.close(timeout=30)
    result.send_seconds = clock() - t1
    print_result(console, result)
    return result


def _producer(settings: Settings, topic: str) -> Any:
    from kafka.errors import KafkaError

    from pipeline.kafka_io import partitions_of, producer

    if not partitions_of(settings, topic):
        msg = (f"replay: no topic {topic!r} at {settings.kafka_bootstrap} (or the broker does not answer); "
               "start the local stack with `liverec infra up`, or create the topics with `liverec infra init`")
        raise InfraError(msg)
    try:
        # acks=all + idempotence: a retried batch is not written twice; larger batches for throughput
        return producer(settings, acks="all", enable_idempotence=True, linger_ms=20, batch_size=256 * 1024)
    except KafkaError as exc:
        msg = f"replay: cannot connect a producer to {settings.kafka_bootstrap} ({exc}); check `liverec infra status`"
        raise InfraError(msg) from exc


def _flush(producer: Any, console: Console) -> None:
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=120)
    except KafkaError as exc:  # counted as "not confirmed" in the table
        console.print(f"[red]  the broker did not confirm every record within 120 s ({exc})[/]")


def _send(producer: Any, topic: str, row: Row, value: bytes, result: ReplayResult) -> None:
    from kafka.errors import KafkaError

    def ok(_meta: object) -> None:
        result.acked += 1

    def failed(exc: BaseException) -> None:
        result.failed[type(exc).__name__] += 1

    result.handed += 1
    try:
        future = producer.send(topic, key=row.event["user_id"].encode(), value=value)
    except KafkaError as exc:  # e.g. a full buffer for max_block_ms, or a record over the broker's limit
        failed(exc)
        return
    future.add_callback(ok)
    future.add_errback(failed)


class _progress:  # noqa: N801 - used as a function: `with _progress(...) as update`
    """A rich bar (rows, rows/s, ETA) on a terminal; a plain line every 10 s otherwise (logs, CI)."""

    def __init__(self, console: Console, label: str, total: int | None) -> None:
        self.console, self.label, self.total = console, label, total
        self._bar: Any = None
        self._task: Any = None
        self._started = self._last_log = time.monotonic()

    def __enter__(self) -> Callable[[int], None]:
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task: Any) -> Text:
                    return Text(f"{task.speed or 0:,.0f} rows/s")

            columns: list[Any] = [TextColumn(f"  {self.label}")]
            if self.total is None:
                columns += [SpinnerColumn(), TextColumn("{task.completed:,.0f} rows")]
            else:
                columns += [BarColumn(), MofNCompleteColumn()]
            columns += [RateColumn(), TimeElapsedColumn()]
            if self.total is not None:
                columns += [TextColumn("ETA"), TimeRemainingColumn()]
            self._bar = Progress(*columns, console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self.update

    def update(self, done: int) -> None:
        """Show ``done`` rows so far."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            rate = done / (now - self._started)
            of = f"/{self.total:,}" if self.total is not None else ""
            eta = (f", ETA {(self.total - done) / rate:,.0f} s" if self.total is not None and rate > 0 else "")
            self.console.print(f"  {self.label} {done:,}{of} rows, {rate:,.0f} rows/s{eta}", highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_result(console: Console, result: ReplayResult) -> None:
    """The final table: rows read, rejected by the reader and by validation (by reason), sent, failed."""
    from rich import box
    from rich.table import Table

    rep = result.read
    table = Table(title=f"replay of {Path(rep.path).name}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("rows", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_row("data rows in the file", f"{rep.rows:,}")
    if rep.blank_lines:
        table.add_row("blank lines (not rows)", f"{rep.blank_lines:,}")
    for reason, n in sorted(rep.rejected.items()):
        table.add_row(f"rejected by the reader: {reason}", f"{n:,}")
    for reason, n in sorted(result.rejected.items()):
        table.add_row(f"rejected by validation: {reason}", f"{n:,}")
    if result.dry_run:
        table.add_row("[bold]would be sent (dry run)[/]", f"{result.to_send:,}")
    else:
        table.add_row(f"[bold]sent to {result.topic} (acknowledged)[/]", f"{result.acked:,}")
        for name, n in sorted(result.failed.items()):
            table.add_row(f"[red]failed to send: {name}[/]", f"{n:,}")
        unconfirmed = result.handed - result.acked - result.failed.total()
        if unconfirmed:
            table.add_row("[red]sent, not confirmed by the broker[/]", f"{unconfirmed:,}")
    console.print(table)
    for examples in (*rep.examples.values(), *result.examples.values()):
        for problem in examples:
            console.print(f"  {problem}", highlight=False, markup=False)
    done = "validated" if result.dry_run else "sent"
    console.print(f"  {done} in {result.send_seconds:.1f} s ({result.rows_per_s:,.0f} rows/s); "
                  f"read in {result.read_seconds:.1f} s", highlight=False)

"""Flink adapter of the events router (`operators.events.router`): windows of raw records in, user-shard batches out.

Input: one Row per ~``batch_ms`` of processing time from the Table-API window over the events and
requests topics: ``(values, topics, partitions, offsets)`` arrays. Keyed by a constant (one router:
it must see every partition to compute the watermark), so it can keep a processing-time tick that
lets idle partitions release the watermark when no records come. Output: ``(user shard key,
RecordBatch)`` on the main output; dead letters (JSON, with reason and source coordinates) on the
`DEAD_LETTERS` side output. Nothing raises for bad input, so one bad record never restarts the job.
"""

from __future__ import annotations

import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext

from operators.events.logic import Reason
from operators.events.router import Progress, Routed, RouterParams, route, shard_records
from operators.metrics import Level

DEAD_LETTERS = OutputTag("dead-letters", Types.PRIMITIVE_ARRAY(Types.BYTE()))
SHARD_BATCH_TYPE = Types.TUPLE([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
ROUTER_KEY = "router"


def shard_key(shard: int) -> str:
    """Key of the records bound for user shard ``shard``."""
    return f"u{shard}"


class EventsRouter(KeyedProcessFunction):  # type: ignore[misc]
    """Row(values[], topics[], partitions[], offsets[]) → (user shard key, RecordBatch) | dead letters."""

    def __init__(self, params: RouterParams, tick_ms: int = 500) -> None:
        self.params = params
        self.tick_ms = tick_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.progress = Progress(started_ms=int(time.time() * 1000))
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.valid = group.counter("events_valid")
        self.valid_requests = group.counter("requests_valid")
        self.already_answered = group.counter("requests_already_answered")
        self.dead = group.counter("dead_letters")
        self.batches = group.counter("router_batches")
        self.by_reason = {r: group.add_group("reason", r.value).counter("dead_letters") for r in Reason}
        self.rate = group.meter("events_per_second", 60)  # valid events, averaged over the last minute
        self.lag = Level(group.counter("watermark_lag_ms"))  # a level, not a gauge: operators/metrics.py

    def process_element(self, row: Any, ctx: KeyedProcessFunction.Context) -> Any:
        now = int(time.time() * 1000)
        routed = route(self.progress, list(row[0]), list(row[1]), list(row[2]), list(row[3]),
                       now_ms=now, params=self.params)
        self.batches.inc()
        self.valid.inc(routed.events)
        self.rate.mark_event(routed.events)
        self.valid_requests.inc(routed.requests)
        self.already_answered.inc(routed.already_answered)
        for reason, n in routed.dead_by_reason.items():
            self.dead.inc(n)
            self.by_reason[reason].inc(n)
        for dl in routed.dead_letters:
            yield DEAD_LETTERS, dl
        previous = self.progress.watermark
        yield from self._emit(routed, self.progress.advance(now, self.params), previous)
        self._lag(now)
        # Aligned ticks: a timer restored from a checkpoint and a new one coincide (timers dedupe).
        ctx.timer_service().register_processing_time_timer((now // self.tick_ms + 1) * self.tick_ms)

    def _lag(self, now: int) -> None:
        watermark = self.progress.watermark
        self.lag.set(max(0, now - watermark) if watermark > 0 else 0)

    def _emit(self, routed: Any, watermark: int, previous: int, *, everyone: bool = False) -> Any:
        for shard, blob in shard_records(routed, watermark, previous, self.params.user_shards, everyone=everyone):
            yield shard_key(shard), blob

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Any:
        # Idle partitions release the watermark only with time: re-evaluate it while records are quiet,
        # and give every user shard a call (its Cassandra flush is checked on every call).
        previous = self.progress.watermark
        yield from self._emit(Routed({}, [], {}), self.progress.advance(timestamp, self.params), previous,
                              everyone=True)
        self._lag(timestamp)
        ctx.timer_service().register_processing_time_timer((timestamp // self.tick_ms + 1) * self.tick_ms)

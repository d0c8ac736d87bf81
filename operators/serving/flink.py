"""Flink adapter of the gather step: keyed by query id, merges the shards' partials into one answer.

With one index shard (the default) every partial completes its query at once. With more, partials
wait in `Pending` until all shards replied or ``gather_timeout_ms`` passed (a processing-time timer),
so a dead shard delays answers but never silences them. `Pending` is not keyed state: with aligned
checkpoints every partial of a query that entered before a barrier arrives before that barrier, so a
checkpoint never holds a half-gathered query (unaligned checkpoints would break this; the job does not
enable them).

Output: ``("answer", recommendation JSON)`` and ``("eval", evaluation JSON)`` on the main output, split
by two filters: records yielded by timers must not use side outputs in PyFlink 2.2 (its embedded keyed
operators route a timer's records unfiltered), and this step emits from its gather-timeout timer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext

from operators.metrics import Level
from operators.serving.logic import Pending, finish
from state_schemas.messages import PartialMsg, decode_partial
from state_schemas.requests_v1 import Source, answer_json

OUT_TYPE = Types.TUPLE([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
ANSWER, EVAL = "answer", "eval"




class Gather(KeyedProcessFunction):  # type: ignore[misc]
    """Partial answers keyed by query id → one answer (or evaluation outcome) per query."""

    def __init__(self, *, shards: int, timeout_ms: int, model: str) -> None:
        self.shards = shards
        self.timeout_ms = timeout_ms
        self.model = model

    def open(self, runtime_context: RuntimeContext) -> None:
        self.pending = Pending(shards=self.shards, timeout_ms=self.timeout_ms)
        self.parts: dict[str, list[PartialMsg]] = {}
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.by_source = {src: group.add_group("source", src.value).counter("answers") for src in Source}
        self.evaluated = group.counter("eval_evaluated")
        self.hits = group.counter("eval_hits")
        self.baseline_hits = group.counter("eval_baseline_hits")
        self.timeouts = group.counter("gather_timeouts")
        self.n_eval = self.n_hit = self.n_base = 0
        # levels, not gauges (operators/metrics.py)
        self.hit_rate = Level(group.counter("eval_hit_rate_permille"))
        self.base_rate = Level(group.counter("eval_baseline_hit_rate_permille"))  # most-popular, same events
        self.answer_lag = Level(group.counter("answer_lag_ms"))  # served_at - request ts, latest answer
        self.eval_lag = Level(group.counter("eval_lag_ms"))  # served_at - event ts, latest evaluation

    def _emit(self, parts: list[PartialMsg]) -> Iterator[tuple[str, bytes]]:
        answer, outcome = finish(parts, now_ms=int(time.time() * 1000), model_version=self.model)
        if outcome is None:
            self.by_source[answer.source].inc()
            self.answer_lag.set(answer.served_at - parts[0].ts)
            yield ANSWER, answer_json(answer)
            return
        if outcome.evaluated:
            self.evaluated.inc()
            self.n_eval += 1
            if outcome.hit:
                self.hits.inc()
                self.n_hit += 1
            if outcome.baseline_hit:
                self.baseline_hits.inc()
                self.n_base += 1
            self.hit_rate.set(1000 * self.n_hit // self.n_eval)
            self.base_rate.set(1000 * self.n_base // self.n_eval)
        self.eval_lag.set(answer.served_at - parts[0].ts)
        yield EVAL, outcome.to_json()

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[tuple[str, bytes]]:
        part = decode_partial(bytes(value))
        if self.shards == 1:
            yield from self._emit([part])
            return
        now = ctx.timer_service().current_processing_time()
        if self.pending.add(part.qid, part.shard, [], now):
            self.parts.setdefault(part.qid, []).append(part)
            ctx.timer_service().register_processing_time_timer(now + self.timeout_ms)
        for qid, _ in self.pending.due(now):
            yield from self._emit(self.parts.pop(qid))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[tuple[str, bytes]]:
        for qid, _ in self.pending.due(timestamp):
            parts = self.parts.pop(qid)
            if len(parts) < self.shards:
                self.timeouts.inc()
            yield from self._emit(parts)

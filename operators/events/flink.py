"""Flink adapter of input validation: raw Kafka records in, compact events/requests or dead letters out.

Stateless (no keyed state): every record either becomes `(user_id, ts, encoded event)` (or
`(user_id, ts, encoded request)` for a record of the requests topic) on the main output or a dead-letter
record (original bytes + reason + source coordinates) on `DEAD_LETTERS`. Nothing raises for bad input,
so one bad record never restarts the job. Events and requests share one source and one stream so a
request is keyed by user exactly like that user's events and meets their live state.
"""

from __future__ import annotations

import time

from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import ProcessFunction, RuntimeContext

from operators.events.logic import Reason, Rejection, dead_letter, validate
from operators.serving.requests import validate as validate_request
from state_schemas.events import encode_event
from state_schemas.messages import encode_request

DEAD_LETTERS = OutputTag("dead-letters", Types.PRIMITIVE_ARRAY(Types.BYTE()))
EVENT_TYPE = Types.TUPLE([Types.STRING(), Types.LONG(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


class ValidateEvents(ProcessFunction):
    """Row(value, topic, partition, offset) → (user_id, ts, event bytes) | dead letter."""

    def __init__(self, *, max_bytes: int, max_skew_ms: int, min_ts_ms: int, requests_topic: str | None = None) -> None:
        self.requests_topic = requests_topic
        self.max_bytes = max_bytes
        self.max_skew_ms = max_skew_ms
        self.min_ts_ms = min_ts_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.valid = group.counter("events_valid")
        self.valid_requests = group.counter("requests_valid")
        self.dead = group.counter("dead_letters")
        self.by_reason = {r: group.add_group("reason", r.value).counter("dead_letters") for r in Reason}

    def process_element(self, row, ctx: ProcessFunction.Context):  # noqa: ANN001, ANN201 - pyflink types
        raw, topic, partition, offset = row[0], row[1], row[2], row[3]
        now_ms = int(time.time() * 1000)
        if topic == self.requests_topic:
            req = validate_request(bytes(raw), max_bytes=self.max_bytes)
            if isinstance(req, Rejection):
                self.dead.inc()
                self.by_reason[req.reason].inc()
                yield DEAD_LETTERS, dead_letter(bytes(raw), req.reason, req.detail, topic, partition, offset, now_ms)
                return
            self.valid_requests.inc()
            yield req.user_id, req.ts, encode_request(req)
            return
        out = validate(
            bytes(raw), now_ms=now_ms, max_bytes=self.max_bytes, max_skew_ms=self.max_skew_ms,
            min_ts_ms=self.min_ts_ms,
        )
        if isinstance(out, Rejection):
            self.dead.inc()
            self.by_reason[out.reason].inc()
            yield DEAD_LETTERS, dead_letter(bytes(raw), out.reason, out.detail, topic, partition, offset, now_ms)
            return
        self.valid.inc()
        yield out.user_id, out.ts, encode_event(out)

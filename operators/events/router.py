"""The events router: validates a window of raw Kafka records at once and splits it by user shard.

Pure: no pyflink import, the clock is a parameter. The Flink adapter (`operators.events.flink`)
gets one record per ~``batch_ms`` of processing time from the source: the raw values of that window,
with their topics, partitions and offsets (a Table-API tumbling window aggregates them in Java, so no
Python call is made per Kafka record).

**Watermarks are computed here, and travel in the batches.** The Java window would let Flink's own
watermarks overtake the records it still holds, and a session timer could then close a session
before an event that belongs to it arrives. So the source declares no watermark; instead the router
keeps, per partition of the events topic, the newest event time seen and when it last saw a record,
and computes ``watermark = min over active partitions (newest ts) - out_of_orderness_ms``, never
decreasing. A partition without records for ``idleness_ms`` stops holding it back (Flink's source
idleness); a partition that has not sent anything since the router started counts as seen at start.
Each user shard receives the watermark inside the batch that follows the records it covers, so on
every channel it comes after the records it was computed from, exactly like a Flink watermark.
Requests do not move the watermark: an idle requests topic never holds sessions open.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from operators.events.logic import Reason, Rejection, dead_letter, validate
from operators.serving.requests import validate as validate_request
from state_schemas.batches import encode_records
from state_schemas.codec import NO_TS
from state_schemas.errors import ConfigError
from state_schemas.events import encode_event
from state_schemas.messages import encode_request


@dataclass(frozen=True, slots=True)
class RouterParams:
    """Settings of the router, as plain values (the job passes them from its settings)."""

    user_shards: int = 16
    out_of_orderness_ms: int = 5_000
    idleness_ms: int = 30_000
    max_bytes: int = 16_384
    max_skew_ms: int = 86_400_000
    min_ts_ms: int = 946_684_800_000
    events_topic: str = "events"
    requests_topic: str = "rec-requests"
    events_partitions: tuple[int, ...] = ()  # partitions of the events topic known at job start
    # Request ids a previous run already answered on `recommendations` (committed) after the consumer group's
    # committed offsets: a start without state reads them again and must not answer twice (pipeline/recovery.py).
    answered: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        """Reject settings the router cannot work with, naming the setting."""
        if self.user_shards < 1 or self.out_of_orderness_ms < 0 or self.idleness_ms < 1:
            msg = (f"RouterParams: need user_shards >= 1, out_of_orderness_ms >= 0, idleness_ms >= 1; got "
                   f"{self.user_shards}, {self.out_of_orderness_ms}, {self.idleness_ms}. Fix the job settings.")
            raise ConfigError(msg)


def user_shard(user_id: str, shards: int) -> int:
    """The user shard of ``user_id`` (crc32 of its UTF-8 bytes: stable across processes).

    >>> user_shard("u1", 1), user_shard("u1", 16) == user_shard("u1", 16)
    (0, True)
    """
    return zlib.crc32(user_id.encode()) % shards if shards > 1 else 0


@dataclass(slots=True)
class Progress:
    """Event-time progress per events partition (in memory: watermarks are not checkpointed in Flink either)."""

    started_ms: int
    newest: dict[int, int] = field(default_factory=dict)  # partition -> newest valid event ts
    seen_ms: dict[int, int] = field(default_factory=dict)  # partition -> processing time of its last record
    watermark: int = NO_TS

    def advance(self, now_ms: int, params: RouterParams) -> int:
        """Recompute the watermark at ``now_ms``; it never goes back."""
        active: list[int] = []
        for p in {*params.events_partitions, *self.seen_ms}:
            if now_ms - self.seen_ms.get(p, self.started_ms) >= params.idleness_ms:
                continue  # idle: does not hold the watermark back
            newest = self.newest.get(p)
            if newest is None:
                return self.watermark  # an active partition without event time yet holds everything back
            active.append(newest)
        if active:
            self.watermark = max(self.watermark, min(active) - params.out_of_orderness_ms)
        return self.watermark


@dataclass(slots=True)
class Routed:
    """What one window of raw records became."""

    batches: dict[int, list[bytes]]  # user shard -> encoded events / requests, in input order
    dead_letters: list[bytes]
    dead_by_reason: dict[Reason, int]
    events: int = 0
    requests: int = 0
    already_answered: int = 0  # requests skipped: in `RouterParams.answered`


def route(
    progress: Progress,
    values: list[bytes | None],
    topics: list[str],
    partitions: list[int],
    offsets: list[int],
    *,
    now_ms: int,
    params: RouterParams,
) -> Routed:
    """Validate a window of raw records; every record becomes an event, a request or a dead letter."""
    out = Routed({}, [], {})
    batches, shards, answered = out.batches, params.user_shards, params.answered
    newest, seen = progress.newest, progress.seen_ms
    for raw, topic, partition, offset in zip(values, topics, partitions, offsets, strict=True):
        if topic == params.requests_topic:
            req = validate_request(raw, max_bytes=params.max_bytes)
            if isinstance(req, Rejection):
                _dead(out, raw, req, topic, partition, offset, now_ms)
                continue
            if req.request_id in answered:
                out.already_answered += 1
                continue
            out.requests += 1
            batches.setdefault(user_shard(req.user_id, shards), []).append(encode_request(req))
            continue
        seen[partition] = now_ms
        ev = validate(raw, now_ms=now_ms, max_bytes=params.max_bytes, max_skew_ms=params.max_skew_ms,
                      min_ts_ms=params.min_ts_ms)
        if isinstance(ev, Rejection):
            _dead(out, raw, ev, topic, partition, offset, now_ms)
            continue
        out.events += 1
        if ev.ts > newest.get(partition, NO_TS):
            newest[partition] = ev.ts
        batches.setdefault(user_shard(ev.user_id, shards), []).append(encode_event(ev))
    return out


def _dead(out: Routed, raw: bytes | None, rej: Rejection, topic: str, partition: int, offset: int, now: int) -> None:
    out.dead_letters.append(dead_letter(raw, rej.reason, rej.detail, topic, partition, offset, now))
    out.dead_by_reason[rej.reason] = out.dead_by_reason.get(rej.reason, 0) + 1


def shard_records(
    routed: Routed, watermark: int, previous: int, shards: int, *, everyone: bool = False
) -> list[tuple[int, bytes]]:
    """The records for the user shards: one RecordBatch per shard that has records.

    Every shard gets one (empty where it has no records) when the watermark advanced, or with
    ``everyone`` (the router's tick: every shard gets a call at least that often, to flush its writes).
    """
    targets = range(shards) if everyone or watermark > previous else sorted(routed.batches)
    return [(s, encode_records(routed.batches.get(s, []), watermark)) for s in targets]

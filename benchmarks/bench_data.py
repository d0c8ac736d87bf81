"""One benchmark dataset for the skeleton, the job and the replay, so their figures are comparable.

Events are the project's own generator (`pipeline.generator`: event contract v1, users with a hidden
favourite category); recommendation requests (request contract v1, `state_schemas/requests_v1.py`) are
interleaved at ``request_share`` of all records, each for a user who already had an event and stamped
with the event time of the record before it, so they order in event time like a live client's would.

    >>> s = make_stream(1_000, users=50, items=1_600, request_share=0.01, seed=3)
    >>> sum(is_request(v) for _, v in s), sum(not is_request(v) for _, v in s)
    (10, 1000)
"""

from __future__ import annotations

import json
import time
from collections import Counter

from pipeline import generator
from pipeline.kafka_io import ensure_topics, produce
from pipeline.settings import Settings

Record = tuple[bytes | None, bytes]

# A request's JSON starts with its request_id (we write it first), an event's with its event_id: the
# stream is one list, and this prefix is how `produce_all` and the harness tell the two apart.
_REQUEST_PREFIX = b'{"request_id":'


def is_request(value: bytes) -> bool:
    """True for a request record made by `make_stream` (False for an event)."""
    return value.startswith(_REQUEST_PREFIX)


def make_stream(
    n_events: int,
    users: int,
    items: int,
    request_share: float,
    seed: int,
    *,
    start_ms: int | None = None,
    max_step_ms: int = 100,
    user_prefix: str = "u",
) -> list[Record]:
    """``n_events`` interaction events plus requests making up ``request_share`` of all records.

    ``start_ms`` (default: 24 h ago) is the first event time; consecutive events are up to
    ``max_step_ms`` apart. ``user_prefix`` keeps each run's users apart in Cassandra's shared tables.
    """
    if not 0 <= request_share < 1:
        msg = f"request_share must be in [0, 1), got {request_share!r}"
        raise ValueError(msg)
    if items < len(generator.CATEGORIES):
        msg = f"items must be at least {len(generator.CATEGORIES)} (one per category), got {items}"
        raise ValueError(msg)
    start = int(time.time() * 1000) - 24 * 3600 * 1000 if start_ms is None else start_ms
    batch = generator.events(n_events, users=users, items=items, seed=seed, start_ms=start,
                             user_prefix=user_prefix, max_step_ms=max_step_ms)
    n_requests = round(n_events * request_share / (1 - request_share))
    if n_requests == 0:
        return list(batch.records)
    # Requests go after evenly spaced events (deterministic), never before the first event.
    every = n_events / n_requests
    slots = {min(n_events - 1, int((r + 1) * every) - 1): r for r in range(n_requests)}
    out: list[Record] = []
    for i, (key, value) in enumerate(batch.records):
        out.append((key, value))
        r = slots.get(i)
        if r is not None:
            ev = json.loads(value)
            doc = {"request_id": f"{user_prefix}r{seed}-{r}", "user_id": ev["user_id"], "k": 10, "ts": ev["ts"]}
            out.append((key, json.dumps(doc, separators=(",", ":")).encode()))
    return out


def event_values(stream: list[Record]) -> list[bytes]:
    """The values of the stream's events (requests left out), in order."""
    return [v for _, v in stream if not is_request(v)]


def per_user(stream: list[Record]) -> Counter[str]:
    """Events per user: what a correct job ends up with in Cassandra's ``user_profiles.event_count``."""
    return Counter(json.loads(v)["user_id"] for v in event_values(stream))


def produce_all(settings: Settings, stream: list[Record]) -> dict[str, int]:
    """Create the run's topics, write events to ``events`` and requests to ``rec-requests``; return counts.

    The caller gives ``settings`` a fresh ``topic_prefix``: the job's group offsets, transactional ids
    and answers then belong to this run alone.
    """
    if not settings.topic_prefix:
        msg = "produce_all needs settings with a unique topic_prefix (benchmarks never write the shared topics)"
        raise ValueError(msg)
    ensure_topics(settings)
    events = [r for r in stream if not is_request(r[1])]
    requests = [r for r in stream if is_request(r[1])]
    return {
        "events": produce(settings, settings.topic("events"), events),
        "requests": produce(settings, settings.topic("rec-requests"), requests),
    }

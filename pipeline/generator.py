"""Synthetic interaction events for the demo and the tests.

Users have hidden preferences (a favourite category each), so the stream has structure a learner can
find; a fraction of records can be deliberately malformed to exercise the dead-letter path.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

EVENT_TYPES = ("view", "view", "view", "click", "click", "add_to_cart", "purchase")
CATEGORIES = ("books", "music", "garden", "sports", "toys", "kitchen", "games", "travel")


@dataclass
class GeneratedBatch:
    """What was generated: the records and the exact per-user counts of well-formed events."""

    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    per_user: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    duplicates: int = 0
    timeline: dict[str, list[int]] = field(default_factory=dict)  # user -> event times, in order

    @property
    def max_ts(self) -> int:
        """Latest event time generated."""
        return max((t[-1] for t in self.timeline.values()), default=0)


def sessions_by_gap(times: list[int], gap_ms: int) -> int:
    """Sessions in a user's sorted event times when a gap larger than `gap_ms` splits them."""
    if not times:
        return 0
    return 1 + sum(1 for a, b in zip(times, times[1:], strict=False) if b - a > gap_ms)


def events(
    n: int,
    *,
    users: int = 200,
    items: int = 1000,
    malformed_every: int = 0,
    duplicate_every: int = 0,
    seed: int = 7,
    start_ms: int,
    user_prefix: str = "u",
    max_step_ms: int = 2000,
    types: tuple[str, ...] = EVENT_TYPES,
    categories: tuple[str, ...] = CATEGORIES,
) -> GeneratedBatch:
    """`n` records over `users` users.

    Every `malformed_every`-th record is broken and every `duplicate_every`-th is a producer
    redelivery of the previous good event (same event_id); 0 disables either. `per_user` counts
    distinct well-formed events only: what a correct job must end up with. ``types`` and ``categories``
    (a subset of `CATEGORIES`) are what events are drawn from, uniformly (repeat an entry to weight it):
    the drift tests shift them at a known event time.
    """
    rng = random.Random(seed)
    favourite = {u: rng.choice(categories) for u in range(users)}
    out = GeneratedBatch()
    ts = start_ms
    last_good: tuple[bytes | None, bytes] | None = None
    for i in range(n):
        if duplicate_every and last_good is not None and i % duplicate_every == duplicate_every - 1:
            out.records.append(last_good)
            out.duplicates += 1
            continue
        if malformed_every and i % malformed_every == malformed_every - 1:
            out.records.append((None, rng.choice([b"{not json", b"\xff\xfe\x00", b"[1,2,3]", b'{"user_id":'])))
            out.malformed += 1
            continue
        u = rng.randrange(users)
        cat = favourite[u] if rng.random() < 0.8 else rng.choice(categories)
        item = CATEGORIES.index(cat) * (items // len(CATEGORIES)) + rng.randrange(items // len(CATEGORIES))
        ts += rng.randrange(0, max_step_ms)
        user_id = f"{user_prefix}{u}"
        event = {
            "event_id": f"e{seed}-{i}",
            "user_id": user_id,
            "item_id": f"i{item}",
            "type": rng.choice(types),
            "ts": ts,
            "category": cat,
            "dwell_ms": rng.randrange(0, 60_000),
        }
        last_good = (user_id.encode(), json.dumps(event).encode())
        out.records.append(last_good)
        out.per_user[user_id] += 1
        out.timeline.setdefault(user_id, []).append(ts)
    return out


def stream(**kwargs: object) -> Iterator[tuple[bytes | None, bytes]]:
    """The records of `events(**kwargs)` one by one."""
    yield from events(**kwargs).records  # type: ignore[arg-type]

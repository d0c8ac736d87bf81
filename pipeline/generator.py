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


def events(
    n: int, *, users: int = 200, items: int = 1000, malformed_every: int = 0, seed: int = 7, start_ms: int
) -> GeneratedBatch:
    """`n` records over `users` users; every `malformed_every`-th record is broken (0 = none)."""
    rng = random.Random(seed)
    favourite = {u: rng.choice(CATEGORIES) for u in range(users)}
    out = GeneratedBatch()
    ts = start_ms
    for i in range(n):
        if malformed_every and i % malformed_every == malformed_every - 1:
            out.records.append((None, rng.choice([b"{not json", b"\xff\xfe\x00", b"[1,2,3]", b'{"user_id":'])))
            out.malformed += 1
            continue
        u = rng.randrange(users)
        cat = favourite[u] if rng.random() < 0.8 else rng.choice(CATEGORIES)
        item = CATEGORIES.index(cat) * (items // len(CATEGORIES)) + rng.randrange(items // len(CATEGORIES))
        ts += rng.randrange(0, 2000)
        user_id = f"u{u}"
        event = {
            "event_id": f"e{seed}-{i}",
            "user_id": user_id,
            "item_id": f"i{item}",
            "type": rng.choice(EVENT_TYPES),
            "ts": ts,
            "category": cat,
            "dwell_ms": rng.randrange(0, 60_000),
        }
        out.records.append((user_id.encode(), json.dumps(event).encode()))
        out.per_user[user_id] += 1
    return out


def stream(**kwargs: object) -> Iterator[tuple[bytes | None, bytes]]:
    """The records of `events(**kwargs)` one by one."""
    yield from events(**kwargs).records  # type: ignore[arg-type]

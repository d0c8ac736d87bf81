"""Every Kafka topic of liverec, declared once: name, partitions and configs.

`liverec infra up` creates them; the job and the tests read names from here (through
`Settings.topic()`, which adds the optional prefix). Changing partitions of a live topic
changes key → partition placement: treat it as a migration (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicSpec:
    """One topic: logical name, partition count and topic-level configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    doc: str = ""


_WEEK_MS = str(7 * 24 * 3600 * 1000)
# Topics the job writes get broker time as record timestamps: the Flink sinks would otherwise stamp
# records with event time, which the broker rejects when it is more than
# `message.timestamp.after.max.ms` (1 h) ahead or far behind (replays of old data).
_OUT = {"retention.ms": _WEEK_MS, "message.timestamp.type": "LogAppendTime"}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("events", 2, {"retention.ms": _WEEK_MS}, "interaction events (JSON, events.v1 schema)"),
    TopicSpec("rec-requests", 2, {"retention.ms": _WEEK_MS}, "recommendation queries"),
    TopicSpec("recommendations", 2, _OUT, "top-k answers, one per request"),
    TopicSpec("dead-letter", 1, _OUT, "rejected input: original bytes + reason"),
    TopicSpec("alerts", 1, _OUT, "drift and degradation alerts"),
    TopicSpec("sessions", 2, _OUT, "closed-session summaries"),
    TopicSpec(
        "item-vectors", 2, {**_OUT, "retention.ms": str(24 * 3600 * 1000)},
        "item stage → user stage feedback (read back by the same job; state restores from checkpoints)",
    ),
    TopicSpec("evaluations", 2, _OUT, "online evaluation: one record per scored interaction (test-then-learn)"),
    TopicSpec("index-events", 1, _OUT, "index operator maintenance: restores/rebuilds and size reports"),
    TopicSpec("user-counts", 2, _OUT, "output of the smallest (count) job"),
)


def by_name(name: str) -> TopicSpec:
    """The declared spec of a logical topic name."""
    for t in TOPICS:
        if t.name == name:
            return t
    known = ", ".join(t.name for t in TOPICS)
    msg = f"topic {name!r} is not declared in state_schemas/topics.py (known: {known})"
    raise KeyError(msg)

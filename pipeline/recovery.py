"""How `liverec job` and `liverec cluster submit` start: resume, restore, fresh, or refuse.

Why: a start without state over a consumer group that has committed offsets (or over profiles already
in Cassandra) silently throws away every user's keyed state and answers again requests that were
answered after the last committed offset. So a start picks, in this order:

1. ``--restore PATH``: that savepoint or retained checkpoint, as asked;
2. ``--fresh``: empty state on purpose (offsets: the group's committed ones, else the earliest; the
   requests after them that already have an answer are skipped, `already_answered`);
3. the latest completed retained checkpoint of *this* job, if there is one (said on the console);
4. a brand-new start, when neither committed offsets nor profiles exist;
5. otherwise: refused, with the flag to use.

"This job" is what a marker file says: each start writes ``<checkpoint root>/<job id>/liverec-job.json``
with the job's identity (name, topic prefix, Kafka bootstrap, consumer group). Checkpoints of other
jobs sharing the root (tests, benchmarks, another topic prefix) are never picked: restoring a Kafka
source's splits from another job would read that job's topics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline.errors import ConfigError
from pipeline.settings import Settings

MARKER = "liverec-job.json"


class Start(Enum):
    """How a start treats state."""

    RESTORE = "restore"  # the path the user gave
    RESUME = "resume"  # the latest retained checkpoint of this job
    FRESH = "fresh"  # empty state, asked for
    NEW = "new"  # empty state, and nothing exists that it would throw away


@dataclass(frozen=True, slots=True)
class StartPlan:
    """The decision and the sentence the console prints about it."""

    start: Start
    path: str | None
    message: str


class StartRefused(ConfigError):
    """A start would silently drop existing state; the message names the checkpoint or flag to use."""


def identity(settings: Settings) -> dict[str, str]:
    """What makes two runs the same job: same name, topics, broker and consumer group."""
    return {"job_name": settings.job_name, "topic_prefix": settings.topic_prefix,
            "kafka_bootstrap": settings.kafka_bootstrap, "group": group(settings)}


def group(settings: Settings) -> str:
    """The Kafka consumer group of the job's sources (`pipeline.jobs.liverec_job.build`)."""
    return f"{settings.job_name}-{settings.topic_prefix}job"


def local_root(uri: str) -> Path | None:
    """The directory of a ``file://`` checkpoint URI (or a plain path); None for other file systems."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def write_marker(root: Path, job_id: str, settings: Settings) -> Path:
    """Mark ``root/job_id`` as a checkpoint directory of this job (written at every start)."""
    path = root / job_id / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity(settings), indent=1) + "\n")
    return path


def latest_checkpoint(root: Path, settings: Settings) -> Path | None:
    """The newest completed retained checkpoint (``chk-N`` with ``_metadata``) of this job under ``root``.

    Newest by the time its ``_metadata`` was written: checkpoint ids start again at 1 after a fresh
    start, so the highest id is not always the latest.
    """
    want = identity(settings)
    best: tuple[float, int, Path] | None = None
    for marker in root.glob(f"*/{MARKER}"):
        try:
            if json.loads(marker.read_text()) != want:
                continue
        except (OSError, ValueError):
            continue
        for meta in marker.parent.glob("chk-*/_metadata"):
            try:
                key = (meta.stat().st_mtime, int(meta.parent.name.split("-", 1)[1]), meta.parent)
            except (OSError, ValueError):
                continue
            if best is None or key[:2] > best[:2]:
                best = key
    return None if best is None else best[2]


def plan_start(*, restore: str | None, fresh: bool, latest: Path | None, committed_offsets: int,
               profiles_exist: bool, root: str) -> StartPlan:
    """Pure decision (see the module docstring); raises StartRefused for case 5."""
    if restore and fresh:
        msg = "--restore and --fresh contradict each other: give one of them."
        raise ConfigError(msg)
    if restore:
        return StartPlan(Start.RESTORE, restore, f"restoring from {restore} (as asked)")
    if fresh:
        return StartPlan(Start.FRESH, None, (
            "starting FRESH as asked: empty keyed state; the sources start from the consumer group's committed "
            "offsets (earliest where none); users and items come back from their Cassandra rows as they show up"))
    if latest is not None:
        return StartPlan(Start.RESUME, str(latest), f"resuming from the latest retained checkpoint {latest}")
    if committed_offsets or profiles_exist:
        found = []
        if committed_offsets:
            found.append(f"the consumer group has {committed_offsets} committed offsets")
        if profiles_exist:
            found.append("Cassandra already holds user profiles")
        msg = (f"refusing to start without state: {' and '.join(found)}, but no retained checkpoint of this "
               f"job is under {root}. Restore one with --restore <checkpoint or savepoint path>, or start with "
               "empty state on purpose with --fresh (docs/operations.md, 'Restart choices').")
        raise StartRefused(msg)
    return StartPlan(Start.NEW, None, "starting new: no checkpoint, no committed offsets, no profiles")


def committed_offsets(settings: Settings) -> int:
    """Committed offsets of the job's consumer group over the events and request topics (0: none)."""
    from kafka import TopicPartition

    from pipeline.kafka_io import consumer as kafka_consumer

    consumer = kafka_consumer(settings, group_id=group(settings), enable_auto_commit=False)
    try:
        total = 0
        for topic in (settings.topic("events"), settings.topic("rec-requests")):
            for p in consumer.partitions_for_topic(topic) or ():
                total += consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        consumer.close()


def profiles_exist(settings: Settings) -> bool:
    """True when the profiles table holds any row (it is the job's output: a fresh job would overwrite it)."""
    from pipeline.cassandra_io import connect

    cluster, session = connect(settings)
    try:
        rows = session.execute(f"SELECT user_id FROM {settings.cassandra_keyspace}.user_profiles LIMIT 1")
        return rows.one() is not None
    except Exception as exc:  # a keyspace or table not created yet holds no profiles
        text = str(exc).lower()
        if "does not exist" in text or "unconfigured table" in text:
            return False
        raise
    finally:
        cluster.shutdown()


def decide(settings: Settings, root_uri: str, *, restore: str | None, fresh: bool) -> StartPlan:
    """Look at the checkpoint root, Kafka and Cassandra only as far as the decision needs."""
    if restore or fresh:
        return plan_start(restore=restore, fresh=fresh, latest=None, committed_offsets=0, profiles_exist=False,
                          root=root_uri)
    root = local_root(root_uri)
    latest = latest_checkpoint(root, settings) if root is not None and root.is_dir() else None
    if latest is not None:
        return plan_start(restore=None, fresh=False, latest=latest, committed_offsets=0, profiles_exist=False,
                          root=root_uri)
    return plan_start(restore=None, fresh=False, latest=None, committed_offsets=committed_offsets(settings),
                      profiles_exist=profiles_exist(settings), root=root_uri)


def answered_among(requests: list[bytes], answers: list[bytes]) -> frozenset[str]:
    """Ids of ``requests`` (raw `rec-requests` values) that some value of ``answers`` answers.

    Unparseable values are skipped here: the router dead-letters such requests, and an answer without a
    ``request_id`` answers nothing.

    >>> answered_among([b'{"request_id": "a"}', b'{"request_id": "b"}', b"{bad"], [b'{"request_id": "b"}'])
    frozenset({'b'})
    """
    def ids(values: list[bytes]) -> set[str]:
        out = set()
        for v in values:
            try:
                rid = json.loads(v).get("request_id")
            except (ValueError, AttributeError):
                continue
            if isinstance(rid, str):
                out.add(rid)
        return out

    asked = ids(requests)
    return frozenset(asked & ids(answers)) if asked else frozenset()


def requests_after_committed(settings: Settings, timeout_s: float = 60.0) -> tuple[list[bytes], int | None]:
    """The `rec-requests` values after the group's committed offsets (all where none), and their oldest timestamp.

    These are what a start without state reads again: the ones a previous run may already have answered.
    """
    import time

    from kafka import TopicPartition

    from pipeline.kafka_io import consumer as kafka_consumer

    topic = settings.topic("rec-requests")
    consumer = kafka_consumer(settings, group_id=group(settings), enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return [], None
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        for tp in parts:
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        values: list[bytes] = []
        oldest: int | None = None
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                msg = (f"reading {topic} from the committed offsets of group {group(settings)} took over "
                       f"{timeout_s:.0f}s; is the broker at {settings.kafka_bootstrap} healthy?")
                raise ConfigError(msg)
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]:
                        values.append(r.value)
                        oldest = r.timestamp if oldest is None else min(oldest, r.timestamp)
        return values, oldest
    finally:
        consumer.close()


def already_answered(settings: Settings) -> frozenset[str]:
    """Request ids after the committed offsets that `recommendations` already holds a committed answer for.

    Why: ``--fresh`` starts without the sink's state at the group's committed offsets, which lag the last
    checkpoint (offsets are committed after it completes). The requests between them were answered by the
    previous run, and those answers are committed (read_committed sees them) or in a transaction nobody
    will commit. The router skips the former, so each request id gets one answer. Answers are read from a
    minute before the oldest such request (producer timestamps), not from the topic's beginning.
    """
    from pipeline.kafka_io import read_committed

    requests, oldest = requests_after_committed(settings)
    if not requests or oldest is None:
        return frozenset()
    answers = list(read_committed(settings, settings.topic("recommendations"), from_ms=oldest - 60_000,
                                  idle_ms=2000))
    return answered_among(requests, answers)


def write_answered(root: Path, ids: frozenset[str]) -> Path:
    """One id per line under the checkpoint root; the job reads it through `answered_requests_file`."""
    import time

    root.mkdir(parents=True, exist_ok=True)
    path = root / f"answered-before-fresh-{int(time.time() * 1000)}.txt"
    path.write_text("".join(f"{i}\n" for i in sorted(ids)))
    return path

"""Kafka helpers shared by the CLI, the demo and the tests: topics, producing, committed reads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pipeline.settings import Settings
from state_schemas.topics import TOPICS, TopicSpec


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create missing declared topics and set the declared configs on existing ones; return names created.

    Configs are re-applied so a config added to `state_schemas/topics.py` reaches existing topics.
    Partition counts of existing topics are never changed here (that moves keys between partitions).
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30000)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(settings.topic(t.name), t.partitions, 1, topic_configs=dict(t.configs))
            for t in specs
            if settings.topic(t.name) not in existing
        ]
        if new:
            admin.create_topics(new, timeout_ms=30000)
        old = [
            ConfigResource(ConfigResourceType.TOPIC, settings.topic(t.name), configs=dict(t.configs))
            for t in specs
            if settings.topic(t.name) in existing
        ]
        if old:
            admin.alter_configs(old)
        return [t.name for t in specs if settings.topic(t.name) not in existing]
    finally:
        admin.close()


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) records with acks=all and idempotence; flush; return how many were sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    n = 0
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush()
    finally:
        producer.close()
    return n


def read_committed(
    settings: Settings, topic: str, *, from_ms: int | None = None, idle_ms: int = 1500
) -> Iterator[bytes]:
    """Yield committed values of every partition (from a timestamp, else the beginning) until idle."""
    return _read(settings, topic, "read_committed", from_ms, idle_ms)


def read_uncommitted(
    settings: Settings, topic: str, *, from_ms: int | None = None, idle_ms: int = 1500
) -> Iterator[bytes]:
    """Like `read_committed`, but also yield records of open and aborted transactions.

    Why: only this view shows that a record *was* written when a read_committed consumer never sees it.
    """
    return _read(settings, topic, "read_uncommitted", from_ms, idle_ms)


def _read(settings: Settings, topic: str, isolation: str, from_ms: int | None, idle_ms: int) -> Iterator[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
    )
    try:
        seek_from(consumer, topic, from_ms)
        for msg in consumer:
            yield msg.value
    finally:
        consumer.close()


def seek_from(consumer, topic: str, from_ms: int | None) -> None:  # noqa: ANN001 - kafka-python consumer
    """Assign every partition of `topic` and seek to the first record at/after `from_ms` (None: the beginning)."""
    from kafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    if from_ms is None:
        consumer.seek_to_beginning(*parts)
        return
    found = consumer.offsets_for_times({tp: from_ms for tp in parts})
    ends = consumer.end_offsets(parts)
    for tp in parts:
        consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])


def partitions_of(settings: Settings, topic: str) -> tuple[int, ...]:
    """The partition ids of ``topic`` as the broker has them now; () when the topic or broker is missing."""
    from kafka import KafkaConsumer

    try:
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    except Exception:  # noqa: BLE001 - no broker: the router then learns partitions as they send
        return ()
    try:
        return tuple(sorted(consumer.partitions_for_topic(topic) or ()))
    finally:
        consumer.close()

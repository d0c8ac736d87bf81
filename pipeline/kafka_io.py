"""Kafka admin helpers: create the declared topics, read committed output."""

from __future__ import annotations

from state_schemas.topics import TOPICS, TopicSpec

from pipeline.settings import Settings


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create every declared topic that does not exist yet; return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

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
        return [t.name for t in new]
    finally:
        admin.close()

"""Kafka helpers shared by the CLI, the demo and the tests: clients, topics, producing, committed reads.

Every kafka-python client of `pipeline/` is made here (`admin`, `producer`, `consumer`), so each gets the
security settings (`pipeline.credentials.kafka_client_kwargs`) and a refused login becomes a ConfigError
that names the settings instead of kafka-python's "Unable to bootstrap" timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pipeline.credentials import KAFKA_SETTINGS, kafka_client_kwargs, kafka_login_error
from pipeline.errors import ConfigError, InfraError, LiverecError
from pipeline.settings import Settings
from state_schemas.topics import TOPICS, TopicSpec

T = TypeVar("T")


class _ClientErrors(logging.Handler):
    """Keeps the exceptions kafka-python logs while it bootstraps (it retries, then raises only a timeout)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.seen += [a for a in args if isinstance(a, BaseException)]


def _named_errors(settings: Settings, make: Callable[[], T]) -> T:
    """Run `make` (a client constructor or request); a failed login raises ConfigError naming the settings."""
    from kafka.errors import KafkaConnectionError, KafkaError

    handler = _ClientErrors()
    logger = logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        return make()
    except (KafkaError, OSError) as exc:
        for seen in [*handler.seen, exc]:
            named = kafka_login_error(settings, seen)
            if named is not None:
                raise named from exc
        tls = [e for e in handler.seen if isinstance(e, KafkaConnectionError) and "Handshake failed" in str(e)]
        if tls:
            msg = (f"the TLS handshake with Kafka at {settings.kafka_bootstrap} failed ({tls[-1]}): with "
                   "LIVEREC_KAFKA_SECURITY_PROTOCOL=SASL_SSL, LIVEREC_KAFKA_SSL_CAFILE must name the PEM file of the "
                   "CA that signed the brokers' certificates (unset: the system's CAs), and the port must be a TLS "
                   "listener")
            raise ConfigError(msg) from exc
        if not any(isinstance(e, KafkaConnectionError) and "disconnected" in str(e) for e in handler.seen):
            raise
        where = f"Kafka at {settings.kafka_bootstrap} closed every connection"
        if settings.kafka_security_protocol == "PLAINTEXT":
            msg = (f"{where} right after it opened ({exc}); a broker whose listener requires SASL or TLS does that "
                   f"to a PLAINTEXT client: set {KAFKA_SETTINGS}")
            raise InfraError(msg) from exc
        # A refused SASL login often shows only as a closed connection: the broker closes it right after
        # its error response, and kafka-python may see the close first.
        msg = (f"{where} during the {settings.kafka_sasl_mechanism} login of user {settings.kafka_sasl_username!r} "
               f"over {settings.kafka_security_protocol} ({exc}); a broker does that when it refuses the password or "
               f"the mechanism, or when its listener expects another protocol: check {KAFKA_SETTINGS}")
        raise ConfigError(msg) from exc
    finally:
        logger.removeHandler(handler)


def admin(settings: Settings, **kwargs: Any) -> Any:
    """A KafkaAdminClient for the configured brokers, logged in as the settings say."""
    from kafka import KafkaAdminClient

    return _named_errors(settings, lambda: KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **kwargs, **kafka_client_kwargs(settings)))


def producer(settings: Settings, **kwargs: Any) -> Any:
    """A KafkaProducer for the configured brokers, logged in as the settings say."""
    from kafka import KafkaProducer

    return _named_errors(settings, lambda: KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **kwargs, **kafka_client_kwargs(settings)))


def consumer(settings: Settings, **kwargs: Any) -> Any:
    """A KafkaConsumer for the configured brokers, logged in as the settings say."""
    from kafka import KafkaConsumer

    return _named_errors(settings, lambda: KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, **kwargs, **kafka_client_kwargs(settings)))


def check_login(settings: Settings, *, timeout_s: float = 10.0) -> None:
    """Fail fast, naming the settings, when the brokers refuse the configured login (a preflight for commands).

    Why: kafka-python retries a refused login until its bootstrap timeout and then reports only
    "Unable to bootstrap"; the Flink job would restart over the same error.
    """
    from kafka.errors import KafkaTimeoutError

    try:
        client = admin(settings, request_timeout_ms=int(timeout_s * 1000), bootstrap_timeout_ms=int(timeout_s * 1000))
    except KafkaTimeoutError as exc:
        msg = (f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout_s:.0f}s ({exc}); is it up "
               "(`liverec infra status`) and is LIVEREC_KAFKA_BOOTSTRAP right?")
        raise InfraError(msg) from exc
    try:
        _named_errors(settings, client.describe_cluster)
    finally:
        client.close()


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create missing declared topics and set the declared configs on existing ones; return names created.

    Configs are re-applied so a config added to `state_schemas/topics.py` reaches existing topics.
    Partition counts of existing topics are never changed here (that moves keys between partitions).
    """
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    client = admin(settings, request_timeout_ms=30000)
    try:
        existing = set(client.list_topics())
        new = [
            NewTopic(settings.topic(t.name), t.partitions, 1, topic_configs=dict(t.configs))
            for t in specs
            if settings.topic(t.name) not in existing
        ]
        if new:
            client.create_topics(new, timeout_ms=30000)
        old = [
            ConfigResource(ConfigResourceType.TOPIC, settings.topic(t.name), configs=dict(t.configs))
            for t in specs
            if settings.topic(t.name) in existing
        ]
        if old:
            client.alter_configs(old)
        return [t.name for t in specs if settings.topic(t.name) not in existing]
    finally:
        client.close()


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) records with acks=all and idempotence; flush; return how many were sent."""
    out = producer(settings, acks="all", enable_idempotence=True, linger_ms=5)
    n = 0
    try:
        for key, value in records:
            out.send(topic, key=key, value=value)
            n += 1
        out.flush()
    finally:
        out.close()
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
    reader = consumer(settings, isolation_level=isolation, enable_auto_commit=False, consumer_timeout_ms=idle_ms)
    try:
        seek_from(reader, topic, from_ms)
        for msg in reader:
            yield msg.value
    finally:
        reader.close()


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
    try:
        reader = consumer(settings, request_timeout_ms=15000)
    except LiverecError:
        raise  # a refused login is not "no broker": building a job that cannot log in must stop here
    except Exception:  # noqa: BLE001 - no broker: the router then learns partitions as they send
        return ()
    try:
        return tuple(sorted(reader.partitions_for_topic(topic) or ()))
    finally:
        reader.close()

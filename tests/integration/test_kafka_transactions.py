"""A transactional produce is invisible to read_committed consumers until the commit."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaProducer

from pipeline.infra.procs import wait_until
from pipeline.kafka_io import read_committed

pytestmark = pytest.mark.integration


def _committed_values(settings, topic: str) -> list[bytes]:
    return list(read_committed(settings, topic, idle_ms=1500))


def test_read_committed_sees_records_only_after_commit(isolated) -> None:
    topic = isolated.topic("events")
    producer = KafkaProducer(
        bootstrap_servers=isolated.kafka_bootstrap, transactional_id=f"test-{uuid.uuid4().hex}"
    )
    producer.init_transactions()
    producer.begin_transaction()
    payloads = [f"tx-{i}".encode() for i in range(25)]
    for p in payloads:
        producer.send(topic, p)
    producer.flush()  # records are in the log, transaction still open

    assert _committed_values(isolated, topic) == []

    producer.commit_transaction()
    seen: list[bytes] = []

    def all_visible() -> bool:
        seen[:] = _committed_values(isolated, topic)
        return len(seen) == len(payloads)

    assert wait_until(all_visible, 30), f"after commit saw {len(seen)} of {len(payloads)}"
    assert sorted(seen) == sorted(payloads)
    producer.close()


def test_aborted_transaction_is_never_visible(isolated) -> None:
    topic = isolated.topic("events")
    producer = KafkaProducer(
        bootstrap_servers=isolated.kafka_bootstrap, transactional_id=f"test-{uuid.uuid4().hex}"
    )
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"aborted")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, b"committed")
    producer.commit_transaction()
    deadline = time.monotonic() + 30
    values: list[bytes] = []
    while time.monotonic() < deadline and not values:
        values = _committed_values(isolated, topic)
    assert values == [b"committed"]
    producer.close()

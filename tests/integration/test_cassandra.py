"""Cassandra round trip through the keyspace and tables created from state_schemas/cql."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pipeline.cassandra_io import connect

pytestmark = pytest.mark.integration


def test_write_read_round_trip(stack) -> None:
    cluster, session = connect(stack, keyspace=stack.cassandra_keyspace)
    try:
        key = f"rt-{uuid.uuid4().hex}"
        now = datetime.now(UTC).replace(microsecond=0)
        session.execute(
            "INSERT INTO healthcheck (id, value, written_at) VALUES (%s, %s, %s)", (key, "hello", now)
        )
        row = session.execute("SELECT value, written_at FROM healthcheck WHERE id = %s", (key,)).one()
        assert row is not None
        assert row.value == "hello"
        assert row.written_at.replace(tzinfo=UTC) == now
    finally:
        cluster.shutdown()


def test_upsert_with_lower_timestamp_never_moves_row_backwards(stack) -> None:
    """The property the profile sink relies on: USING TIMESTAMP makes replays harmless."""
    cluster, session = connect(stack, keyspace=stack.cassandra_keyspace)
    try:
        key = f"ts-{uuid.uuid4().hex}"
        session.execute("INSERT INTO healthcheck (id, value) VALUES (%s, %s) USING TIMESTAMP 200", (key, "new"))
        session.execute("INSERT INTO healthcheck (id, value) VALUES (%s, %s) USING TIMESTAMP 100", (key, "old"))
        assert session.execute("SELECT value FROM healthcheck WHERE id = %s", (key,)).one().value == "new"
    finally:
        cluster.shutdown()


def test_schema_has_every_declared_table(stack) -> None:
    cluster, session = connect(stack)
    try:
        rows = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (stack.cassandra_keyspace,)
        )
        tables = {r.table_name for r in rows}
        assert {"user_profiles", "item_vectors", "sessions", "healthcheck"} <= tables
    finally:
        cluster.shutdown()

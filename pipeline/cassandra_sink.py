"""Idempotent, ordered upserts of profiles, sessions and item vectors, from inside the job.

There is no Cassandra connector for Flink 2.x, so the stateful operators write with cassandra-driver.
Writes are synchronous: when an operator returns from a callback its write is acknowledged, so a
checkpoint barrier behind it never covers an unwritten change (what is not yet written is still in
checkpointed state, with its flush timer). When Cassandra is unreachable a write is retried with
backoff, which back-pressures the job, until `cassandra_write_timeout_s`; then the job fails and
restarts from its last checkpoint rather than dropping anything.
"""

from __future__ import annotations

import logging
import time

from operators.profile.logic import SessionSummary
from operators.profile.rows import PROFILE_COLUMNS, SESSION_COLUMNS, profile_row, session_row
from pipeline.errors import InfraError
from pipeline.settings import Settings
from state_schemas.item_vector import SCHEMA_VERSION as ITEM_SCHEMA_VERSION
from state_schemas.item_vector import ItemVector
from state_schemas.user_profile import UserProfile

log = logging.getLogger(__name__)


def _insert(keyspace: str, table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {keyspace}.{table} ({', '.join(columns)}) VALUES ({marks}) USING TIMESTAMP ?"


ITEM_COLUMNS = ("item_id", "schema_version", "seq", "vector", "bias", "updates", "updated_at")


class CassandraWriter:
    """Prepared upserts with retry; one per operator instance (opened in `open()`)."""

    def __init__(self, settings: Settings) -> None:
        from pipeline.cassandra_io import connect

        self.settings = settings
        # Retry the first connection too: a restart while Cassandra is down should wait, not burn
        # through the job's restart attempts.
        deadline = time.monotonic() + settings.cassandra_write_timeout_s
        while True:
            try:
                self.cluster, self.session = connect(settings)
                break
            except Exception as exc:  # noqa: BLE001 - any driver error: retry until the deadline
                if time.monotonic() > deadline:
                    msg = (
                        f"cannot connect to Cassandra at {settings.cassandra_hosts}:{settings.cassandra_port} "
                        f"for {settings.cassandra_write_timeout_s}s ({type(exc).__name__}: {exc}); is it up?"
                    )
                    raise InfraError(msg) from exc
                time.sleep(1.0)
        ks = settings.cassandra_keyspace
        self.profile_stmt = self.session.prepare(_insert(ks, "user_profiles", PROFILE_COLUMNS))
        self.session_stmt = self.session.prepare(_insert(ks, "sessions", SESSION_COLUMNS))
        self.item_stmt = self.session.prepare(_insert(ks, "item_vectors", ITEM_COLUMNS))
        self.writes = 0
        self.retries = 0

    def write_profile(self, p: UserProfile) -> None:
        """Upsert a profile at timestamp `seq`."""
        self._execute(self.profile_stmt, (*profile_row(p), p.seq))

    def write_session(self, s: SessionSummary) -> None:
        """Upsert a closed session at the profile's `seq` after closing it."""
        self._execute(self.session_stmt, (*session_row(s), s.seq))

    def write_item(self, item_id: str, v: ItemVector) -> None:
        """Upsert an item vector at its own `seq`."""
        from datetime import UTC, datetime

        updated = datetime.fromtimestamp(v.updated_ts / 1000, tz=UTC) if v.updated_ts > 0 else None
        row = (item_id, ITEM_SCHEMA_VERSION, v.seq, v.vector, v.bias, v.update_count, updated)
        self._execute(self.item_stmt, (*row, v.seq))

    def _execute(self, stmt, values: tuple[object, ...]) -> None:  # noqa: ANN001 - driver type
        deadline = time.monotonic() + self.settings.cassandra_write_timeout_s
        delay = 0.05
        while True:
            try:
                self.session.execute(stmt, values, timeout=10)
                self.writes += 1
                return
            except Exception as exc:  # noqa: BLE001 - every driver error is retried until the deadline
                self.retries += 1
                if time.monotonic() + delay > deadline:
                    msg = (
                        f"Cassandra write to {stmt.query_string.split('(')[0].strip()} kept failing for "
                        f"{self.settings.cassandra_write_timeout_s}s (last: {type(exc).__name__}: {exc}); "
                        "the job fails and restarts from its last checkpoint. Check Cassandra is up "
                        f"at {self.settings.cassandra_hosts}:{self.settings.cassandra_port}."
                    )
                    raise InfraError(msg) from exc
                time.sleep(delay)  # back-pressure: the operator thread waits for Cassandra
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """Shut the driver down (operator `close()`)."""
        self.cluster.shutdown()

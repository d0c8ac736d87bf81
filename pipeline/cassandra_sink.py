"""Idempotent, ordered upserts of profiles, sessions and item vectors, from inside the job.

There is no Cassandra connector for Flink 2.x, so the stateful operators write with cassandra-driver.
The writes of one operator call go out concurrently (at most `cassandra_max_in_flight` at a time, the
driver's `execute_concurrent`) and the call returns only when every one is acknowledged, so a
checkpoint barrier behind it never covers an unwritten change. When Cassandra is unreachable the
failed writes are retried with backoff, which back-pressures the job, until
`cassandra_write_timeout_s`; then the job fails and restarts from its last checkpoint rather than
dropping anything. The operators get a `WriterFactory` (picklable, settings only) and open the
connection in `open()`: `operators/` never imports this module.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from operators.profile.logic import SessionSummary
from operators.profile.rows import PROFILE_COLUMNS, SESSION_COLUMNS, WRITTEN_AT, profile_row, session_row
from pipeline.errors import ConfigError, InfraError
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
            except ConfigError:
                raise  # a refused login: retrying cannot help, fail the operator with the named settings
            except Exception as exc:  # noqa: BLE001 - any driver error: retry until the deadline
                if time.monotonic() > deadline:
                    msg = (
                        f"cannot connect to Cassandra at {settings.cassandra_hosts}:{settings.cassandra_port} "
                        f"for {settings.cassandra_write_timeout_s}s ({type(exc).__name__}: {exc}); is it up?"
                    )
                    raise InfraError(msg) from exc
                time.sleep(1.0)
        ks = settings.cassandra_keyspace
        self.profile_stmt = self.session.prepare(_insert(ks, "user_profiles", (*PROFILE_COLUMNS, WRITTEN_AT)))
        self.session_stmt = self.session.prepare(_insert(ks, "sessions", SESSION_COLUMNS))
        self.item_stmt = self.session.prepare(_insert(ks, "item_vectors", (*ITEM_COLUMNS, WRITTEN_AT)))
        self.read_stmt = self.session.prepare(
            f"SELECT {', '.join((*PROFILE_COLUMNS, WRITTEN_AT))} FROM {ks}.user_profiles WHERE user_id IN ?")
        self.item_read_stmt = self.session.prepare(
            f"SELECT {', '.join((*ITEM_COLUMNS, WRITTEN_AT))} FROM {ks}.item_vectors WHERE item_id IN ?")
        self.writes = 0
        self.retries = 0

    def write_rows(self, profiles: list[UserProfile], sessions: list[SessionSummary]) -> None:
        """Upsert profiles and closed sessions concurrently; returns when all are acknowledged."""
        now = datetime.now(tz=UTC)
        self._execute_many([(self.profile_stmt, (*profile_row(p), now, p.seq)) for p in profiles]
                           + [(self.session_stmt, (*session_row(s), s.seq)) for s in sessions])

    def read_rows(self, user_ids: list[str]) -> list[dict[str, object]]:
        """The `user_profiles` rows of these users that exist (for rehydration)."""
        return self._read(self.read_stmt, (*PROFILE_COLUMNS, WRITTEN_AT), user_ids, "profiles")

    def read_items(self, item_ids: list[str]) -> list[dict[str, object]]:
        """The `item_vectors` rows of these items that exist (for rehydration)."""
        return self._read(self.item_read_stmt, (*ITEM_COLUMNS, WRITTEN_AT), item_ids, "item vectors")

    def _read(self, stmt: object, cols: tuple[str, ...], keys: list[str], what: str) -> list[dict[str, object]]:
        """Rows by key: IN queries of 100 keys, run concurrently.

        A failing read raises like a failing write after the same deadline: rehydration must not
        silently fall back to cold state while Cassandra is merely slow.
        """
        from cassandra.concurrent import execute_concurrent_with_args

        chunks = [(keys[i : i + 100],) for i in range(0, len(keys), 100)]
        deadline = time.monotonic() + self.settings.cassandra_write_timeout_s
        while True:
            results = execute_concurrent_with_args(self.session, stmt, chunks,
                                                   concurrency=self.settings.cassandra_max_in_flight,
                                                   raise_on_first_error=False)
            failed = [r.result_or_exc for r in results if not r.success]
            if not failed:
                return [dict(zip(cols, row, strict=True)) for r in results for row in r.result_or_exc]
            if time.monotonic() > deadline:
                msg = (f"reading {len(keys)} {what} from Cassandra kept failing for "
                       f"{self.settings.cassandra_write_timeout_s}s (last: {failed[0]}); the job restarts from its "
                       "last checkpoint")
                raise InfraError(msg)
            time.sleep(0.5)

    def write_items(self, items: list[tuple[str, ItemVector]]) -> None:
        """Upsert item vectors concurrently; returns when all are acknowledged."""
        work = []
        now = datetime.now(tz=UTC)
        for item_id, v in items:
            updated = datetime.fromtimestamp(v.updated_ts / 1000, tz=UTC) if v.updated_ts > 0 else None
            work.append((self.item_stmt, (item_id, ITEM_SCHEMA_VERSION, v.seq, v.vector, v.bias, v.update_count,
                                          updated, now, v.seq)))
        self._execute_many(work)

    def _execute_many(self, rows: list[tuple[object, tuple[object, ...]]]) -> None:
        from cassandra.concurrent import execute_concurrent
        from cassandra.query import BatchStatement, BatchType

        # Unlogged batches of `cassandra_batch_rows` upserts: one request and one response per batch. The
        # driver parses responses in Python, and per-row requests cost the job more interpreter time than
        # its own logic. Each row keeps its own USING TIMESTAMP, so a batch is as idempotent as its rows.
        size = self.settings.cassandra_batch_rows
        work = []
        for i in range(0, len(rows), size):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for stmt, values in rows[i : i + size]:
                batch.add(stmt, values)
            work.append((batch, None))
        deadline = time.monotonic() + self.settings.cassandra_write_timeout_s
        delay = 0.05
        while work:
            results = execute_concurrent(self.session, work, concurrency=self.settings.cassandra_max_in_flight,
                                         raise_on_first_error=False)
            failed = [(w, r.result_or_exc) for w, r in zip(work, results, strict=True) if not r.success]
            self.writes += len(work) - len(failed)  # batches
            if not failed:
                return
            self.retries += len(failed)
            exc = failed[0][1]
            if time.monotonic() + delay > deadline:
                msg = (
                    f"{len(failed)} Cassandra writes kept failing for {self.settings.cassandra_write_timeout_s}s "
                    f"(last: {type(exc).__name__}: {exc}); the job fails and restarts from its last checkpoint. "
                    f"Check Cassandra is up at {self.settings.cassandra_hosts}:{self.settings.cassandra_port}."
                )
                raise InfraError(msg) from exc if isinstance(exc, BaseException) else None
            log.warning("retrying %d failed Cassandra writes in %.2fs: %s", len(failed), delay, exc)
            time.sleep(delay)  # back-pressure: the operator thread waits for Cassandra
            delay = min(delay * 2, 2.0)
            work = [w for w, _ in failed]

    def close(self) -> None:
        """Shut the driver down (operator `close()`)."""
        self.cluster.shutdown()


class WriterFactory:
    """Opens a `CassandraWriter` inside an operator's `open()`; pickled into the job with the settings only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> CassandraWriter:
        """A connected writer (retries the connection until `cassandra_write_timeout_s`)."""
        return CassandraWriter(self.settings)

"""Reads of profile and item rows from inside the job: rehydration of users and items without state.

The job writes its rows through the Java Cassandra sink (`pipeline.sources_sinks.cassandra_rows_sink`);
it reads them only when a user or item stage meets a key with no state whose row predates its empty start
(docs/operations.md, "Restart choices"). The operators get a `ReaderFactory` (picklable, settings only)
and connect in `open()`: `operators/` never imports this module. A read that keeps failing for
`cassandra_write_timeout_s` fails the job (it restarts from its last checkpoint) rather than letting a
user start cold while Cassandra is merely slow.
"""

from __future__ import annotations

import time

from operators.profile.rows import PROFILE_COLUMNS, WRITTEN_AT
from pipeline.errors import ConfigError, InfraError
from pipeline.settings import Settings

ITEM_COLUMNS = ("item_id", "schema_version", "seq", "vector", "bias", "updates", "updated_at")


class CassandraReader:
    """Prepared reads with retry; one per operator instance (opened in `open()`)."""

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
        self.read_stmt = self.session.prepare(
            f"SELECT {', '.join((*PROFILE_COLUMNS, WRITTEN_AT))} FROM {ks}.user_profiles WHERE user_id IN ?")
        self.item_read_stmt = self.session.prepare(
            f"SELECT {', '.join((*ITEM_COLUMNS, WRITTEN_AT))} FROM {ks}.item_vectors WHERE item_id IN ?")

    def read_rows(self, user_ids: list[str]) -> list[dict[str, object]]:
        """The `user_profiles` rows of these users that exist (for rehydration)."""
        return self._read(self.read_stmt, (*PROFILE_COLUMNS, WRITTEN_AT), user_ids, "profiles")

    def read_items(self, item_ids: list[str]) -> list[dict[str, object]]:
        """The `item_vectors` rows of these items that exist (for rehydration)."""
        return self._read(self.item_read_stmt, (*ITEM_COLUMNS, WRITTEN_AT), item_ids, "item vectors")

    def _read(self, stmt: object, cols: tuple[str, ...], keys: list[str], what: str) -> list[dict[str, object]]:
        """Rows by key: IN queries of 100 keys, run concurrently.

        A read that keeps failing raises after `cassandra_write_timeout_s`: rehydration must not silently
        fall back to cold state while Cassandra is merely slow.
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

    def close(self) -> None:
        """Shut the driver down (operator `close()`)."""
        self.cluster.shutdown()


class ReaderFactory:
    """Opens a `CassandraReader` inside an operator's `open()`; pickled into the job with the settings only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self) -> CassandraReader:
        """A connected reader (retries the connection until `cassandra_write_timeout_s`)."""
        return CassandraReader(self.settings)

"""Cassandra session and schema, from the CQL kept under state_schemas/cql/."""

from __future__ import annotations

import logging
from importlib import resources

from pipeline.settings import Settings

# The driver warns on every connect to a single-node loopback cluster about protocol downgrade
# and missing DC; those are expected locally.
logging.getLogger("cassandra").setLevel(logging.ERROR)


def connect(settings: Settings, *, keyspace: str | None = None, connect_timeout: float = 10):  # noqa: ANN201
    """Cluster + session to the configured contact points, logged in when the settings have credentials.

    The caller shuts the cluster down. A refused or missing login raises ConfigError naming the settings
    to fix (`pipeline.credentials`); other connection errors are the driver's.
    """
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    from pipeline.credentials import cassandra_auth_provider, cassandra_login_error

    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(), request_timeout=30)
    cluster = Cluster(
        settings.cassandra_contact_points,
        port=settings.cassandra_port,
        connect_timeout=connect_timeout,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        # v4, not v5: v5 frames every message in checksummed segments, which this driver computes in
        # Python; when the job still wrote its rows through this driver, that framing cost more of the
        # interpreter than the writes themselves (the job now reads only, for rehydration).
        protocol_version=4,
        auth_provider=cassandra_auth_provider(settings),
    )
    try:
        session = cluster.connect(keyspace)
    except Exception as exc:
        cluster.shutdown()
        login = cassandra_login_error(settings, exc)
        if login is not None:
            raise login from exc
        raise
    return cluster, session


def check_login(settings: Settings, *, connect_timeout: float = 10) -> None:
    """Connect once and hang up: a refused login raises ConfigError naming the settings (a preflight)."""
    cluster, _ = connect(settings, connect_timeout=connect_timeout)
    cluster.shutdown()


def schema_statements(settings: Settings) -> list[str]:
    """The keyspace and table DDL, in file order, with settings substituted."""
    out: list[str] = []
    cql_dir = resources.files("state_schemas") / "cql"
    for f in sorted((p for p in cql_dir.iterdir() if p.name.endswith(".cql")), key=lambda p: p.name):
        text = f.read_text().format(
            keyspace=settings.cassandra_keyspace, replication_factor=settings.cassandra_replication_factor
        )
        body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        out += [stmt.strip() for stmt in body.split(";") if stmt.strip()]
    return out


def apply_schema(settings: Settings) -> int:
    """Create keyspace and tables if missing (idempotent); return the number of statements run."""
    cluster, session = connect(settings)
    try:
        stmts = schema_statements(settings)
        for stmt in stmts:
            session.execute(stmt, timeout=60)
        return len(stmts)
    finally:
        cluster.shutdown()



def profile_rows(settings: Settings, users: list[str], columns: str) -> dict[str, object]:
    """user_id → row of `columns` from user_profiles, read in IN-chunks of 100 (absent users are left out)."""
    from cassandra.query import ValueSequence

    cluster, session = connect(settings, keyspace=settings.cassandra_keyspace)
    try:
        out: dict[str, object] = {}
        for i in range(0, len(users), 100):
            rows = session.execute(
                f"SELECT user_id, {columns} FROM user_profiles WHERE user_id IN %s",
                (ValueSequence(users[i : i + 100]),),
            )
            out.update({r.user_id: r for r in rows})
        return out
    finally:
        cluster.shutdown()


def event_counts(settings: Settings, users: list[str]) -> dict[str, int]:
    """`event_count` of each of `users` in user_profiles (missing users are absent from the result)."""
    return {u: r.event_count for u, r in profile_rows(settings, users, "event_count").items()}  # type: ignore[attr-defined]


def profile_totals(settings: Settings, user_prefix: str) -> tuple[int, int]:
    """(users, summed `event_count`) of the user_profiles rows whose user_id starts with `user_prefix`.

    Why a full scan: an SRE checking a restore wants the totals over everyone, and the table has no
    index by prefix. It reads every row, so it is for local stacks and small tables.
    """
    from cassandra.query import SimpleStatement

    cluster, session = connect(settings, keyspace=settings.cassandra_keyspace)
    try:
        users = events = 0
        for row in session.execute(SimpleStatement("SELECT user_id, event_count FROM user_profiles", fetch_size=5000)):
            if row.user_id.startswith(user_prefix):
                users += 1
                events += row.event_count or 0
        return users, events
    finally:
        cluster.shutdown()

"""Credentials against real servers: Kafka with a SASL listener, Cassandra with PasswordAuthenticator.

This module starts a stack of its own (`liverec infra up` code, other ports, its own directory; the
shared stack is not touched) once, and stops it by pid at the end. The job's user logs in to both with
passwords given in the environment or in files; the passwords carry a token that must never show up
in what liverec prints or what the job and the servers log.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from pipeline import generator
from pipeline.cassandra_io import connect, profile_rows
from pipeline.cli import app
from pipeline.errors import ConfigError, InfraError
from pipeline.infra import stack as infra
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import check_login, ensure_topics, produce, read_committed
from pipeline.settings import Settings, load_settings

pytestmark = pytest.mark.integration

USER = "liverec_job"


@dataclass(frozen=True)
class AuthStack:
    """The stack with authentication on, and how the job's user logs in to it."""

    settings: Settings  # loaded from `env`: Kafka password from the environment, Cassandra's from a file
    env: dict[str, str]
    token: str  # inside both passwords; must never be printed or logged
    kafka_password: str
    cassandra_password: str
    root: Path


def _free_port(span: int = 1) -> int:
    """A port p with p .. p+span-1 free on loopback (Kafka listens on port, port + 1 and port + 2)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + span > 65535:
            continue
        try:
            for p in range(port, port + span):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port range on loopback")


def _load(env: dict[str, str]) -> Settings:
    """Settings as a process with `env` would load them (the cache dir and the JDK stay the session's)."""
    with pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if "PASSWORD" in v or "SASL" in v or "SSL" in v]:
            mp.delenv(var)  # a credential of the caller's shell would clash with the ones set here
        for key, value in env.items():
            mp.setenv(key, value)
        return load_settings()


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    root = tmp_path_factory.mktemp("auth-stack")
    token = uuid.uuid4().hex[:12]
    # a quote, an apostrophe and a backslash in each: JAAS, SQL, .properties and CQL quoting all take part
    kafka_password, cassandra_password = f"K{token}\"k'\\", f"C{token}'c\"\\"
    pw_file = root / "cassandra-password"
    pw_file.write_text(cassandra_password + "\n")
    pw_file.chmod(0o600)
    env = {
        "LIVEREC_LOCAL_STACK_DIR": str(root / "stack"),
        # SASL_PLAINTEXT on this port, the controller on the next, SASL_SSL on the one after
        "LIVEREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port(3)}",
        "LIVEREC_CASSANDRA_PORT": str(_free_port()),
        "LIVEREC_CASSANDRA_STORAGE_PORT": str(_free_port()),
        "LIVEREC_CASSANDRA_JMX_PORT": str(_free_port()),
        "LIVEREC_KAFKA_HEAP": "384m",
        "LIVEREC_CASSANDRA_HEAP": "768M",
        "LIVEREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LIVEREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LIVEREC_KAFKA_SASL_USERNAME": USER,
        "LIVEREC_KAFKA_SASL_PASSWORD": kafka_password,
        "LIVEREC_CASSANDRA_USERNAME": USER,
        "LIVEREC_CASSANDRA_PASSWORD_FILE": str(pw_file),
    }
    settings = _load(env)
    t0 = time.monotonic()
    infra.up(settings, log=lambda m: print(f"[auth stack] {m}"))
    print(f"[auth stack] up in {time.monotonic() - t0:.1f}s")
    try:
        yield AuthStack(settings, env, token, kafka_password, cassandra_password, root)
    finally:
        infra.down(settings, log=lambda m: print(f"[auth stack] {m}"))


def _isolated(auth: AuthStack, **update: object) -> Settings:
    s = auth.settings.model_copy(update={"topic_prefix": f"c{uuid.uuid4().hex[:8]}-", **update})
    ensure_topics(s)
    return s


def _run(env: dict[str, str | None], *args: str) -> tuple[int, str]:
    """`liverec ARGS` in this process with `env` on top of ours (None: unset); exit code and all output."""
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, " ".join(result.output.split())  # rich wraps long messages at 80 columns


def _grep(paths: list[Path], token: str) -> list[str]:
    """Lines of every file under `paths` that contain `token`."""
    found = []
    for base in paths:
        for f in [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()):
            with f.open("rb") as fh:
                for n, line in enumerate(fh, 1):
                    if token.encode() in line:
                        found.append(f"{f}:{n}: {line[:200]!r}")
    return found


def _logs(auth: AuthStack) -> list[Path]:
    """The Flink logs of this test process and the auth stack's server logs."""
    flink = Path(os.environ.get("FLINK_LOG_DIR", auth.settings.cache_dir / "logs" / "flink"))
    return [flink, auth.settings.stack_dir / "logs"]


def test_cassandra_refuses_a_wrong_or_missing_password_naming_the_settings(auth: AuthStack) -> None:
    wrong = auth.settings.model_copy(update={"cassandra_password": SecretStr("not-it"),
                                             "cassandra_password_file": None})
    with pytest.raises(ConfigError, match=f"refused the login of user '{USER}'.*LIVEREC_CASSANDRA_PASSWORD"):
        connect(wrong)
    anonymous = auth.settings.model_copy(update={"cassandra_username": None, "cassandra_password": None,
                                                  "cassandra_password_file": None})
    with pytest.raises(ConfigError, match="requires a login.*set LIVEREC_CASSANDRA_USERNAME"):
        connect(anonymous)
    code, out = _run({**auth.env, "LIVEREC_CASSANDRA_PASSWORD": "not-it", "LIVEREC_CASSANDRA_PASSWORD_FILE": None},
                     "profiles")
    assert code == 2, out
    assert "refused the login" in out and "LIVEREC_CASSANDRA_PASSWORD" in out, out


def test_kafka_refuses_a_wrong_or_missing_password_naming_the_settings(auth: AuthStack) -> None:
    t0 = time.monotonic()
    wrong = auth.settings.model_copy(update={"kafka_sasl_password": SecretStr("not-it")})
    # the refusal shows as the broker's error, or as the connection it closes right after (a race in the client)
    with pytest.raises(ConfigError, match=f"SCRAM-SHA-512 login of user '{USER}'.*LIVEREC_KAFKA_SASL_PASSWORD"):
        check_login(wrong, timeout_s=5)
    plaintext = auth.settings.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    with pytest.raises(InfraError, match="requires SASL or TLS.*LIVEREC_KAFKA_SECURITY_PROTOCOL"):
        check_login(plaintext, timeout_s=5)
    # `liverec job` stops before any Flink job is built, with the same message
    code, out = _run({**auth.env, "LIVEREC_KAFKA_SASL_PASSWORD": "not-it"}, "job")
    assert code == 2, out
    assert "SCRAM-SHA-512 login of user" in out and "LIVEREC_KAFKA_SASL_PASSWORD" in out, out
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_clients_create_topics_produce_and_read_with_each_mechanism(auth: AuthStack, mechanism: str) -> None:
    s = _isolated(auth, kafka_sasl_mechanism=mechanism)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    assert produce(s, s.topic("events"), records) == 20
    assert sorted(read_committed(s, s.topic("events"))) == sorted(v for _, v in records)


def _tls(auth: AuthStack, **update: object) -> Settings:
    """The same user over the stack's SASL_SSL listener, trusting its self-signed certificate."""
    host, port = auth.settings.kafka_bootstrap.rsplit(":", 1)
    return _isolated(auth, kafka_bootstrap=f"{host}:{int(port) + 2}", kafka_security_protocol="SASL_SSL",
                     kafka_ssl_cafile=auth.settings.stack_dir / "kafka" / "ca.pem", **update)


def test_kafka_clients_log_in_over_tls(auth: AuthStack) -> None:
    s = _tls(auth, kafka_sasl_mechanism="SCRAM-SHA-256")
    assert produce(s, s.topic("events"), [(b"k", b"over-tls")]) == 1
    assert list(read_committed(s, s.topic("events"))) == [b"over-tls"]
    # without the CA file the self-signed certificate is refused, and the message names the setting
    with pytest.raises(ConfigError, match="CERTIFICATE_VERIFY_FAILED.*LIVEREC_KAFKA_SSL_CAFILE"):
        check_login(s.model_copy(update={"kafka_ssl_cafile": None}), timeout_s=5)


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import click

    out = [prefix]
    if isinstance(group, click.Group):
        for name, cmd in group.commands.items():
            out += _commands(cmd, (*prefix, name))
    return out


def test_cli_logs_in_from_files_and_env_and_never_prints_the_passwords(auth: AuthStack, tmp_path: Path) -> None:
    # the other way round from the fixture: Kafka's password from a file, Cassandra's from the environment
    kafka_file = tmp_path / "kafka-password"
    kafka_file.write_text(auth.kafka_password)
    env: dict[str, str | None] = {
        **auth.env, "LIVEREC_KAFKA_SASL_PASSWORD": None, "LIVEREC_KAFKA_SASL_PASSWORD_FILE": str(kafka_file),
        "LIVEREC_CASSANDRA_PASSWORD": auth.cassandra_password, "LIVEREC_CASSANDRA_PASSWORD_FILE": None,
        "LIVEREC_TOPIC_PREFIX": f"cli{uuid.uuid4().hex[:6]}-"}
    outputs = []
    for args in (("infra", "init"), ("send", "--events", "120", "--users", "4", "--user-prefix", "cliu"),
                 ("profiles", "--user-prefix", "cliu"), ("infra", "status")):
        code, out = _run(env, *args)
        assert code == 0, (args, out)
        outputs.append(out)
    assert "sent 120 events of 4 users" in outputs[1]
    assert "keyspace liverec" in outputs[2]
    prefix = str(env["LIVEREC_TOPIC_PREFIX"])
    sent = list(read_committed(auth.settings.model_copy(update={"topic_prefix": prefix}), f"{prefix}events"))
    assert len(sent) == 120
    commands = _commands(typer.main.get_command(app))
    assert ("cluster", "submit") in commands and ("infra", "up") in commands
    for command in commands:
        code, out = _run(env, *command, "--help")
        assert code == 0, (command, out)
        outputs.append(out)
    assert not [o for o in outputs if auth.token in o]


@pytest.mark.flink
def test_the_job_logs_in_to_both_writes_profiles_and_logs_no_password(auth: AuthStack) -> None:
    from pipeline.flink_env import stream_env
    from pipeline.jobs import liverec_job

    s = _isolated(auth, checkpoint_interval_ms=1000, profile_flush_ms=500, item_flush_ms=500)
    start = int(time.time() * 1000) - 3600 * 1000
    batch = generator.events(600, users=20, malformed_every=100, start_ms=start, seed=5,
                             user_prefix=f"{s.topic_prefix}u")
    produce(s, s.topic("events"), batch.records)
    t0 = time.monotonic()
    env = stream_env(s)
    liverec_job.build(env, s)  # the Table source, the KafkaSource and every KafkaSink log in with SCRAM
    client = env.execute_async(f"{s.topic_prefix}job")
    users = sorted(batch.per_user)
    got: dict[str, int] = {}

    def done() -> bool:
        got.update({u: r.event_count for u, r in profile_rows(s, users, "event_count").items()})
        return all(got.get(u) == batch.per_user[u] for u in users)

    try:
        ok = wait_until(done, 240, interval_s=2)
        dead = list(read_committed(s, s.topic("dead-letter"), idle_ms=2000))
    finally:
        client.cancel().result()
    print(f"job ran {time.monotonic() - t0:.1f}s")
    assert ok, {u: (got.get(u), batch.per_user[u]) for u in users if got.get(u) != batch.per_user[u]}
    assert len(dead) == batch.malformed  # a transactional sink committed through the SASL login
    code, out = _run({**auth.env, "LIVEREC_TOPIC_PREFIX": s.topic_prefix}, "profiles", "--user-prefix",
                     f"{s.topic_prefix}u")
    assert code == 0 and f"{len(users)} users" in out and f"{sum(batch.per_user.values())} events" in out, out

    logs = _logs(auth)
    flink_log = "".join(p.read_text(errors="replace") for p in logs[0].glob("*.log"))
    # the Kafka clients' configurations were logged, with the login masked
    assert "sasl.mechanism = SCRAM-SHA-512" in flink_log and "sasl.jaas.config = [hidden]" in flink_log
    assert not _grep(logs, auth.token), _grep(logs, auth.token)[:5]


@pytest.mark.flink
def test_count_job_reads_and_writes_with_plain_over_tls(auth: AuthStack) -> None:
    """PLAIN over TLS through the connector's shaded PlainLoginModule (the job above uses SCRAM without TLS)."""
    from pipeline.flink_env import stream_env
    from pipeline.jobs import count_job

    s = _tls(auth, kafka_sasl_mechanism="PLAIN")
    batch = generator.events(200, users=10, start_ms=int(time.time() * 1000))
    produce(s, s.topic("events"), batch.records)
    env = stream_env(s)
    count_job.build(env, s, bounded=True, group_id=f"{s.topic_prefix}count")
    env.execute(f"{s.topic_prefix}count")
    outputs = list(read_committed(s, s.topic("user-counts"), idle_ms=3000))
    assert len(outputs) == len(batch.records)
    assert not _grep(_logs(auth), auth.token)


def test_the_java_rows_sink_logs_in_and_a_refused_login_fails_at_once(auth: AuthStack) -> None:
    import json

    from py4j.protocol import Py4JJavaError
    from pyflink.java_gateway import get_gateway

    from pipeline.flink_env import stream_env
    from pipeline.sources_sinks import cassandra_rows_sink
    from state_schemas.cassandra_rows import USER_PROFILES, encode_rows

    stream_env(auth.settings)  # starts the gateway as every job does, with the sink jar on its class path
    jvm = get_gateway().jvm

    def writer(s: Settings) -> object:
        sink = cassandra_rows_sink(s, "creds").get_java_function()
        assert auth.token not in str(sink.toString())
        metrics = jvm.org.apache.flink.metrics.groups.UnregisteredMetricsGroup()
        return jvm.io.liverec.cassandra.CassandraRowsWriter(sink, metrics)

    user = f"java-sink-{auth.token}"
    w = writer(auth.settings)
    try:
        w.write(encode_rows([(USER_PROFILES, 3, json.dumps({"user_id": user, "event_count": 5}))]), None)
        w.flush(False)
    finally:
        w.close()
    assert profile_rows(auth.settings, [user], "event_count")[user].event_count == 5

    wrong = auth.settings.model_copy(update={"cassandra_password": SecretStr("not-it"),
                                             "cassandra_password_file": None, "cassandra_write_timeout_s": 120.0})
    anonymous = wrong.model_copy(update={"cassandra_username": None, "cassandra_password": None})
    for s, expected in ((wrong, f"refused the login of user '{USER}'"), (anonymous, "requires a login")):
        started = time.monotonic()
        with pytest.raises(Py4JJavaError) as err:
            writer(s)
        msg = str(err.value.java_exception.getMessage())
        assert expected in msg and "LIVEREC_CASSANDRA_PASSWORD" in msg, msg
        assert "not-it" not in msg and auth.token not in msg
        assert time.monotonic() - started < 60, "a refused login must not be retried until the write timeout"

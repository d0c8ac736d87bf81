"""`liverec infra up | down | status | logs`: the local default stack, idempotently.

`up` resolves jars, starts whatever is not running, waits with a deadline until each server answers
a real request, makes sure the configured Kafka and Cassandra users can log in (when the settings have
credentials), then creates topics and tables. A second `up` is a no-op. `down` stops exactly the
pids that `up` recorded. Servers live under `Settings.stack_dir`, so a second stack (other ports, its
own `LIVEREC_LOCAL_STACK_DIR`) runs beside the default one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InfraError
from pipeline.infra import jars, procs
from pipeline.infra.servers import CassandraServer, KafkaServer
from pipeline.settings import Settings

Log = Callable[[str], None]


@dataclass(frozen=True)
class ServerStatus:
    """What `status` reports for one server."""

    name: str
    pid: int | None
    answering: bool
    address: str
    logs: list[Path]

    @property
    def up(self) -> bool:
        return self.pid is not None and self.answering


def servers(settings: Settings) -> list[KafkaServer | CassandraServer]:
    """The managed servers, in start order."""
    return [KafkaServer(settings), CassandraServer(settings)]


def _answering(server: KafkaServer | CassandraServer) -> bool:
    try:
        return server.ready()
    except Exception:  # noqa: BLE001 - not answering is the answer
        return False


def up(settings: Settings, *, timeout_s: float = 180.0, log: Log = print) -> list[ServerStatus]:
    """Start what is missing, wait until it answers, create topics and tables."""
    jars.resolve_all(settings.cache_dir, log=log)
    started: list[KafkaServer | CassandraServer] = []
    for srv in servers(settings):
        pid = procs.running_pid(srv.svc)
        if pid is not None:
            log(f"{srv.name}: already running (pid {pid})")
            continue
        for port in srv.ports:
            _check_port_free(srv.name, srv.host, port)
        pid = srv.start()
        log(f"{srv.name}: started pid {pid}; logs in {srv.svc.log_dir}")
        started.append(srv)
    for srv in servers(settings):
        t0 = time.monotonic()
        ok = procs.wait_until(lambda s=srv: procs.running_pid(s.svc) is not None and s.ready(), timeout_s)
        if not ok:
            alive = procs.running_pid(srv.svc) is not None
            tail = _tail(srv.logs, 20)
            msg = (
                f"{srv.name} did not answer within {timeout_s:.0f}s "
                f"(process {'alive' if alive else 'exited'}). Last log lines:\n{tail}\n"
                f"Full logs: {', '.join(str(p) for p in srv.logs)}"
            )
            raise InfraError(msg)
        if srv in started:
            log(f"{srv.name}: answering after {time.monotonic() - t0:.1f}s")
        srv.login_ready()  # with credentials in the settings: the configured user can log in
    init(settings, log=log)
    return status(settings)


def init(settings: Settings, *, log: Log = print) -> None:
    """Create the declared topics and the Cassandra keyspace/tables on the configured servers.

    Works against any Kafka/Cassandra the settings point at (local stack or an existing cluster).
    """
    from pipeline.cassandra_io import apply_schema
    from pipeline.kafka_io import check_login, ensure_topics

    check_login(settings)  # a refused login fails here, in seconds, naming the settings
    created = ensure_topics(settings)
    log(f"kafka: created topics {', '.join(created)}" if created else "kafka: all declared topics exist")
    n = apply_schema(settings)
    log(f"cassandra: schema applied ({n} statements, keyspace {settings.cassandra_keyspace})")


def down(settings: Settings, *, log: Log = print) -> list[int]:
    """Stop exactly the pids we recorded (Cassandra first: it is the slower to drain)."""
    stopped = []
    for srv in reversed(servers(settings)):
        pid = procs.stop(srv.svc)
        if pid is None:
            log(f"{srv.name}: not running")
        else:
            log(f"{srv.name}: stopped pid {pid}")
            stopped.append(pid)
    return stopped


def status(settings: Settings) -> list[ServerStatus]:
    """Pid recorded and alive, and whether it answers a real request."""
    out = []
    for srv in servers(settings):
        pid = procs.running_pid(srv.svc)
        out.append(
            ServerStatus(
                name=srv.name,
                pid=pid,
                answering=pid is not None and _answering(srv),
                address=f"{srv.host}:{srv.port}",
                logs=srv.logs,
            )
        )
    return out


def stray_jvms(settings: Settings) -> list[int]:
    """Pids of any process carrying a liverec service marker (for 'no stray JVMs' checks)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmd = (proc_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if b"-Dliverec.service=" in cmd and b"liverec.service=" in cmd:
            found.append(int(proc_dir.name))
    return sorted(found)


def _check_port_free(name: str, host: str, port: int) -> None:
    """Refuse to start a second server on a port something else already listens on."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        if sock.connect_ex((host, port)) == 0:
            msg = (
                f"{name}: {host}:{port} is already taken by a process liverec did not start "
                f"(no pid file under this cache). Stop that process, or point liverec at it with "
                f"settings instead of starting a local server (docs/configuration.md)."
            )
            raise InfraError(msg)


def _tail(paths: list[Path], n: int) -> str:
    for p in paths:
        if p.exists():
            return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    return "(no log written)"

"""Start and stop server processes by the pid we recorded, never by name.

Each server is started with a `-Dliverec.service=<name>` marker on its command line, so a recycled
pid that now belongs to another program is never mistaken for ours (and never killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InfraError


@dataclass(frozen=True)
class Service:
    """A server process managed by `liverec infra`."""

    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def marker(self) -> str:
        return f"-Dliverec.service={self.name}"

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / "stdout.log"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running_pid(svc: Service) -> int | None:
    """The pid of our live process for this service, or None (stale pid files are removed)."""
    if not svc.pid_file.exists():
        return None
    try:
        pid = int(svc.pid_file.read_text().strip())
    except ValueError:
        svc.pid_file.unlink(missing_ok=True)
        return None
    if svc.marker in _cmdline(pid) and not _is_zombie(pid):
        return pid
    svc.pid_file.unlink(missing_ok=True)
    return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def start(svc: Service, cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start `cmd` detached (own session, survives the caller), record its pid, return it."""
    svc.run_dir.mkdir(parents=True, exist_ok=True)
    svc.log_dir.mkdir(parents=True, exist_ok=True)
    if svc.marker not in cmd:
        msg = f"internal: {svc.name} command must carry the marker {svc.marker}"
        raise InfraError(msg)
    with svc.stdout_log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv built by us
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    # Between fork and exec the child still shows our own command line: wait for the exec so that
    # the marker check in running_pid() sees the server, not a stranger.
    if not wait_until(lambda: svc.marker in _cmdline(proc.pid) or proc.poll() is not None, 10, interval_s=0.01):
        msg = f"{svc.name}: process {proc.pid} did not exec within 10 s; see {svc.stdout_log}"
        raise InfraError(msg)
    svc.pid_file.write_text(str(proc.pid))
    return proc.pid


def stop(svc: Service, *, timeout_s: float = 60.0) -> int | None:
    """SIGTERM our recorded pid, wait, then SIGKILL; return the pid stopped (None if none ran)."""
    pid = running_pid(svc)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: running_pid(svc) is None or _is_zombie(pid), timeout_s, interval_s=0.2):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: running_pid(svc) is None or _is_zombie(pid), 15.0, interval_s=0.1)
    _reap(pid)
    svc.pid_file.unlink(missing_ok=True)
    return pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(check: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.5) -> bool:
    """Poll `check` until it returns True or the deadline passes; return whether it did."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a probe that raises simply is not ready yet
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)

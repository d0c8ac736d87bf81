"""A local Flink standalone cluster from the apache-flink wheel, and job operations against it.

The wheel ships Flink's scripts and `flink` CLI in `pyflink/bin` (FLINK_HOME = the pyflink folder).
`liverec cluster …` wraps them with the project's configuration (flink-conf/local/config.yaml plus
paths under the cache), so the raw `flink` CLI works the same way (docs/operations.md shows both).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InfraError
from pipeline.flink_env import reporter_configuration
from pipeline.infra.procs import wait_until
from pipeline.settings import REPO_ROOT, Settings, settings_env

JOB_SCRIPT = REPO_ROOT / "pipeline" / "jobs" / "liverec_job.py"


def flink_home() -> Path:
    """The pyflink package folder, which is a complete FLINK_HOME."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


@dataclass(frozen=True)
class ClusterPaths:
    """Where the local cluster keeps its configuration, logs, pids and state."""

    base: Path

    @property
    def conf(self) -> Path:
        return self.base / "conf"

    @property
    def logs(self) -> Path:
        return self.base / "log"

    @property
    def pids(self) -> Path:
        return self.base / "pid"

    @property
    def lib(self) -> Path:
        return self.base / "lib"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.base / "savepoints"


def paths(settings: Settings) -> ClusterPaths:
    """Cluster paths under the cache."""
    return ClusterPaths(settings.cache_dir / "flink-cluster")


def checkpoint_uri(settings: Settings) -> str:
    """Where jobs submitted to the local cluster keep their checkpoints (what `cluster_env` passes on)."""
    return settings.checkpoint_dir or paths(settings).checkpoints.as_uri()


def cluster_env(settings: Settings) -> dict[str, str]:
    """Environment for Flink's scripts: our conf/log/pid/lib dirs, our settings, a usable PYTHONPATH.

    The PYTHONPATH lets the TaskManagers' embedded interpreter (thread mode) import liverec and pyflink.
    """
    import site

    p = paths(settings)
    py_path = os.pathsep.join([*site.getsitepackages(), str(REPO_ROOT)])
    # The job's driver (`flink run -py`) reads its settings from LIVEREC_* variables: pass ours on (a secret as
    # its value, or as its file when it came from one; never printed).
    exported = settings_env(settings)
    env = {
        **os.environ,
        **exported,
        "FLINK_HOME": str(flink_home()),
        "FLINK_CONF_DIR": str(p.conf),
        "FLINK_LOG_DIR": str(p.logs),
        "FLINK_PID_DIR": str(p.pids),
        "FLINK_LIB_DIR": str(p.lib),
        "PYTHONPATH": py_path,
    }
    env.setdefault("LIVEREC_CHECKPOINT_DIR", p.checkpoints.as_uri())
    if settings.checkpoint_dir is None:
        env["LIVEREC_CHECKPOINT_DIR"] = p.checkpoints.as_uri()
    return env


def write_conf(settings: Settings, *, task_managers: int) -> Path:
    """Generate the cluster's conf dir from flink-conf/local/config.yaml plus cache paths."""
    p = paths(settings)
    for d in (p.conf, p.logs, p.pids, p.lib, p.checkpoints, p.savepoints):
        d.mkdir(parents=True, exist_ok=True)
    # The wheel's lib/ lacks flink-python (it sits in opt/); the cluster's classpath needs it, and
    # site-packages is not ours to change: link both into our own lib dir.
    p.lib.mkdir(parents=True, exist_ok=True)
    for old in p.lib.iterdir():
        old.unlink()
    for jar in [*(flink_home() / "lib").glob("*.jar"), *(flink_home() / "opt").glob("flink-python*.jar")]:
        (p.lib / jar.name).symlink_to(jar)
    for name in ("log4j.properties", "log4j-cli.properties", "log4j-console.properties", "logback.xml"):
        shutil.copyfile(flink_home() / "conf" / name, p.conf / name)
    text = (REPO_ROOT / "flink-conf" / "local" / "config.yaml").read_text()
    text += (
        "\n# --- added by `liverec cluster up` ---\n"
        # flat keys: the file above already has nested `execution:`/`state:` maps
        f"env.pid.dir: {p.pids}\nenv.log.dir: {p.logs}\n"
        f"execution.checkpointing.dir: {p.checkpoints.as_uri()}\n"
        f"execution.checkpointing.savepoint-dir: {p.savepoints.as_uri()}\n"
    )
    # Reporters start with each JVM, so they come from here, not from the job: the JobManager and every
    # TaskManager take the first free port of the range and load the jar from the wheel's plugins/.
    text += "".join(f"{key}: {value}\n" for key, value in reporter_configuration(settings).items())
    (p.conf / "config.yaml").write_text(text)
    (p.conf / "masters").write_text("127.0.0.1:8081\n")
    (p.conf / "workers").write_text("127.0.0.1\n" * task_managers)
    return p.conf


def _script(settings: Settings, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(flink_home() / "bin" / name), *args]
    proc = subprocess.run(cmd, env=cluster_env(settings), capture_output=True, text=True, check=False)  # noqa: S603
    if check and proc.returncode != 0:
        msg = f"{name} {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        raise InfraError(msg)
    return proc


def _rest_ok() -> bool:
    import json
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:8081/overview", timeout=2) as r:  # noqa: S310 - loopback
        overview = json.load(r)
    return overview.get("taskmanagers", 0) >= 1


def taskmanagers() -> int:
    """TaskManagers registered with the JobManager (REST /overview)."""
    import json
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:8081/overview", timeout=2) as r:  # noqa: S310 - loopback
        return int(json.load(r).get("taskmanagers", 0))


def up(settings: Settings, *, task_managers: int = 2, timeout_s: float = 120, log=print) -> None:  # noqa: ANN001
    """Start a JobManager and `task_managers` TaskManagers on loopback; wait until they registered."""
    write_conf(settings, task_managers=task_managers)
    try:
        if taskmanagers() >= task_managers:
            log(f"flink cluster already up ({taskmanagers()} TaskManagers) at http://127.0.0.1:8081")
            return
    except OSError:
        pass
    _script(settings, "jobmanager.sh", "start")
    for _ in range(task_managers):
        _script(settings, "taskmanager.sh", "start")
    ok = wait_until(lambda: taskmanagers() >= task_managers, timeout_s)
    if not ok:
        msg = f"the Flink cluster did not come up within {timeout_s:.0f}s; logs in {paths(settings).logs}"
        raise InfraError(msg)
    log(f"flink cluster up: JobManager + {task_managers} TaskManagers, http://127.0.0.1:8081")
    log(f"logs in {paths(settings).logs}")


def down(settings: Settings, *, log=print) -> None:  # noqa: ANN001
    """Stop every TaskManager and the JobManager the scripts recorded in our pid dir."""
    _script(settings, "taskmanager.sh", "stop-all", check=False)
    _script(settings, "jobmanager.sh", "stop-all", check=False)
    log("flink cluster stopped")


def flink(settings: Settings, *args: str) -> str:
    """Run the `flink` CLI of the wheel against the local cluster; return its stdout."""
    return _script(settings, "flink", *args).stdout


def submit(settings: Settings, *, from_path: str | None = None, parallelism: int | None = None) -> str:
    """`flink run -d -py` the job (optionally from a savepoint/checkpoint); return the job id."""
    args = ["run", "-d", "-py", str(JOB_SCRIPT), "-pyexec", sys.executable, "-pyclientexec", sys.executable]
    if from_path:
        args += ["-s", from_path]
    if parallelism:
        args += ["-p", str(parallelism)]
    out = flink(settings, *args)
    found = re.search(r"JobID ([0-9a-f]{32})", out)
    if not found:
        msg = f"flink run printed no job id:\n{out[-2000:]}"
        raise InfraError(msg)
    return found.group(1)


def stop_with_savepoint(settings: Settings, job_id: str) -> str:
    """`flink stop --savepointPath` the job; return the savepoint path."""
    out = flink(settings, "stop", "--savepointPath", paths(settings).savepoints.as_uri(), job_id)
    found = re.search(r"Savepoint completed\. Path: (\S+)", out)
    if not found:
        msg = f"flink stop printed no savepoint path:\n{out[-2000:]}"
        raise InfraError(msg)
    return found.group(1)


def savepoint(settings: Settings, job_id: str) -> str:
    """`flink savepoint` a running job; return the savepoint path."""
    out = flink(settings, "savepoint", job_id, paths(settings).savepoints.as_uri())
    found = re.search(r"Savepoint completed\. Path: (\S+)", out)
    if not found:
        msg = f"flink savepoint printed no path:\n{out[-2000:]}"
        raise InfraError(msg)
    return found.group(1)


def running_jobs(settings: Settings) -> list[str]:
    """Ids of RUNNING jobs (`flink list -r`)."""
    return re.findall(r"([0-9a-f]{32}) : .* \(RUNNING\)", flink(settings, "list", "-r"))

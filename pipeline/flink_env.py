"""Settings → Flink `Configuration` and `StreamExecutionEnvironment`, in exactly one place.

Why here and not in flink-conf/: flink-conf/ holds cluster-wide settings; what the job itself needs
(jars, execution mode, checkpointing guarantees) travels with the job so that a MiniCluster run, a
`flink run` submission and a test all get the same semantics.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.infra import jars
from pipeline.settings import REPO_ROOT, Settings

PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"


def job_configuration(settings: Settings, *, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The job-level Flink options as plain strings (logged and testable without a JVM)."""
    jar_uris = ";".join(p.resolve().as_uri() for p in jars.flink_job_jars(settings.cache_dir))
    conf = {
        "pipeline.jars": jar_uris,
        "pipeline.name": settings.job_name,
        # Thread mode runs Python inside the TaskManager JVM (pemja): measured 7-25x faster keyed
        # state than process mode here (../shared/MEASUREMENTS.md).
        "python.execution-mode": settings.python_execution_mode,
        # The interpreter that runs our functions must be the one that has liverec installed.
        "python.executable": settings.python_executable or sys.executable,
        "python.client.executable": settings.python_executable or sys.executable,
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(settings.restart_attempts),
        "restart-strategy.fixed-delay.delay": f"{settings.restart_delay_ms} ms",
        "parallelism.default": str(settings.parallelism),
        "pipeline.max-parallelism": str(settings.max_parallelism),
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": f"{settings.checkpoint_timeout_ms} ms",
        "execution.checkpointing.min-pause": f"{settings.min_pause_between_checkpoints_ms} ms",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        # the MiniCluster reads this; a standalone cluster takes it from flink-conf/ (same value)
        "execution.checkpointing.num-retained": "3",
        "execution.checkpointing.dir": settings.checkpoint_uri,
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.tolerable-failed-checkpoints": str(settings.tolerable_failed_checkpoints),
        # The events source comes from the Table API (for partition/offset metadata); ALWAYS gives its
        # transformations deterministic uids too, so its Kafka offsets restore from a savepoint.
        "table.exec.uid.generation": "ALWAYS",
        # Records between the Python stages are whole batches (hundreds of KB): without debloating a
        # catch-up fills the network buffers with many batches of work and an aligned checkpoint barrier
        # waits behind all of it (checkpoints time out). Debloating keeps ~1 s of data in flight.
        "taskmanager.network.memory.buffer-debloat.enabled": "true",
    }
    conf.update(reporter_configuration(settings))
    if settings.aligned_checkpoint_timeout_ms >= 0:
        conf["execution.checkpointing.unaligned.enabled"] = "true"
        conf["execution.checkpointing.aligned-checkpoint-timeout"] = f"{settings.aligned_checkpoint_timeout_ms} ms"
    if settings.state_backend:
        conf["state.backend.type"] = settings.state_backend
    if settings.incremental_checkpoints is not None:
        conf["execution.checkpointing.incremental"] = str(settings.incremental_checkpoints).lower()
    if settings.restore_path:
        conf["execution.state-recovery.path"] = settings.restore_path
    conf.update(extra or {})
    return conf


def reporter_configuration(settings: Settings) -> dict[str, str]:
    """The Prometheus reporter's options (none when `prometheus_port` is empty).

    A MiniCluster takes them from the job's configuration; a standalone cluster only from its own
    config.yaml (`pipeline.cluster.write_conf` writes them there), as reporters start with the JVM.
    """
    if not settings.prometheus_port:
        return {}
    return {"metrics.reporter.prom.factory.class": PROMETHEUS_FACTORY,
            "metrics.reporter.prom.port": settings.prometheus_port}


def rest_configuration(settings: Settings) -> dict[str, str]:
    """A MiniCluster's REST API on loopback at `rest_port` (else it takes a random port): `liverec status` asks it.

    Only `liverec job` (and the tests that stand for it) pass these: many MiniClusters of one process (tests,
    benchmarks) would fight over one port.
    """
    port = str(settings.rest_port)
    # metrics the REST API serves are at most this old (Flink's default, 10 s, makes `status` lag behind)
    return {"rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": port, "rest.bind-port": port,
            "metrics.fetcher.update-interval": "2 s"}


def flink_home() -> Path:
    """The pyflink package folder, which is a complete FLINK_HOME (lib/, opt/, plugins/, bin/)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def prometheus_jar() -> Path:
    """The Prometheus reporter jar the apache-flink wheel ships in plugins/ (the same version as Flink)."""
    found = sorted((flink_home() / "plugins" / "metrics-prometheus").glob("flink-metrics-prometheus-*.jar"))
    if not found:
        from pipeline.errors import InfraError

        msg = (f"no flink-metrics-prometheus jar in {flink_home() / 'plugins' / 'metrics-prometheus'}: reinstall "
               "apache-flink (bin/setup), or set LIVEREC_PROMETHEUS_PORT= (empty) to run without the reporter")
        raise InfraError(msg)
    return found[-1]


def local_lib_dir(settings: Settings) -> Path:
    """FLINK_LIB_DIR of the JVM PyFlink starts: the wheel's lib/ jars plus the Prometheus reporter jar (links).

    Why: a MiniCluster looks for reporter factories on the JVM's classpath only (not in plugins/: measured,
    "could not be found for reporter prom. Available factories: []"), and PyFlink builds that classpath
    from FLINK_LIB_DIR. The wheel's own lib/ is not ours to change, hence links in the cache.
    """
    lib = settings.cache_dir / "flink-local" / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    want = {j.name: j for j in (flink_home() / "lib").glob("*.jar")}
    if settings.prometheus_port:
        jar = prometheus_jar()
        want[jar.name] = jar
    for old in lib.iterdir():
        if old.name.startswith("."):  # another process's link on its way in (below)
            continue
        if old.name not in want or not old.exists() or old.resolve() != want[old.name].resolve():
            old.unlink(missing_ok=True)
    for name, target in want.items():
        link = lib / name
        if not link.exists():
            tmp = lib / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)  # atomic: a concurrent start never sees a missing jar
    return lib


def _expose_site_packages() -> None:
    """Put this interpreter's site-packages on PYTHONPATH for the JVM we are about to start.

    Why: in thread mode pemja embeds the *base* interpreter's libpython inside the TaskManager JVM,
    which does not know about a virtualenv; without this, `import pemja`/`pyflink` fails there.
    """
    import site

    paths = [*site.getsitepackages(), str(REPO_ROOT)]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, *current]))


def stream_env(settings: Settings, *, extra: dict[str, str] | None = None):  # noqa: ANN201 - pyflink type
    """A StreamExecutionEnvironment configured from settings (local MiniCluster unless submitted)."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    # The PyFlink gateway writes its JVM log here (default would be inside site-packages).
    log_dir = settings.cache_dir / "logs" / "flink"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    # FLINK_HOME set: PyFlink then keeps our FLINK_LIB_DIR (without it, it points FLINK_LIB_DIR at the wheel's
    # lib/). Only read when this call starts the JVM; `flink run` sets both (pipeline/cluster.py).
    if "FLINK_LIB_DIR" not in os.environ:
        os.environ.setdefault("FLINK_HOME", str(flink_home()))
        os.environ["FLINK_LIB_DIR"] = str(local_lib_dir(settings))
    _expose_site_packages()
    conf = Configuration()
    for key, value in job_configuration(settings, extra=extra).items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    return env

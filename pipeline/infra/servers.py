"""Kafka (KRaft) and Cassandra as local processes: command lines, readiness probes, bootstrap.

Heaps are sized for a 2-core / 24 GiB machine that also runs a Flink MiniCluster and Python:
Kafka 768 MiB, Cassandra 1 GiB (settings `kafka_heap`, `cassandra_heap`).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from pipeline.errors import InfraError
from pipeline.infra import jars, procs
from pipeline.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"

# JDK 17 module options Cassandra 5.0 needs (its conf/jvm17-server.options, written out).
_CASSANDRA_EXPORTS = (
    "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.rmi/sun.rmi.registry", "java.rmi/sun.rmi.server", "java.sql/java.sql",
    "java.base/java.lang.ref", "jdk.unsupported/sun.misc", "jdk.compiler/com.sun.tools.javac.file",
    "jdk.attach/sun.tools.attach", "java.base/sun.nio.ch",
)
_CASSANDRA_OPENS = (
    "java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect", "java.base/jdk.internal.math", "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar", "java.base/sun.nio.ch", "java.base/java.io",
    "java.base/java.lang.reflect", "java.base/java.lang", "java.base/java.util", "java.base/java.nio",
    "jdk.management/com.sun.management.internal", "jdk.compiler/com.sun.tools.javac",
)


def host_port(addr: str, default_port: int) -> tuple[str, int]:
    """Split 'host:port' (first entry of a comma-separated list)."""
    first = addr.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host:
        return first, default_port
    return host, int(port)


def java_bin(settings: Settings) -> str:
    """The `java` to run servers with: LIVEREC_JAVA_HOME, else JAVA_HOME, else PATH."""
    import os

    for home in (settings.java_home, os.environ.get("JAVA_HOME")):
        if home and (Path(home) / "bin" / "java").exists():
            return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        msg = "no 'java' found: install a JDK 17 or set LIVEREC_JAVA_HOME to one"
        raise InfraError(msg)
    return found


def kafka_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid`` it never starts with "-", so it is also safe on a
    command line that splits options from values.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaServer:
    """Single-node Kafka broker+controller (KRaft) with storage under the cache."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.host, self.port = host_port(settings.kafka_bootstrap, 9092)
        self.base = settings.cache_dir / "kafka"
        self.data_dir = self.base / "data"
        self.svc = procs.Service(self.name, settings.cache_dir / "run", settings.cache_dir / "logs" / "kafka")

    def _write_config(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        props = (TEMPLATES / "kafka-server.properties").read_text().format(
            host=self.host, port=self.port, controller_port=self.port + 1, data_dir=self.data_dir
        )
        cfg = self.base / "server.properties"
        cfg.write_text(props)
        shutil.copyfile(TEMPLATES / "kafka-log4j2.xml", self.base / "log4j2.xml")
        return cfg

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        cp = str(jars.jar_dir(self.s.cache_dir, "kafka") / "*")
        opts = [f"-Xms{heap}", f"-Xmx{heap}"] if heap else ["-Xmx256m"]
        return [
            java_bin(self.s), *opts, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", self.svc.marker,
            f"-Dlog4j2.configurationFile={self.base / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.svc.log_dir}",
            "-cp", cp, main, *args,
        ]

    def format_storage(self, cfg: Path) -> None:
        """Format KRaft storage once (a formatted dir is left alone)."""
        if (self.data_dir / "meta.properties").exists():
            return
        # "--cluster-id=<id>" keeps an id that starts with "-" from being read as an option
        # (1 in 64 random ids did, and formatting failed with "expected one argument").
        cmd = self._java(
            "kafka.tools.StorageTool", "format", f"--cluster-id={kafka_cluster_id()}", "-c", str(cfg)
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = f"formatting Kafka storage in {self.data_dir} failed:\n{proc.stdout}\n{proc.stderr}"
            raise InfraError(msg)

    def start(self) -> int:
        cfg = self._write_config()
        self.format_storage(cfg)
        self.svc.log_dir.mkdir(parents=True, exist_ok=True)
        return procs.start(self.svc, self._java("kafka.Kafka", str(cfg), heap=self.s.kafka_heap))

    def ready(self) -> bool:
        """A real metadata request answered by the broker."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=f"{self.host}:{self.port}", request_timeout_ms=5000
        )
        try:
            info = admin.describe_cluster()
            return bool(info.get("brokers"))
        finally:
            admin.close()

    @property
    def logs(self) -> list[Path]:
        return [self.svc.log_dir / "server.log", self.svc.stdout_log]


class CassandraServer:
    """Single-node Cassandra with data under the cache (JDK 17)."""

    name = "cassandra"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.host = settings.cassandra_contact_points[0]
        self.port = settings.cassandra_port
        self.base = settings.cache_dir / "cassandra"
        self.data_dir = self.base / "data"
        self.svc = procs.Service(self.name, settings.cache_dir / "run", settings.cache_dir / "logs" / "cassandra")

    def start(self) -> int:
        self.base.mkdir(parents=True, exist_ok=True)
        yaml = (TEMPLATES / "cassandra.yaml").read_text().format(
            host=self.host, port=self.port, storage_port=7000, data_dir=self.data_dir
        )
        cfg = self.base / "cassandra.yaml"
        cfg.write_text(yaml)
        shutil.copyfile(TEMPLATES / "cassandra-logback.xml", self.base / "logback.xml")
        self.svc.log_dir.mkdir(parents=True, exist_ok=True)
        heap = self.s.cassandra_heap
        cmd = [java_bin(self.s), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
               "-Xss512k", self.svc.marker, "-Djdk.attach.allowAttachSelf=true",
               "-Dio.netty.tryReflectionSetAccessible=true"]
        cmd += [f"--add-exports={e}=ALL-UNNAMED" for e in _CASSANDRA_EXPORTS]
        cmd += [f"--add-opens={o}=ALL-UNNAMED" for o in _CASSANDRA_OPENS]
        cmd += [
            f"-Dcassandra.config={cfg.resolve().as_uri()}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={self.svc.log_dir}",
            f"-Dlogback.configurationFile={self.base / 'logback.xml'}",
            "-Dcassandra.jmx.local.port=7199",
            # Faster single-node start: no gossip settling, short ring delay.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.load_ring_state=false",
            "-Dcassandra.ring_delay_ms=1000",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-cp", str(jars.jar_dir(self.s.cache_dir, "cassandra") / "*"),
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return procs.start(self.svc, cmd)

    def ready(self) -> bool:
        """`SELECT release_version FROM system.local` answered over CQL."""
        from pipeline.cassandra_io import connect

        cluster, session = connect(self.s, keyspace=None, connect_timeout=5)
        try:
            row = session.execute("SELECT release_version FROM system.local").one()
            return row is not None
        finally:
            cluster.shutdown()

    @property
    def logs(self) -> list[Path]:
        return [self.svc.log_dir / "system.log", self.svc.stdout_log]

"""Kafka (KRaft) and Cassandra as local processes: command lines, readiness probes, bootstrap.

Heaps are sized for a 2-core / 24 GiB machine that also runs a Flink MiniCluster and Python:
Kafka 768 MiB, Cassandra 1 GiB (settings `kafka_heap`, `cassandra_heap`).

The servers follow the credential settings: with `LIVEREC_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT` the
broker's listener asks for a SASL login (and a second listener on port + 2 does the same over TLS, with a
self-signed certificate) and `login_ready` gives the configured user PLAIN and SCRAM credentials; with
`LIVEREC_CASSANDRA_USERNAME` Cassandra runs PasswordAuthenticator and `login_ready` creates that role.
Both are for local and test stacks; on a real cluster the operator creates users.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

from pydantic import SecretStr

from pipeline.credentials import kafka_client_kwargs
from pipeline.errors import ConfigError, InfraError
from pipeline.infra import jars, procs
from pipeline.settings import Settings, read_secret

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


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def properties_quoted(value: str) -> str:
    r"""`value` as a double-quoted JAAS string inside a Java .properties file (two escaping layers).

    >>> print(properties_quoted('pa"ss\\'))
    "pa\\"ss\\\\"
    """
    if "\n" in value or "\r" in value:
        msg = "a password for the local Kafka cannot contain a line break"
        raise ConfigError(msg)
    jaas = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # .properties: backslash escapes once more; the file is read as ISO-8859-1, so escape the rest as \uXXXX
    return "".join(c if " " <= c <= "~" else f"\\u{ord(c):04x}" for c in jaas.replace("\\", "\\\\"))


_USER_NAME = re.compile(r"^[A-Za-z0-9_]+$")


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

    BROKER_USER = "broker"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.host, self.port = host_port(settings.kafka_bootstrap, 9092)
        self.base = settings.stack_dir / "kafka"
        self.data_dir = self.base / "data"
        self.svc = procs.Service(self.name, settings.stack_dir / "run", settings.stack_dir / "logs" / "kafka")
        self.sasl = settings.kafka_security_protocol != "PLAINTEXT"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the broker listens on: client, controller, and with SASL the SASL_SSL listener."""
        return (self.port, self.port + 1, self.port + 2) if self.sasl else (self.port, self.port + 1)

    @property
    def ca_file(self) -> Path:
        """The certificate of the SASL_SSL listener (self-signed): what LIVEREC_KAFKA_SSL_CAFILE names."""
        return self.base / "ca.pem"

    def _keystore(self) -> tuple[Path, str]:
        """A PKCS12 keystore with a self-signed key for this host (made once), and its password."""
        store, password_file = self.base / "broker.p12", self.base / "keystore.secret"
        if not password_file.exists():
            write_private(password_file, secrets.token_urlsafe(24))
        if not store.exists() or not self.ca_file.exists():
            store.unlink(missing_ok=True)
            keytool = str(Path(java_bin(self.s)).parent / "keytool")
            san = {"IP:127.0.0.1", "DNS:localhost",
                   f"IP:{self.host}" if re.fullmatch(r"[0-9.]+", self.host) else f"DNS:{self.host}"}
            common = ["-alias", "broker", "-keystore", str(store), "-storetype", "PKCS12",
                      "-storepass:file", str(password_file)]
            for cmd in (
                [keytool, "-genkeypair", *common, "-keypass:file", str(password_file), "-keyalg", "RSA",
                 "-keysize", "2048", "-validity", "3650", "-dname", "CN=liverec-local-kafka",
                 "-ext", f"SAN={','.join(sorted(san))}"],
                [keytool, "-exportcert", "-rfc", *common, "-file", str(self.ca_file)],
            ):
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
                if proc.returncode != 0:
                    msg = f"making the local Kafka's TLS certificate failed:\n{proc.stdout}\n{proc.stderr}"
                    raise InfraError(msg)
            store.chmod(0o600)
        return store, password_file.read_text()

    def _broker_password(self) -> str:
        """The broker's own PLAIN password: drawn once, kept beside the config (owner-only)."""
        path = self.base / "broker.secret"
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24))
        return path.read_text()

    def _write_config(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        protocol = self.s.kafka_security_protocol
        if protocol == "SASL_SSL":
            msg = (f"the local Kafka is started with LIVEREC_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT; it then also "
                   f"listens with SASL_SSL on the port after its controller's (port + 2), whose certificate is "
                   f"{self.ca_file} (docs/local-stack.md)")
            raise ConfigError(msg)
        listeners = {protocol: self.port, "SASL_SSL": self.port + 2} if self.sasl else {protocol: self.port}
        props = (TEMPLATES / "kafka-server.properties").read_text().format(
            listeners=",".join(f"{name}://{self.host}:{port}" for name, port in listeners.items()),
            protocol=protocol, protocol_map=",".join(f"{name}:{name}" for name in listeners),
            host=self.host, controller_port=self.port + 1, data_dir=self.data_dir,
        )
        if self.sasl:
            user = self.s.kafka_sasl_username or ""
            if not _USER_NAME.match(user) or user == self.BROKER_USER:
                msg = (f"LIVEREC_KAFKA_SASL_USERNAME={user!r}: the local Kafka takes user names of letters, digits "
                       f"and '_' other than {self.BROKER_USER!r}")
                raise ConfigError(msg)
            password = read_secret(self.s, "kafka_sasl_password", "kafka_sasl_password_file") or ""
            keystore, keystore_password = self._keystore()
            props += "\n" + (TEMPLATES / "kafka-sasl.properties").read_text().format(
                broker_user=self.BROKER_USER, ca_file=self.ca_file, keystore=keystore,
                keystore_password=keystore_password)
            broker = properties_quoted(self._broker_password())
            for name in (n.lower() for n in listeners):
                props += (
                    f"listener.name.{name}.plain.sasl.jaas.config="
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{self.BROKER_USER}" password={broker} user_{self.BROKER_USER}={broker} '
                    f"user_{user}={properties_quoted(password)};\n"
                )
                props += "".join(
                    f"listener.name.{name}.{mech}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
                    for mech in ("scram-sha-256", "scram-sha-512"))
        cfg = self.base / "server.properties"
        write_private(cfg, props)
        shutil.copyfile(TEMPLATES / "kafka-log4j2.xml", self.base / "log4j2.xml")
        return cfg

    def _admin(self, **security: object):  # noqa: ANN202 - kafka-python admin client
        from kafka import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=f"{self.host}:{self.port}", request_timeout_ms=5000, **security)

    def _broker_login(self) -> dict[str, object]:
        """kafka-python arguments for the broker's own PLAIN login (works before any SCRAM user exists)."""
        if not self.sasl:
            return {}
        return {"security_protocol": self.s.kafka_security_protocol, "sasl_mechanism": "PLAIN",
                "sasl_plain_username": self.BROKER_USER, "sasl_plain_password": self._broker_password()}

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
        """A real metadata request answered by the broker (logged in as the broker itself with SASL)."""
        admin = self._admin(**self._broker_login())
        try:
            info = admin.describe_cluster()
            return bool(info.get("brokers"))
        finally:
            admin.close()

    def login_ready(self, timeout_s: float = 60.0) -> None:
        """With SASL: give the configured user SCRAM-SHA-256/512 credentials, wait until its own login works.

        Why at every start: SCRAM credentials live in the metadata log, so a changed password in the
        settings reaches the broker here (PLAIN reads it from the config written at start).
        """
        if not self.sasl:
            return
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        password = read_secret(self.s, "kafka_sasl_password", "kafka_sasl_password_file")
        admin = self._admin(**self._broker_login())
        errors: dict[str, str | None] = {}
        try:
            # one request per mechanism: the broker refuses two alterations of one user in a request
            for mech in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                result = admin.alter_user_scram_credentials(
                    [UserScramCredentialUpsertion(self.s.kafka_sasl_username, mech, password)])
                errors.update({f"{k} {mech.name}": v for k, v in result.items() if v})
        finally:
            admin.close()
        if errors:
            msg = f"kafka: storing the SCRAM credentials of {self.s.kafka_sasl_username!r} failed: {errors}"
            raise InfraError(msg)

        def client_login() -> bool:
            admin = self._admin(**kafka_client_kwargs(self.s))
            try:
                return bool(admin.describe_cluster().get("brokers"))
            finally:
                admin.close()

        if not procs.wait_until(client_login, timeout_s):
            msg = (f"kafka: user {self.s.kafka_sasl_username!r} cannot log in with {self.s.kafka_sasl_mechanism} "
                   f"within {timeout_s:.0f}s of storing its credentials; see {self.logs[0]}")
            raise InfraError(msg)

    @property
    def logs(self) -> list[Path]:
        return [self.svc.log_dir / "server.log", self.svc.stdout_log]


class CassandraServer:
    """Single-node Cassandra with data under the cache (JDK 17)."""

    name = "cassandra"

    # The superuser every fresh node with PasswordAuthenticator starts with; local stacks only.
    SUPERUSER = ("cassandra", "cassandra")

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.host = settings.cassandra_contact_points[0]
        self.port = settings.cassandra_port
        self.base = settings.stack_dir / "cassandra"
        self.data_dir = self.base / "data"
        self.svc = procs.Service(self.name, settings.stack_dir / "run", settings.stack_dir / "logs" / "cassandra")
        self.auth = settings.cassandra_username is not None

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the node listens on (CQL, storage, JMX)."""
        return self.port, self.s.cassandra_storage_port, self.s.cassandra_jmx_port

    def start(self) -> int:
        self.base.mkdir(parents=True, exist_ok=True)
        yaml = (TEMPLATES / "cassandra.yaml").read_text().format(
            host=self.host, port=self.port, storage_port=self.s.cassandra_storage_port, data_dir=self.data_dir,
            authenticator="PasswordAuthenticator" if self.auth else "AllowAllAuthenticator",
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
            f"-Dcassandra.jmx.local.port={self.s.cassandra_jmx_port}",
            # Faster single-node start: no gossip settling, short ring delay.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.load_ring_state=false",
            "-Dcassandra.ring_delay_ms=1000",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-cp", str(jars.jar_dir(self.s.cache_dir, "cassandra") / "*"),
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return procs.start(self.svc, cmd)

    def _superuser_settings(self) -> Settings:
        user, password = self.SUPERUSER
        return self.s.model_copy(update={"cassandra_username": user, "cassandra_password": SecretStr(password),
                                         "cassandra_password_file": None})

    def ready(self) -> bool:
        """`SELECT release_version FROM system.local` answered over CQL (as the superuser with authentication)."""
        from pipeline.cassandra_io import connect

        cluster, session = connect(self._superuser_settings() if self.auth else self.s, keyspace=None,
                                   connect_timeout=5)
        try:
            row = session.execute("SELECT release_version FROM system.local").one()
            return row is not None
        finally:
            cluster.shutdown()

    def login_ready(self, timeout_s: float = 60.0) -> None:
        """With authentication: create (or re-password) the configured login role, as the default superuser."""
        if not self.auth:
            return
        from pipeline.cassandra_io import connect

        password = read_secret(self.s, "cassandra_password", "cassandra_password_file")
        cluster, session = connect(self._superuser_settings(), keyspace=None, connect_timeout=5)
        try:
            # bound values: the driver quotes the name and the password as CQL string literals
            session.execute("CREATE ROLE IF NOT EXISTS %s WITH LOGIN = true AND PASSWORD = %s",
                            (self.s.cassandra_username, password), timeout=60)
            session.execute("ALTER ROLE %s WITH PASSWORD = %s", (self.s.cassandra_username, password), timeout=60)
        finally:
            cluster.shutdown()

        def role_login() -> bool:
            cluster, _ = connect(self.s, keyspace=None, connect_timeout=5)
            cluster.shutdown()
            return True

        if not procs.wait_until(role_login, timeout_s):
            msg = f"cassandra: role {self.s.cassandra_username!r} cannot log in; see {self.logs[0]}"
            raise InfraError(msg)

    @property
    def logs(self) -> list[Path]:
        return [self.svc.log_dir / "system.log", self.svc.stdout_log]

"""Credentials from the settings, in the form each client takes: cassandra-driver, kafka-python, the Flink connector.

Why one module: secrets leave the settings only here, and only into client constructors or connector
properties, never into a string that is printed or logged. Errors about a refused login name the user and
the settings to fix, never the password.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Settings, read_secret

# flink-sql-connector-kafka relocates kafka-clients under this prefix, so the login module named in
# `sasl.jaas.config` must carry it too (the unshaded class is not on the job's class path).
FLINK_KAFKA_SHADED_PREFIX = "org.apache.flink.kafka.shaded."
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
CASSANDRA_SETTINGS = "LIVEREC_CASSANDRA_USERNAME and LIVEREC_CASSANDRA_PASSWORD (or LIVEREC_CASSANDRA_PASSWORD_FILE)"
KAFKA_SETTINGS = ("LIVEREC_KAFKA_SASL_USERNAME and LIVEREC_KAFKA_SASL_PASSWORD (or LIVEREC_KAFKA_SASL_PASSWORD_FILE), "
                  "LIVEREC_KAFKA_SASL_MECHANISM, LIVEREC_KAFKA_SECURITY_PROTOCOL")


def cassandra_credentials(settings: Settings) -> tuple[str | None, str | None]:
    """(username, password) of the Cassandra login; (None, None) when authentication is off.

    For clients that take the pair as arguments (a Java sink's constructor); Python code uses `connect`.
    """
    if settings.cassandra_username is None:
        return None, None
    return settings.cassandra_username, read_secret(settings, "cassandra_password", "cassandra_password_file")


def cassandra_auth_provider(settings: Settings) -> Any:
    """A cassandra-driver `PlainTextAuthProvider` (PasswordAuthenticator), or None without credentials."""
    user, password = cassandra_credentials(settings)
    if user is None:
        return None
    from cassandra.auth import PlainTextAuthProvider

    return PlainTextAuthProvider(username=user, password=password)


def cassandra_login_error(settings: Settings, exc: BaseException) -> ConfigError | None:
    """A ConfigError naming the settings when `exc` (from `Cluster.connect`) is a refused login, else None."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    errors = list(exc.errors.values()) if isinstance(exc, NoHostAvailable) else [exc]
    failed = [str(e) for e in errors if isinstance(e, AuthenticationFailed)]
    where = f"Cassandra at {settings.cassandra_hosts}:{settings.cassandra_port}"
    if any("requires authentication" in e for e in failed):
        return ConfigError(f"{where} requires a login (PasswordAuthenticator): set {CASSANDRA_SETTINGS}")
    # "Unable to perform authentication: ..." (its auth tables unavailable) is an outage, not a wrong password
    refused = [e for e in failed if "Provided username" in e or ("Bad credentials" in e and "Unable to" not in e)]
    if not refused:
        return None
    return ConfigError(f"{where} refused the login of user {settings.cassandra_username!r} ({refused[0]}): "
                       f"check {CASSANDRA_SETTINGS}")


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": read_secret(settings, "kafka_sasl_password", "kafka_sasl_password_file"),
    }
    if settings.kafka_security_protocol == "SASL_SSL":
        out["ssl_check_hostname"] = True
        if settings.kafka_ssl_cafile is not None:
            out["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return out


def jaas_config(mechanism: str, username: str, password: str, *, shaded: bool = True) -> str:
    r"""The `sasl.jaas.config` value for a username/password login (PLAIN or SCRAM).

    Quotes and backslashes are escaped as Kafka's JAAS parser (a `StreamTokenizer`) reads them.

    >>> print(jaas_config("PLAIN", "u", 'p"w', shaded=False))
    org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p\"w";
    """
    module = LOGIN_MODULES[mechanism]
    if shaded:
        module = FLINK_KAFKA_SHADED_PREFIX + module

    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{module} required username={quote(username)} password={quote(password)};"


def kafka_properties(settings: Settings) -> dict[str, str]:
    """Kafka client properties for the Flink connector (KafkaSource, KafkaSink and the SQL table).

    `sasl.jaas.config` names the login module with the connector's shaded package. Flink masks option keys
    containing "jaas.config" wherever it prints options, and Kafka logs the value as [hidden].
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    password = read_secret(settings, "kafka_sasl_password", "kafka_sasl_password_file")
    assert settings.kafka_sasl_username is not None and password is not None  # checked when the settings load
    out = {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.jaas.config": jaas_config(settings.kafka_sasl_mechanism, settings.kafka_sasl_username, password),
    }
    if settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_ssl_cafile is not None:
        out["ssl.truststore.type"] = "PEM"
        out["ssl.truststore.location"] = str(settings.kafka_ssl_cafile)
    return out


def kafka_login_error(settings: Settings, exc: BaseException) -> ConfigError | None:
    """A ConfigError naming the settings when `exc` (from kafka-python) is a refused login, else None."""
    from kafka.errors import IllegalSaslStateError, SaslAuthenticationFailedError, UnsupportedSaslMechanismError

    if not isinstance(exc, SaslAuthenticationFailedError | UnsupportedSaslMechanismError | IllegalSaslStateError):
        return None
    where = f"Kafka at {settings.kafka_bootstrap}"
    return ConfigError(f"{where} refused the {settings.kafka_sasl_mechanism} login of user "
                       f"{settings.kafka_sasl_username!r} over {settings.kafka_security_protocol} "
                       f"({type(exc).__name__}: {exc}): check {KAFKA_SETTINGS}")

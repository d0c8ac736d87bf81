"""Credential settings without servers: where secrets come from, what each client gets, what is never shown."""

from __future__ import annotations

import pickle

import pytest

from pipeline.credentials import (
    FLINK_KAFKA_SHADED_PREFIX,
    cassandra_credentials,
    jaas_config,
    kafka_client_kwargs,
    kafka_properties,
)
from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings, settings_env
from pipeline.sources_sinks import events_table_ddl

SECRET = "Zq7-cred-unit\"'\\x"  # a quote, an apostrophe and a backslash: every escaping layer is exercised


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("LIVEREC_CASSANDRA_USERNAME", "LIVEREC_CASSANDRA_PASSWORD", "LIVEREC_CASSANDRA_PASSWORD_FILE",
                "LIVEREC_KAFKA_SECURITY_PROTOCOL", "LIVEREC_KAFKA_SASL_MECHANISM", "LIVEREC_KAFKA_SASL_USERNAME",
                "LIVEREC_KAFKA_SASL_PASSWORD", "LIVEREC_KAFKA_SASL_PASSWORD_FILE", "LIVEREC_KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _sasl(monkeypatch, **extra: str) -> Settings:
    monkeypatch.setenv("LIVEREC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("LIVEREC_KAFKA_SASL_USERNAME", "job")
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_defaults_have_no_credentials_and_clients_get_nothing(clean_env) -> None:
    s = load_settings()
    assert cassandra_credentials(s) == (None, None)
    assert kafka_client_kwargs(s) == {}
    assert kafka_properties(s) == {}
    assert "sasl" not in events_table_ddl(s, group_id="g")


def test_secrets_come_from_the_environment_and_never_show_in_repr_or_dumps(clean_env) -> None:
    clean_env.setenv("LIVEREC_CASSANDRA_USERNAME", "job")
    clean_env.setenv("LIVEREC_CASSANDRA_PASSWORD", SECRET)
    s = _sasl(clean_env, LIVEREC_KAFKA_SASL_PASSWORD=SECRET + "k")
    assert cassandra_credentials(s) == ("job", SECRET)
    assert kafka_client_kwargs(s)["sasl_plain_password"] == SECRET + "k"
    for shown in (repr(s), str(s), str(s.model_dump()), s.model_dump_json(), str(s.model_dump(mode="json"))):
        assert "Zq7-cred-unit" not in shown
    # the job's operators get the settings pickled: the value must survive the trip to the TaskManager
    assert cassandra_credentials(pickle.loads(pickle.dumps(s))) == ("job", SECRET)


def test_a_secret_file_is_read_once_at_load_with_one_trailing_newline_cut(clean_env, tmp_path) -> None:
    path = tmp_path / "cassandra-password"
    path.write_text(SECRET + "\n")
    clean_env.setenv("LIVEREC_CASSANDRA_USERNAME", "job")
    clean_env.setenv("LIVEREC_CASSANDRA_PASSWORD_FILE", str(path))
    s = load_settings()
    path.unlink()  # already read: the job carries the value, not the path
    assert cassandra_credentials(s) == ("job", SECRET)
    # a child process (`flink run -py`) gets the file's path, not the value
    env = settings_env(s)
    assert env["LIVEREC_CASSANDRA_PASSWORD_FILE"] == str(path)
    assert "LIVEREC_CASSANDRA_PASSWORD" not in env
    assert all("Zq7-cred-unit" not in v for v in env.values())


def test_settings_env_passes_an_environment_secret_as_its_value(clean_env) -> None:
    s = _sasl(clean_env, LIVEREC_KAFKA_SASL_PASSWORD=SECRET)
    env = settings_env(s)
    assert env["LIVEREC_KAFKA_SASL_PASSWORD"] == SECRET  # str(SecretStr) would be "**********"
    assert load_settings(**{k.removeprefix("LIVEREC_").lower(): v for k, v in env.items()}) \
        .kafka_sasl_password.get_secret_value() == SECRET


@pytest.mark.parametrize(("env", "names"), [
    ({"LIVEREC_CASSANDRA_USERNAME": "job"}, "LIVEREC_CASSANDRA_PASSWORD"),
    ({"LIVEREC_CASSANDRA_PASSWORD": "x"}, "LIVEREC_CASSANDRA_USERNAME"),
    ({"LIVEREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "LIVEREC_KAFKA_SASL_USERNAME"),
    ({"LIVEREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "LIVEREC_KAFKA_SASL_USERNAME": "job"},
     "LIVEREC_KAFKA_SASL_PASSWORD_FILE"),
    ({"LIVEREC_CASSANDRA_USERNAME": "job", "LIVEREC_CASSANDRA_PASSWORD": "x",
      "LIVEREC_CASSANDRA_PASSWORD_FILE": "/etc/hostname"}, "keep one of them"),
    ({"LIVEREC_CASSANDRA_USERNAME": "job", "LIVEREC_CASSANDRA_PASSWORD_FILE": "/nonexistent/pw"},
     "LIVEREC_CASSANDRA_PASSWORD_FILE=/nonexistent/pw cannot be read"),
    ({"LIVEREC_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "LIVEREC_KAFKA_SSL_CAFILE"),
])
def test_incomplete_or_unreadable_credentials_fail_at_load_naming_the_variable(clean_env, env, names) -> None:
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ConfigError, match=names.replace("(", r"\(")):
        load_settings()


def test_an_empty_secret_file_is_refused(clean_env, tmp_path) -> None:
    (tmp_path / "pw").write_text("\n")
    clean_env.setenv("LIVEREC_CASSANDRA_USERNAME", "job")
    clean_env.setenv("LIVEREC_CASSANDRA_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(ConfigError, match="is empty"):
        load_settings()


@pytest.mark.parametrize(("mechanism", "module"), [
    ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
    ("SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule"),
    ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule"),
])
def test_flink_connector_properties_name_the_shaded_login_module(clean_env, mechanism, module) -> None:
    s = _sasl(clean_env, LIVEREC_KAFKA_SASL_PASSWORD=SECRET, LIVEREC_KAFKA_SASL_MECHANISM=mechanism)
    props = kafka_properties(s)
    assert props["security.protocol"] == "SASL_PLAINTEXT"
    assert props["sasl.mechanism"] == mechanism
    assert props["sasl.jaas.config"].startswith(f"{FLINK_KAFKA_SHADED_PREFIX}{module} required ")
    kwargs = kafka_client_kwargs(s)
    assert (kwargs["security_protocol"], kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == \
        ("SASL_PLAINTEXT", mechanism, "job")


def test_jaas_value_escapes_quotes_and_backslashes_as_kafka_reads_them() -> None:
    value = jaas_config("SCRAM-SHA-512", "job", 'a"b\\c', shaded=False)
    assert value == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                     'username="job" password="a\\"b\\\\c";')


def test_table_ddl_carries_the_login_with_sql_quoting(clean_env) -> None:
    s = _sasl(clean_env, LIVEREC_KAFKA_SASL_PASSWORD="it's")
    ddl = events_table_ddl(s, group_id="g")
    assert "'properties.security.protocol' = 'SASL_PLAINTEXT'" in ddl
    assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in ddl
    assert 'password="it\'\'s";\'' in ddl  # the apostrophe doubled inside the SQL literal


def test_sasl_ssl_trusts_the_given_ca_file(clean_env, tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    clean_env.setenv("LIVEREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    s = _sasl(clean_env, LIVEREC_KAFKA_SASL_PASSWORD="x", LIVEREC_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
              LIVEREC_KAFKA_SSL_CAFILE=str(ca))
    assert kafka_properties(s)["ssl.truststore.location"] == str(ca)
    assert kafka_properties(s)["ssl.truststore.type"] == "PEM"
    assert kafka_client_kwargs(s)["ssl_cafile"] == str(ca)


def test_cassandra_errors_tell_a_refused_login_from_an_auth_outage(clean_env) -> None:
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from pipeline.credentials import cassandra_login_error

    s = load_settings(cassandra_username="job", cassandra_password="x", cassandra_port=9142)

    def failing(text: str) -> NoHostAvailable:
        return NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9142": AuthenticationFailed(text)})

    wrong = cassandra_login_error(s, failing('Failed to authenticate to 127.0.0.1:9142: Error from server: code=0100 '
                                             '[Bad credentials] message="Provided username job and/or password are '
                                             'incorrect"'))
    assert wrong is not None and "refused the login of user 'job'" in str(wrong)
    assert "LIVEREC_CASSANDRA_PASSWORD" in str(wrong)
    missing = cassandra_login_error(load_settings(), failing("Remote end requires authentication"))
    assert missing is not None and "requires a login" in str(missing)
    # the role tables unavailable: an outage the writers retry, not a wrong password
    assert cassandra_login_error(s, failing('Error from server: code=0100 [Bad credentials] message="Unable to '
                                            'perform authentication: Cannot achieve consistency level QUORUM"')) is None
    assert cassandra_login_error(s, NoHostAvailable("x", {"h": OSError("Connection refused")})) is None

"""Settings, declared topics, CQL and the job configuration, checked without servers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.cassandra_io import schema_statements
from pipeline.infra import jars
from pipeline.infra.servers import host_port
from pipeline.settings import load_settings
from state_schemas.topics import TOPICS, by_name


def test_settings_read_environment(monkeypatch) -> None:
    monkeypatch.setenv("LIVEREC_KAFKA_BOOTSTRAP", "broker1:19092,broker2:19092")
    monkeypatch.setenv("LIVEREC_CASSANDRA_HOSTS", "c1, c2")
    monkeypatch.setenv("LIVEREC_TOPIC_PREFIX", "stage-")
    s = load_settings()
    assert s.kafka_bootstrap == "broker1:19092,broker2:19092"
    assert s.cassandra_contact_points == ["c1", "c2"]
    assert s.topic("events") == "stage-events"
    assert host_port(s.kafka_bootstrap, 9092) == ("broker1", 19092)


def test_every_topic_the_issue_names_is_declared_once() -> None:
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    for required in ("events", "rec-requests", "recommendations", "dead-letter", "alerts"):
        assert by_name(required).partitions >= 1


def test_cql_statements_substitute_settings() -> None:
    s = load_settings(cassandra_keyspace="ks_test", cassandra_replication_factor=3)
    stmts = schema_statements(s)
    assert stmts[0].startswith("CREATE KEYSPACE IF NOT EXISTS ks_test")
    assert "'replication_factor': 3" in stmts[0]
    assert all("{" not in st or "replication" in st for st in stmts)
    assert any("ks_test.user_profiles" in st for st in stmts)


def test_jar_resolution_is_keyed_on_the_pom(tmp_path) -> None:
    out = jars.jar_dir(tmp_path, "flink")
    out.mkdir(parents=True)
    assert not jars.is_resolved(tmp_path, "flink")
    (out / ".resolved-from").write_text((jars.POMS / "flink.xml").read_text())
    assert jars.is_resolved(tmp_path, "flink")
    (out / ".resolved-from").write_text("an older pom")
    assert not jars.is_resolved(tmp_path, "flink")


def test_aligned_checkpoint_timeout_switches_on_unaligned_checkpoints() -> None:
    from pipeline.flink_env import job_configuration
    from pipeline.settings import load_settings

    off = job_configuration(load_settings())
    assert "execution.checkpointing.unaligned.enabled" not in off
    on = job_configuration(load_settings(aligned_checkpoint_timeout_ms=250))
    assert on["execution.checkpointing.unaligned.enabled"] == "true"
    assert on["execution.checkpointing.aligned-checkpoint-timeout"] == "250 ms"


def test_kafka_cluster_id_never_starts_with_a_dash(monkeypatch) -> None:
    """An id starting with "-" was read as an option by the storage tool and failed CI."""
    import uuid

    from pipeline.infra import servers

    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 "-AAA..."
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    draws = iter([dash_first, dash_first, plain])
    monkeypatch.setattr(servers.uuid, "uuid4", lambda: next(draws))
    cid = servers.kafka_cluster_id()
    assert cid == "EAAAAAAAAAAAAAAAAAAAAA"
    assert len(cid) == 22


def _sink_module(root: Path) -> Path:
    """A copy of the sink module's pom and sources under ``root`` (its hash is the real module's)."""
    module = root / "jvm"
    shutil.copytree(jars.SINK_MODULE / "src", module / "src")
    shutil.copyfile(jars.SINK_MODULE / "pom.xml", module / "pom.xml")
    return module


def test_sink_jar_is_rebuilt_when_its_pom_or_a_source_changes(tmp_path) -> None:
    module = _sink_module(tmp_path)
    cache = tmp_path / "cache"
    jar = jars.sink_jar(cache)
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    assert jars.sink_sources_hash(module) == jars.sink_sources_hash()
    assert not jars.is_sink_built(cache, module), "no stamp: not built"
    (jar.parent / ".built-from").write_text(jars.sink_sources_hash(module))
    assert jars.is_sink_built(cache, module)
    source = next((module / "src").rglob("RowBatch.java"))
    source.write_text(source.read_text() + "\n// changed\n")
    assert not jars.is_sink_built(cache, module), "a changed source must rebuild"
    (jar.parent / ".built-from").write_text(jars.sink_sources_hash(module))
    (module / "pom.xml").write_text((module / "pom.xml").read_text().replace("0.1.0", "0.1.1", 1))
    assert not jars.is_sink_built(cache, module), "a changed pom must rebuild"


def test_a_failed_sink_build_names_the_maven_log(tmp_path) -> None:
    from pipeline.errors import InfraError

    module = _sink_module(tmp_path)
    (module / "pom.xml").write_text("<project>not a pom")
    cache = tmp_path / "cache"
    with pytest.raises(InfraError) as err:
        jars.build_sink(cache, module=module, log=lambda _m: None)
    log_file = cache / "logs" / "cassandra-sink-build.log"
    assert f"the whole Maven log is {log_file}" in str(err.value)
    assert log_file.read_text().strip(), "the log holds Maven's output"
    assert not jars.sink_jar(cache).exists()

"""docker/ cannot be run here (no engine), so check what can be checked: structure and paths."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_compose_declares_the_cluster_and_builds_from_our_dockerfile() -> None:
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "cassandra", "jobmanager", "taskmanager"} <= set(services)
    build = services["jobmanager"]["build"]
    assert (ROOT / "docker" / build["context"] / build["dockerfile"]).resolve().is_file()
    assert services["taskmanager"]["image"] == services["jobmanager"]["image"]
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"published port {port} must stay on loopback"


def test_dockerfile_copies_only_paths_that_exist() -> None:
    text = (ROOT / "docker/Dockerfile").read_text()
    sources = [
        [arg for arg in m.group(1).split()[:-1] if not arg.startswith("--")]  # --chown=... is a flag
        for m in re.finditer(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE)
    ]
    flat = [s for group in sources for s in group]
    assert flat, "no COPY lines parsed"
    for src in flat:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_image_and_local_setup_pin_the_same_connector() -> None:
    pom = (ROOT / "pipeline/infra/poms/flink.xml").read_text()
    assert "flink-sql-connector-kafka" in pom
    flink_version = re.search(r'"apache-flink==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"FROM flink:{flink_version}-" in (ROOT / "docker/Dockerfile").read_text()
    connector = re.search(r"<version>(\d+\.\d+\.\d+-(\d+\.\d+))</version>", pom)
    assert connector and flink_version.startswith(connector.group(2)), "connector built for another Flink line"


def test_every_container_runs_as_an_unprivileged_user() -> None:
    text = (ROOT / "docker/Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}, "the image must end as a non-root USER"
    services = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())["services"]
    for name, svc in services.items():
        assert str(svc.get("user", "root")).split(":")[0] not in {"root", "0"}, f"{name} runs as root"


def test_compose_files_hold_no_password_and_pass_secrets_as_files() -> None:
    overlay = yaml.safe_load((ROOT / "docker/compose.credentials.yaml").read_text())
    for path in (ROOT / "docker").glob("compose*.yaml"):
        doc = yaml.safe_load(path.read_text())
        for name, svc in doc["services"].items():
            env = svc.get("environment") or {}
            for key, value in (env.items() if isinstance(env, dict) else []):
                if "PASSWORD" in key:
                    assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (path.name, name, key)
    for secret in overlay["secrets"].values():
        assert set(secret) == {"environment"}, "secrets come from the shell that runs compose, not a file here"
    for name in ("jobmanager", "init"):
        env = overlay["services"][name]["environment"]
        mounted = {f"/run/secrets/{s['source']}" for s in overlay["services"][name]["secrets"]}
        assert {env["LIVEREC_KAFKA_SASL_PASSWORD_FILE"], env["LIVEREC_CASSANDRA_PASSWORD_FILE"]} <= mounted


def test_image_builds_the_cassandra_sink_jar_into_flink_lib() -> None:
    text = (ROOT / "docker/Dockerfile").read_text()
    assert "COPY pipeline/jvm/pom.xml pom.xml" in text and "COPY pipeline/jvm/src src" in text
    assert "COPY --from=sink /build/liverec-cassandra-sink.jar /opt/flink/lib/" in text

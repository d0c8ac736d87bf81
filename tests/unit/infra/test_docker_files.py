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
        m.group(1).split()[:-1]
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

"""Metrics wiring checked without servers: reporter options, the JVM's lib dir, docker's Prometheus and Grafana
files, and the status view. The real thing (a job scraped, `liverec status` against it) is
tests/flink/test_observability.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipeline.flink_env import PROMETHEUS_FACTORY, job_configuration, local_lib_dir, prometheus_jar, rest_configuration
from pipeline.settings import load_settings
from pipeline.status import Checkpoint, JobStatus, _duration, _fill_metrics, render

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"


def test_the_reporter_is_on_by_default_and_off_with_an_empty_port() -> None:
    on = job_configuration(load_settings())
    assert on["metrics.reporter.prom.factory.class"] == PROMETHEUS_FACTORY
    assert on["metrics.reporter.prom.port"] == "9249-9259"
    off = job_configuration(load_settings(prometheus_port=""))
    assert not [k for k in off if k.startswith("metrics.reporter")]
    with pytest.raises(ValidationError):
        load_settings(prometheus_port="prometheus")


def test_rest_options_bind_the_configured_port_on_loopback() -> None:
    conf = rest_configuration(load_settings(rest_port=18_081))
    assert conf["rest.port"] == conf["rest.bind-port"] == "18081"
    assert conf["rest.bind-address"] == "127.0.0.1"


def test_the_jvm_lib_dir_is_the_wheels_lib_plus_the_reporter_jar(tmp_path: Path) -> None:
    s = load_settings(cache_dir=tmp_path)
    lib = local_lib_dir(s)
    names = {p.name for p in lib.iterdir()}
    wheel = {p.name for p in (prometheus_jar().parents[2] / "lib").glob("*.jar")}
    assert names == wheel | {prometheus_jar().name}
    assert all((lib / n).resolve().is_file() for n in names)
    assert local_lib_dir(s) == lib and {p.name for p in lib.iterdir()} == names  # idempotent
    local_lib_dir(load_settings(cache_dir=tmp_path, prometheus_port=""))
    assert {p.name for p in lib.iterdir()} == wheel  # the reporter jar leaves with the reporter


def test_the_local_cluster_config_starts_the_reporter(tmp_path: Path) -> None:
    from pipeline.cluster import write_conf

    conf = write_conf(load_settings(cache_dir=tmp_path, prometheus_port="9300-9310"), task_managers=2)
    text = (conf / "config.yaml").read_text()
    assert f"metrics.reporter.prom.factory.class: {PROMETHEUS_FACTORY}" in text
    assert "metrics.reporter.prom.port: 9300-9310" in text


def _flat(doc: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_prometheus_scrapes_the_port_the_image_exports() -> None:
    flink = _flat(yaml.safe_load((ROOT / "flink-conf/cluster/config.yaml").read_text()))
    assert flink["metrics.reporter.prom.factory.class"] == PROMETHEUS_FACTORY
    port = int(flink["metrics.reporter.prom.port"])
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"]
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    targets = [t for job in scrape for c in job.get("static_configs", []) for t in c["targets"]]
    targets += [f"{n}:{c['port']}" for job in scrape for c in job.get("dns_sd_configs", []) for n in c["names"]]
    assert sorted(targets) == sorted([f"jobmanager:{port}", f"taskmanager:{port}"])
    assert {"prometheus", "grafana"} <= set(services)


def test_compose_mounts_the_grafana_files_where_the_provisioning_looks() -> None:
    grafana = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["grafana"]
    mounts = {m.split(":")[1]: (DOCKER / m.split(":")[0]).resolve() for m in grafana["volumes"] if m.startswith("./")}
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/liverec.yaml").read_text())["providers"][0]
    assert mounts[provider["options"]["path"]] == (DOCKER / "grafana/dashboards").resolve()
    assert (mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yaml").is_file()
    source = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"


def test_the_dashboard_is_well_formed() -> None:
    dash = json.loads((DOCKER / "grafana/dashboards/liverec.json").read_text())
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 20
    for p in graphs:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        assert all(t["expr"] and "$job" in t["expr"] for t in p["targets"]), p["title"]
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job"}


def test_status_sums_the_metrics_it_shows() -> None:
    status = JobStatus(rest="http://x", job_id="j", job_name="liverec", state="RUNNING", uptime_s=1.0)
    _fill_metrics(status, {"events_per_second": 12.34, "events_valid": 100.0, "reason.bad_json.dead_letters": 3.0,
                           "reason.empty.dead_letters": 0.0, "dead_letters": 3.0, "eval_evaluated": 40.0,
                           "eval_hits": 10.0, "eval_baseline_hits": 4.0, "index_items": 7.0})
    assert status.events_per_s == 12.3 and status.events_total == 100
    assert status.dead_letters == {"bad_json": 3}  # reasons that never happened are left out
    assert (status.hit_rate, status.baseline_hit_rate, status.index_items) == (0.25, 0.1, 7)
    empty = JobStatus(rest="http://x", job_id="j", job_name="liverec", state="RUNNING", uptime_s=1.0)
    _fill_metrics(empty, {})
    assert empty.hit_rate is None and empty.events_total is None


def test_status_renders_before_the_first_checkpoint_and_after() -> None:
    from rich.console import Console

    status = JobStatus(rest="http://x", job_id="abc123", job_name="liverec", state="RUNNING", uptime_s=3.0,
                       problems=["drift alerts (alerts): broker down"])
    console = Console(record=True, width=160)
    render(status, console)
    text = console.export_text()
    assert "abc123" in text and "none yet" in text and "no evaluated events yet" in text and "broker down" in text
    status.checkpoint = Checkpoint(id=7, age_s=1.5, state_bytes=2_500_000, checkpointed_bytes=500_000,
                                   duration_ms=80, completed=7, failed=0)
    render(status, console)
    assert "#7, 1.5 s ago, 2.5 MB (0.5 MB written), 80 ms" in console.export_text()
    assert json.loads(status.to_json())["checkpoint"]["id"] == 7


def test_durations_read_like_a_person_writes_them() -> None:
    assert [_duration(x) for x in (None, 840, 18_739, 750_000, 20_637_849)] == [
        "-", "840 ms", "18.7 s", "12.5 min", "5.7 h"]

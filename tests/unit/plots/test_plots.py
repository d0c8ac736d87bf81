"""`pipeline.plots` draws each kind of result from JSON shaped like the scripts write it, and says what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.plots import MissingData, plot_for, plot_result

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
PNG = b"\x89PNG\r\n\x1a\n"

DOCS = {
    "job_throughput.json": {
        "events": 1000, "users": 10, "date": "2026-12-06", "machine": {"load_avg_1m": 1.0},
        "job": {"curve": [[1.0, 0], [5.0, 400], [9.0, 1000]], "events_per_s": 150.0,
                "cassandra_curve": [[1.0, 0], [10.0, 1000]], "cassandra_events_per_s": 111.0},
        "skeleton": {"curve": [[1.0, 0], [4.0, 1000]], "events_per_s": 333.0}},
    "latency.json": {"answered": 10, "latency_ms_p50": 900.0, "latency_ms_p99": 1500.0, "latency_ms_max": 1600.0,
                     "latency_ms_percentiles": [100.0 + 15 * q for q in range(101)],
                     "recommendations_delivery": "exactly_once", "checkpoint_interval_ms": 2000},
    "eval_pipeline.json": {"events": 100, "k": 10, "data": "u.data", "series_window": 2,
                           "pipeline": {"recall": 0.5}, "most-popular": {"recall": 0.2},
                           "series": [{"events_to": 3, "evaluated": 2, "recall": 0.5, "most_popular": 0.0},
                                      {"events_to": 9, "evaluated": 4, "recall": 0.5, "most_popular": 0.5}]},
    "drift_false_alarms.json": {"params": {"min_statistic": 0.1}, "results": [
        {"scenario": "generated, stationary", "features": {}},
        {"scenario": "generated, shift at the middle", "windows": 4, "shift_min": 60.0,
         "series": {"category": [[30.0, 0.02, False], [62.0, 0.3, True]]},
         "features": {"category": {"shifted": True, "delay_min": 2.0,
                                   "first_alerts": [{"current_min": [55.0, 62.0], "statistic": 0.3}]}}}]},
}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_each_kind_draws_a_small_png_beside_its_json(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(DOCS[name]))
    png = plot_result(path)
    assert png == path.with_suffix(".png")
    data = png.read_bytes()
    assert data.startswith(PNG) and len(data) < 200_000
    assert plot_result(path).read_bytes() == data  # no timestamp or version inside: a redraw is the same file


def test_older_results_draw_what_they_hold_or_say_what_is_missing(tmp_path: Path) -> None:
    latency = dict(DOCS["latency.json"])
    del latency["latency_ms_percentiles"]  # before the percentiles were written: p50, p99, max only
    (tmp_path / "latency.json").write_text(json.dumps(latency))
    assert plot_result(tmp_path / "latency.json").stat().st_size > 0
    drift = json.loads(json.dumps(DOCS["drift_false_alarms.json"]))
    for key in ("series", "shift_min"):  # before the per-test series: the alerts, the shift from their delay
        del drift["results"][1][key]
    (tmp_path / "drift_false_alarms.json").write_text(json.dumps(drift))
    assert plot_result(tmp_path / "drift_false_alarms.json").stat().st_size > 0
    (tmp_path / "eval_pipeline.json").write_text(json.dumps({"events": 1, "pipeline": {"recall": 0.2}}))
    with pytest.raises(MissingData, match="series"):
        plot_result(tmp_path / "eval_pipeline.json")
    with pytest.raises(ValueError, match="no plot"):
        plot_result(tmp_path / "state_size.json")


def test_the_committed_pngs_are_under_200_kb() -> None:
    pngs = sorted(RESULTS.glob("*.png"))
    assert pngs, "benchmarks/plots.py draws them from the committed results"
    for png in pngs:
        assert plot_for(png.with_suffix(".json")) is not None, f"{png.name} has no kind of plot"
        assert png.with_suffix(".json").is_file(), f"{png.name} has no JSON beside it"
        assert png.stat().st_size < 200_000, f"{png.name} is {png.stat().st_size} bytes"


def test_a_result_under_another_name_is_drawn_by_its_kind(tmp_path: Path) -> None:
    """A benchmark run with ``--out`` elsewhere names its kind; by name alone there is no plot."""
    other = tmp_path / "lat_unaligned.json"
    other.write_text(json.dumps(DOCS["latency.json"]))
    with pytest.raises(ValueError, match="no plot for lat_unaligned.json"):
        plot_result(other)
    assert plot_result(other, "latency") == other.with_suffix(".png")
    assert other.with_suffix(".png").stat().st_size > 0

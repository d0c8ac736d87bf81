"""PNG plots of the benchmark and evaluation results, drawn from their JSON and written next to it.

One function per kind of result, chosen by the JSON's file name (`plot_result`): throughput over time
(`job_throughput`), the latency CDF (`latency*`), prequential recall@k over the replay beside most-popular
(`eval_pipeline*`, `eval_offline_batched`), the drift statistic over event time with the alerts marked
(`drift_false_alarms`). The scripts call `plot_result` after writing their JSON; `benchmarks/plots.py`
redraws every PNG from the JSONs in `benchmarks/results/`.

matplotlib is a dev dependency (the job does not need it): it is imported only when a plot is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MissingData(ValueError):
    """The JSON lacks what the plot draws (written by an older version of its script)."""


WIDTH, HEIGHT, DPI = 8.0, 4.2, 100  # 800 x 420 px: readable on GitHub, tens of KB per PNG
MODEL, BASELINE, THIRD = "#1f77b4", "#7f7f7f", "#ff7f0e"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "grid.alpha": 0.3, "font.size": 10, "legend.frameon": False})
    return plt


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=DPI, metadata={"Software": None})  # no version stamp: the same JSON, the same file
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def _stamp(doc: dict[str, Any]) -> str:
    date = str(doc.get("date") or doc.get("measured") or "")[:10]
    load = (doc.get("machine") or {}).get("load_avg_1m") if isinstance(doc.get("machine"), dict) else None
    return ", ".join(x for x in (date, f"load {load}" if load is not None else "") if x)


def throughput(doc: dict[str, Any], out: Path) -> Path:
    """Events checkpointed over time for the job, its Cassandra rows and the per-record skeleton; the slopes."""
    plt = _pyplot()
    fig, (ax, rate) = plt.subplots(1, 2, figsize=(WIDTH, HEIGHT))
    runs = [("the job", (doc.get("job") or {}).get("curve"), MODEL, (doc.get("job") or {}).get("events_per_s")),
            ("job rows in Cassandra", (doc.get("job") or {}).get("cassandra_curve"), THIRD,
             (doc.get("job") or {}).get("cassandra_events_per_s")),
            ("per-record skeleton", (doc.get("skeleton") or {}).get("curve"), BASELINE,
             (doc.get("skeleton") or {}).get("events_per_s"))]
    for label, curve, color, per_s in runs:
        if not curve:
            continue
        t = [p[0] for p in curve]
        n = [p[1] for p in curve]
        ax.plot(t, n, marker="o", color=color, label=f"{label} ({per_s:,.0f}/s)" if per_s else label)
        slopes = [(n[i + 1] - n[i]) / (t[i + 1] - t[i]) for i in range(len(t) - 1) if t[i + 1] > t[i]]
        edges = t[: len(slopes) + 1]
        rate.stairs(slopes, edges, color=color, linewidth=2, label=label)
    ax.set(xlabel="seconds since the job started", ylabel="events (checkpointed)",
           title=f"{doc.get('events', 0):,} events, {doc.get('users', 0):,} users")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v / 1000:,.0f}k")
    ax.legend(loc="lower right", fontsize=8)
    rate.set(xlabel="seconds since the job started", ylabel="events/s between checkpoints", title="throughput")
    rate.set_ylim(bottom=0)
    fig.suptitle(f"Throughput over time ({_stamp(doc)})", fontsize=11)
    return _save(fig, out)


def latency(doc: dict[str, Any], out: Path) -> Path:
    """Request → answer latency CDF: every percentile when the JSON has them, else its p50 / p99 / max."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    pcts = doc.get("latency_ms_percentiles")
    if pcts:  # value of percentile 0, 1, ..., 100
        ax.plot([v / 1000 for v in pcts], [q / 100 for q in range(len(pcts))], color=MODEL, linewidth=2)
    known = [(doc.get("latency_ms_p50"), 0.50, "p50"), (doc.get("latency_ms_p99"), 0.99, "p99"),
             (doc.get("latency_ms_max"), 1.0, "max")]
    known = [(v, q, name) for v, q, name in known if v is not None]
    if not pcts:
        ax.plot([0.0] + [v / 1000 for v, _, _ in known], [0.0] + [q for _, q, _ in known], color=MODEL,
                linestyle=":", marker="o")
        ax.text(0.02, 0.95, "the JSON holds only p50, p99 and max: the dotted line joins them", fontsize=8,
                transform=ax.transAxes, va="top", color=BASELINE)
    for v, q, name in known:
        ax.annotate(f"{name} {v / 1000:.2f} s", (v / 1000, q), textcoords="offset points", fontsize=9,
                    xytext=(-75, 7) if q == 1.0 else (8, -12))
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set(xlabel="seconds from request to answer on the recommendations topic", ylabel="share of requests")
    delivery = doc.get("recommendations_delivery", "")
    ax.set_title(f"Request → answer latency CDF\n{doc.get('answered', 0):,} requests while "
                 f"{doc.get('events_per_s_sent') or 0:,.0f} events/s stream in; {delivery}, checkpoints every "
                 f"{doc.get('checkpoint_interval_ms', 0) / 1000:g} s ({_stamp(doc)})", fontsize=10)
    return _save(fig, out)


def recall(doc: dict[str, Any], out: Path) -> Path:
    """Prequential recall@k per window of evaluated events, the model beside most-popular."""
    series = doc.get("series")
    if not series:
        msg = "the JSON has no windowed 'series' (written by eval-pipeline since issue 14): run it again"
        raise MissingData(msg)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    x = [p["evaluated"] for p in series]
    k = doc.get("k", 10)
    model = (doc.get("pipeline") or {}).get("recall")
    base = (doc.get("most-popular") or {}).get("recall")
    ax.plot(x, [p["recall"] for p in series], marker="o", markersize=3, color=MODEL,
            label=f"the job's answers (all events {model:.4f})" if model is not None else "the job's answers")
    ax.plot(x, [p["most_popular"] for p in series], marker="o", markersize=3, color=BASELINE,
            label=f"most-popular, same events ({base:.4f})" if base is not None else "most-popular")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v / 1000:,.0f}k")
    ax.set(xlabel=f"evaluated events (replay order; one point per {doc.get('series_window', 0):,})",
           ylabel=f"recall@{k} in the window")
    ax.set_title(f"Prequential recall@{k} through the job, beside most-popular\n{doc.get('events', 0):,} events of "
                 f"{Path(str(doc.get('data', ''))).name}, test-then-learn on every event ({_stamp(doc)})", fontsize=10)
    ax.legend(loc="lower right")
    return _save(fig, out)


def drift(doc: dict[str, Any], out: Path) -> Path:
    """The shift scenario: KS statistic per feature over event time, the shift and the alerts marked.

    Draws the per-test series when the JSON has it (``series``: the whole stream, and the two hours
    around the shift); otherwise the alerts alone, from ``first_alerts`` (statistic and current window of
    each), which is all older results hold.
    """
    shifted = next((r for r in doc.get("results", []) if "shift" in r.get("scenario", "")), None)
    if shifted is None:
        msg = "no shift scenario in the drift results"
        raise MissingData(msg)
    threshold = (doc.get("params") or {}).get("min_statistic", 0.1)
    series = shifted.get("series") or {}
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, HEIGHT), width_ratios=[2, 1], sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shift_h = shifted["shift_min"] / 60 if shifted.get("shift_min") is not None else None
    for i, (feature, row) in enumerate(sorted(shifted["features"].items())):
        color = colors[i % len(colors)]
        alerts = row.get("first_alerts", [])
        if shift_h is None and row.get("delay_min") is not None and alerts and not row.get("alerts_before_shift"):
            # older results: the shift is the end of the first alert's window minus its delay
            shift_h = (alerts[0]["current_min"][1] - row["delay_min"]) / 60
        points = series.get(feature)
        for ax in axes:
            if points:  # [minutes, statistic, breach]
                ax.plot([p[0] / 60 for p in points], [p[1] for p in points], color=color,
                        linewidth=1.4 if row.get("shifted") else 0.7, label=feature)
            for a in alerts:
                ax.scatter(a["current_min"][1] / 60, a["statistic"], marker="v", s=70, color=color, zorder=3,
                           edgecolor="black", label=None if points else f"{feature} alert")
    for ax in axes:
        if shift_h is not None:
            ax.axvline(shift_h, color="black", linestyle="--", linewidth=1)
        ax.axhline(threshold, color="red", linestyle=":", linewidth=1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("event time (hours)")
    whole, zoom = axes
    if shift_h is not None:
        whole.text(shift_h, 0.98, " shift", transform=whole.get_xaxis_transform(), va="top", fontsize=9)
        zoom.set_xlim(shift_h - 1, shift_h + 1)
        zoom.set_title("the two hours around the shift", fontsize=9)
    whole.text(0.99, threshold, f"an alert needs statistic ≥ {threshold} (and a small p-value)", ha="right",
               transform=whole.get_yaxis_transform(), va="bottom", fontsize=8, color="red",
               bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    whole.set_ylabel("KS statistic of the window")
    what = "of every test, alerts ▼" if series else "at each alert ▼ (no per-test series in the JSON)"
    whole.set_title(f"Drift: KS statistic per feature {what}\n{shifted.get('scenario')}, "
                    f"{shifted.get('windows', 0):,} windows tested ({_stamp(doc)})", fontsize=10)
    whole.legend(loc="upper right", fontsize=7, ncols=2)
    return _save(fig, out)


KINDS: list[tuple[str, Callable[[dict[str, Any], Path], Path]]] = [
    ("job_throughput", throughput), ("latency", latency), ("eval_pipeline", recall),
    ("eval_offline_batched", recall), ("drift_false_alarms", drift),
]


def plot_for(path: Path) -> Callable[[dict[str, Any], Path], Path] | None:
    """The plot function of a result file, by its name (None: no plot for this kind)."""
    return next((fn for prefix, fn in KINDS if path.stem.startswith(prefix)), None)


def plot_result(path: Path, kind: str | None = None) -> Path:
    """Draw the plot of one result JSON into ``<same name>.png`` beside it; return the PNG's path.

    ``kind`` names the plot when the file's name does not (a benchmark run with ``--out`` elsewhere).
    """
    fn = dict(KINDS).get(kind) if kind is not None else plot_for(path)
    if fn is None:
        msg = f"no plot for {path.name}: known kinds are {', '.join(k for k, _ in KINDS)}"
        raise ValueError(msg)
    return fn(json.loads(path.read_text()), path.with_suffix(".png"))

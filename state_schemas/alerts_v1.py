"""Alert contract v1: the JSON the job writes to the `alerts` topic when a drift feature breaches.

Wire format: one UTF-8 JSON object per Kafka record value, compact, keys in this order::

    {"alert_version": 1, "kind": "drift", "feature": "category", "statistic": 0.41, "p_value": 1.2e-30,
     "location": 0.53,
     "reference": {"start_ts": ..., "end_ts": ..., "size": 2000, "seen": 48211},
     "current":   {"start_ts": ..., "end_ts": ..., "size": 1000, "seen": 9120},
     "threshold": {"p_value": 0.000142857, "statistic": 0.1},
     "detected_at": 1764000000000, "job_name": "liverec", "model_version": "bpr-d64-n8-s7"}

- ``kind``: ``drift`` (the only kind so far; a consumer ignores kinds it does not know).
- ``feature``: one of the names in `operators.drift.features.FEATURES`.
- ``statistic``, ``p_value``, ``location``: the two-sample Kolmogorov–Smirnov statistic (the largest
  distance between the two windows' empirical CDFs), its p-value (`scipy.stats.ks_2samp`, two-sided) and
  the sample value where that distance is largest. For a coded feature (event type, category) the
  location is a code (`operators.drift.features`).
- ``reference`` / ``current``: the two windows compared. ``start_ts`` / ``end_ts``: the event-time span
  of the samples offered to the window (epoch ms); ``size``: samples in the test; ``seen``: samples
  offered to the window (more than ``size`` when the window kept a uniform sample of them).
- ``threshold``: the breach rule that fired: p-value below ``p_value`` (the configured false-alarm
  probability divided among the monitored features) and statistic at least ``statistic``.
- ``detected_at``: the drift monitor's wall clock (epoch ms) when it ran the test.
- ``job_name``, ``model_version``: which job and which learner (``bpr-d<dim>-n<negatives>-s<seed>``, as
  in answers) were running.

A breach episode gives one alert, not one per window (`operators.drift.logic`). Records are written
exactly-once (visible to ``read_committed`` consumers when the checkpoint that covers them completes).

>>> a = Alert("dwell_ms", 0.25, 1e-9, 3.0, WindowSpan(1, 2, 3, 4), WindowSpan(5, 6, 7, 8), 0.001, 0.1, 9, "j", "m")
>>> parse_alert(alert_json(a)) == a
True
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, NamedTuple

from state_schemas.errors import SchemaError

ALERT_VERSION: Final = 1
KIND_DRIFT: Final = "drift"


class WindowSpan(NamedTuple):
    """What a window of the test covered."""

    start_ts: int
    end_ts: int
    size: int  # samples in the test
    seen: int  # samples offered to the window


class Alert(NamedTuple):
    """One drift alert (fields as in the module docstring)."""

    feature: str
    statistic: float
    p_value: float
    location: float
    reference: WindowSpan
    current: WindowSpan
    alpha: float  # p-value threshold of the test
    min_statistic: float
    detected_at: int
    job_name: str
    model_version: str


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def alert_json(a: Alert) -> bytes:
    """Compact JSON of ``a``, keys in contract order; the same alert always gives the same bytes."""
    doc = {
        "alert_version": ALERT_VERSION,
        "kind": KIND_DRIFT,
        "feature": a.feature,
        "statistic": _num(a.statistic),
        "p_value": _num(a.p_value),
        "location": _num(a.location),
        "reference": a.reference._asdict(),
        "current": a.current._asdict(),
        "threshold": {"p_value": a.alpha, "statistic": a.min_statistic},
        "detected_at": a.detected_at,
        "job_name": a.job_name,
        "model_version": a.model_version,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def parse_alert(data: bytes) -> Alert:
    """The alert of a v1 drift record; anything else (other version or kind, bad JSON) raises SchemaError."""
    try:
        doc: Any = json.loads(data)
        if doc.get("alert_version") != ALERT_VERSION or doc.get("kind") != KIND_DRIFT:
            msg = (f"not a v{ALERT_VERSION} drift alert (alert_version={doc.get('alert_version')!r}, "
                   f"kind={doc.get('kind')!r}): skip it, or read it with the contract of its version")
            raise SchemaError(msg)
        thr = doc["threshold"]

        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        def span(w: Any) -> WindowSpan:
            return WindowSpan(*(int(w[k]) for k in WindowSpan._fields))

        return Alert(
            feature=str(doc["feature"]), statistic=num(doc["statistic"]), p_value=num(doc["p_value"]),
            location=num(doc["location"]), reference=span(doc["reference"]),
            current=span(doc["current"]), alpha=float(thr["p_value"]),
            min_statistic=float(thr["statistic"]), detected_at=int(doc["detected_at"]),
            job_name=str(doc["job_name"]), model_version=str(doc["model_version"]),
        )
    except SchemaError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = f"alert record of {len(data)} bytes does not follow alert contract v{ALERT_VERSION}: {exc!r}"
        raise SchemaError(msg) from exc

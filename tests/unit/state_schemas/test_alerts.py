"""Alert contract v1: key order, values, round trip, refusal of other versions and kinds."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import SchemaError
from state_schemas.alerts_v1 import Alert, WindowSpan, alert_json, parse_alert

T = 1_764_000_000_000
A = Alert("category", 0.4125, 3.5e-41, 0.53, WindowSpan(T, T + 600_000, 2000, 48_211),
          WindowSpan(T + 600_001, T + 900_000, 1000, 9_120), 0.001 / 7, 0.1, T + 905_000, "liverec", "bpr-d64-n8-s7")


def test_alert_json_has_the_contract_keys_in_order() -> None:
    doc = json.loads(alert_json(A))
    assert list(doc) == ["alert_version", "kind", "feature", "statistic", "p_value", "location", "reference",
                         "current", "threshold", "detected_at", "job_name", "model_version"]
    assert doc["alert_version"] == 1 and doc["kind"] == "drift" and doc["feature"] == "category"
    assert doc["reference"] == {"start_ts": T, "end_ts": T + 600_000, "size": 2000, "seen": 48_211}
    assert doc["current"]["start_ts"] == T + 600_001 and doc["current"]["size"] == 1000
    assert doc["threshold"] == {"p_value": 0.001 / 7, "statistic": 0.1}
    assert (doc["detected_at"], doc["job_name"], doc["model_version"]) == (T + 905_000, "liverec", "bpr-d64-n8-s7")
    assert alert_json(A) == alert_json(A) and b" " not in alert_json(A)


def test_round_trip_and_non_finite_values_become_null() -> None:
    assert parse_alert(alert_json(A)) == A
    nan = A._replace(location=float("nan"))
    assert json.loads(alert_json(nan))["location"] is None
    back = parse_alert(alert_json(nan))
    assert back.location != back.location  # NaN again


@pytest.mark.parametrize("junk", [b"", b"[]", b'{"alert_version":2,"kind":"drift"}', b'{"alert_version":1}',
                                  b'{"alert_version":1,"kind":"drift","feature":"x"}', b"\xff"])
def test_other_records_raise_schema_error(junk: bytes) -> None:
    with pytest.raises(SchemaError):
        parse_alert(junk)

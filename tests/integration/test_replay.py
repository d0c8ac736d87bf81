"""`liverec replay` into the real Kafka topic: exactly the valid events arrive, keyed by user, the rest counted."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.interactions import ReadOptions, read_interactions
from pipeline.kafka_io import read_committed
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MAP = "session=sessionId,item=itemId,ts=timestamp,type=event,category=categoryId,price=price"
TYPES = "view=pageview,add_to_cart=addtocart,purchase=transaction"


def _replay(settings: Settings, *args: str) -> Any:
    env = {"LIVEREC_TOPIC_PREFIX": settings.topic_prefix, "COLUMNS": "200"}
    return CliRunner().invoke(app, ["replay", *args], env=env)


def _counts(output: str) -> dict[str, int]:
    """The final table's rows: label → count."""
    rows = re.findall(r"^ *(\S.*?) {2,}([\d,]+) *$", output, flags=re.MULTILINE)
    return {label: int(n.replace(",", "")) for label, n in rows}


def _read_back(settings: Settings, want: int, deadline_s: float = 60.0) -> list[dict[str, Any]]:
    """Every event on the topic; re-read until ``want`` are there or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        docs = [json.loads(v) for v in read_committed(settings, settings.topic("events"), idle_ms=1000)]
        if len(docs) >= want or time.monotonic() > end:
            return docs


def test_replay_sends_exactly_the_valid_events_and_reports_the_rest(isolated: Settings, tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text(
        "sessionId;timestamp;event;itemId;categoryId;price\n"
        "S2;2025-01-06T08:00:03.000Z;transaction;sku-b;garden;9.99\n"  # 2
        "S1;2025-01-06T08:00:00.000Z;pageview;sku-a;books;12.50\n"  # 3
        "S1;2025-01-06T08:00:01.500Z;addtocart;sku-a;books;12.50\n"  # 4
        "S3;1999-12-31T23:59:59Z;pageview;sku-c;toys;1\n"  # 5: too old for the job
        f"S3;2025-01-06T08:00:02Z;pageview;{'x' * 129};toys;1\n"  # 6: item id over 128 characters
        "S3;2025-01-06T08:00:02Z;search;sku-d;toys;1\n"  # 7: a type not mapped
        "S4;not-a-time;pageview;sku-e;toys;1\n"  # 8
        "S4;2025-01-06T08:00:04Z;pageview\n"  # 9: fields missing
        "S4;2025-01-06T08:00:04Z;pageview;sku-f;;2\n"  # 10: no category (optional)
    )
    out = _replay(isolated, "--data", str(path), "--map", MAP, "--types", TYPES, "--as-fast-as-possible")
    assert out.exit_code == 0, out.output
    tag = read_interactions(path, ReadOptions.parse(mapping=MAP)).layout.id_tag
    t0 = 1_736_150_400_000  # 2025-01-06T08:00:00Z
    expected = [
        {"event_id": f"{tag}3", "user_id": "S1", "item_id": "sku-a", "type": "view", "ts": t0,
         "category": "books", "session_hint": "S1", "price": 12.5},
        {"event_id": f"{tag}4", "user_id": "S1", "item_id": "sku-a", "type": "add_to_cart", "ts": t0 + 1500,
         "category": "books", "session_hint": "S1", "price": 12.5},
        {"event_id": f"{tag}2", "user_id": "S2", "item_id": "sku-b", "type": "purchase", "ts": t0 + 3000,
         "category": "garden", "session_hint": "S2", "price": 9.99},
        {"event_id": f"{tag}10", "user_id": "S4", "item_id": "sku-f", "type": "view", "ts": t0 + 4000,
         "session_hint": "S4", "price": 2.0},
    ]
    docs = _read_back(isolated, len(expected))
    assert sorted(docs, key=lambda d: d["ts"]) == expected
    s1 = [d["ts"] for d in docs if d["user_id"] == "S1"]
    assert s1 == sorted(s1), "one user's events must arrive in timestamp order"
    assert _counts(out.output) == {
        "data rows in the file": 9,
        "rejected by the reader: bad_timestamp": 1,
        "rejected by the reader: field_count": 1,
        "rejected by the reader: unmapped_type": 1,
        "rejected by validation: bad_value": 1,
        "rejected by validation: ts_out_of_range": 1,
        f"sent to {isolated.topic('events')} (acknowledged)": 4,
    }, out.output
    for words in ("line 5: ts_out_of_range", "line 6: bad_value", "line 7: unmapped_type", "line 8: bad_timestamp",
                  "line 9: field_count"):
        assert words in out.output, out.output

    again = _replay(isolated, "--data", str(path), "--map", MAP, "--types", TYPES, "--as-fast-as-possible")
    assert again.exit_code == 0, again.output
    docs = _read_back(isolated, 2 * len(expected))
    assert Counter(d["event_id"] for d in docs) == {e["event_id"]: 2 for e in expected}, \
        "a second replay must send the same event ids (the job drops the repeats)"


def test_replay_of_a_generated_gzip_log_matches_the_reader_event_for_event(isolated: Settings,
                                                                             tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_retail_log", REPO / "benchmarks" / "make_retail_log.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    path = tmp_path / "retail.log.gz"
    assert script.main([str(path), "--rows", "3000", "--seed", "11", "--bad-every", "500"]) == 0

    data = read_interactions(path, ReadOptions.parse(mapping=MAP, types=TYPES))
    want = sorted(data, key=lambda e: e["ts"])
    assert data.layout.compression == "gzip" and data.report.rejected_total == 6 and len(want) == 2994
    out = _replay(isolated, "--data", str(path), "--map", MAP, "--types", TYPES, "--rate", "20000")
    assert out.exit_code == 0, out.output
    assert _counts(out.output)[f"sent to {isolated.topic('events')} (acknowledged)"] == 2994, out.output
    docs = _read_back(isolated, len(want))
    assert sorted(docs, key=lambda d: d["event_id"]) == sorted(want, key=lambda d: d["event_id"])


def test_replay_without_the_topic_says_how_to_create_it(stack: Settings, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,ts\nu,i,1736150400\n")
    missing = stack.model_copy(update={"topic_prefix": f"replay-missing-{time.time_ns()}-"})
    out = _replay(missing, "--data", str(path), "--as-fast-as-possible")
    assert out.exit_code == 2, out.output
    assert f"no topic '{missing.topic('events')}'" in out.output and "liverec infra" in out.output, out.output

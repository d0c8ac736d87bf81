"""`liverec send` and `liverec profiles` on the real stack: what the runbook's restore check relies on."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from typer.testing import CliRunner

from pipeline.cassandra_io import connect
from pipeline.cli import app
from pipeline.kafka_io import read_committed

pytestmark = pytest.mark.integration


def test_send_writes_well_formed_events_with_new_ids_each_run(isolated) -> None:
    s = isolated
    runner = CliRunner()
    env = {"LIVEREC_TOPIC_PREFIX": s.topic_prefix}
    first = runner.invoke(app, ["send", "--events", "300", "--users", "7", "--user-prefix", "cli-u"], env=env)
    second = runner.invoke(app, ["send", "--events", "100", "--users", "7", "--user-prefix", "cli-u"], env=env)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert re.search(r"sent 300 events of 7 users", first.output), first.output
    docs = [json.loads(v) for v in read_committed(s, s.topic("events"))]
    assert len(docs) == 400
    assert len({d["event_id"] for d in docs}) == 400, "two runs of send reused event ids"
    assert {d["user_id"] for d in docs} == {f"cli-u{i}" for i in range(7)}


def test_profiles_sums_event_counts_of_the_prefix_only(stack) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:8]}-"
    rows = {f"{prefix}a": 5, f"{prefix}b": 12, f"other-{prefix}c": 100}
    cluster, session = connect(stack, keyspace=stack.cassandra_keyspace)
    try:
        for user, n in rows.items():
            session.execute("INSERT INTO user_profiles (user_id, event_count) VALUES (%s, %s)", (user, n))
    finally:
        cluster.shutdown()
    out = CliRunner().invoke(app, ["profiles", "--user-prefix", prefix])
    assert out.exit_code == 0, out.output
    assert f"2 users with ids starting '{prefix}', 17 events counted" in out.output

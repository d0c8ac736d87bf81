"""A start with empty state is not amnesia: users come back from their Cassandra rows.

On the real stack: a first run builds 12 users' profiles and their items' vectors (exact counts in Cassandra),
a checkpoint commits the source offsets of all its events, and it is killed; `liverec job --fresh` then
starts with empty keyed state from those offsets. One more event per user must make every count old + 1
(without user rehydration the new state would count 1, and its lower-seq write would leave the old row as it
was); each item touched again must continue its row's seq (without item rehydration it would restart near 1,
and its lower-timestamp writes would leave the row as it was);
and a request for a known user must be answered from its vector (``personalized``) among those items, not as a
stranger (``cold_start``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import generator
from pipeline.cassandra_io import connect
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce, read_committed
from tests.recovery.counts import await_counts
from tests.recovery.test_kill_after_checkpoint import _committed_offsets, _job_env, _kill, _start
from tests.recovery.test_start_choices import _cli
from tests.recovery.test_start_choices import _kill as _kill_cli

pytestmark = [pytest.mark.integration, pytest.mark.flink]


def _item_seqs(s, items: list[str]) -> dict[str, int]:  # noqa: ANN001
    from cassandra.query import ValueSequence

    cluster, session = connect(s, keyspace=s.cassandra_keyspace)
    try:
        rows = session.execute("SELECT item_id, seq FROM item_vectors WHERE item_id IN %s", (ValueSequence(items),))
        return {r.item_id: r.seq for r in rows}
    finally:
        cluster.shutdown()


def test_fresh_start_rehydrates_users_and_items_from_cassandra(isolated, tmp_path: Path) -> None:  # noqa: ANN001
    s = isolated
    start = int(time.time() * 1000) - 3600 * 1000
    first = generator.events(480, users=12, start_ms=start, seed=51, user_prefix=f"{s.topic_prefix}u", max_step_ms=20)
    produce(s, s.topic("events"), first.records)
    seen: dict[str, list[str]] = {}
    for _key, value in first.records:
        e = json.loads(value)
        seen.setdefault(e["user_id"], []).append(e["item_id"])
    users = sorted(first.per_user)
    # Run 2: users[0] sees one of its own items again; every other user one item users[0] never saw, so
    # the index holds (rehydrated) items a personalized answer for users[0] can rank.
    again = {users[0]: seen[users[0]][0]}
    for u in users[1:]:
        again[u] = next(i for i in seen[u] if i not in seen[users[0]] and i not in again.values())
    items = sorted(set(again.values()))
    env = {"LIVEREC_PROFILE_FLUSH_MS": "1000", "LIVEREC_ITEM_STORE_MS": "1000", "LIVEREC_ITEM_FLUSH_MS": "500"}
    log1 = tmp_path / "run1.log"
    proc = _start(_job_env(s, tmp_path / "ck1", **env), log1)
    try:
        ok, diff = await_counts(s, first.per_user, 240)
        assert ok, f"run 1 never wrote exact profiles: {list(diff.items())[:3]}; log {log1}"
        assert wait_until(lambda: len(_item_seqs(s, items)) == len(items), 120, interval_s=0.5), (
            f"run 1 never wrote the item rows; log {log1}")
        # offsets commit when a checkpoint completes: from then on the run-2 source starts after these events
        assert wait_until(lambda: _committed_offsets(s, f"killtest-{s.topic_prefix}job") == len(first.records), 180,
                          interval_s=0.5), f"no checkpoint covered run 1's events; log {log1}"
        seq_before = _item_seqs(s, items)
    finally:
        _kill(proc)

    later = first.max_ts + 10 * 60 * 1000
    more = [(u.encode(), json.dumps({"event_id": f"{s.topic_prefix}more-{u}", "user_id": u, "item_id": again[u],
                                     "type": "view", "ts": later}).encode()) for u in users]
    rid = f"{s.topic_prefix}req-after-fresh"
    log2 = tmp_path / "run2.log"
    proc = _cli(_job_env(s, tmp_path / "ck2", **env), log2, "--fresh")
    try:
        produce(s, s.topic("events"), more)
        expected = Counter(first.per_user) + Counter(users)
        ok, diff = await_counts(s, expected, 240)
        # seq grows per applied batch that touched the item (as a positive or a sampled negative)
        continued = wait_until(lambda: all(v > seq_before[i] for i, v in _item_seqs(s, items).items()), 60,
                               interval_s=0.5)
        seq_after = _item_seqs(s, items)
        # The index starts empty after --fresh: an item is back in it after the item stage's next flush of it
        # (docs/operations.md), and a request is ranked against the index as it was before its own batch. So
        # the request goes once the items' rows moved on: the item stage flushes (every 500 ms) at or before it
        # stores (every 1000 ms here), so by then their vectors are on their way to the index.
        produce(s, s.topic("rec-requests"), [(users[0].encode(), json.dumps(
            {"request_id": rid, "user_id": users[0], "k": 5, "ts": later + 1}).encode())])
        answers: list[dict[str, object]] = []

        def answered() -> bool:
            answers[:] = [a for v in read_committed(s, s.topic("recommendations"), idle_ms=1000)
                          if (a := json.loads(v))["request_id"] == rid]
            return bool(answers)

        got_answer = wait_until(answered, 120, interval_s=1.0)
    finally:
        _kill_cli(proc)
    assert "starting FRESH" in log2.read_text()
    assert ok, f"after --fresh, counts did not continue from the rows: {list(diff.items())[:3]}; log {log2}"
    assert continued, f"item rows did not continue their seq: before {seq_before}, after {seq_after}; log {log2}"
    assert got_answer, f"no answer to {rid}; log {log2}"
    assert len(answers) == 1 and answers[0]["source"] == "personalized", answers

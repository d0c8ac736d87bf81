"""A start without state answers no request twice, and counts no event twice, over what it reads again.

On the real stack, through the real CLI: run 1 answers 8 requests (delivery `at_least_once`, so the
answers are visible at once) and writes exact profiles, but is killed (-9) before any checkpoint has
committed an offset. `liverec job --fresh` then reads every event and request again from the earliest
offsets. A read_committed consumer must see exactly one answer per request id: the 8 old ones are not
answered again (the CLI finds them on `recommendations` and the router skips them) and 4 new ones are
answered once. Counts stay exact: the profiles come back from their rows with the fingerprints of each
user's last events, so the events read again are duplicates, and one more event per user makes old + 1.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import generator
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce, read_committed
from tests.recovery.counts import await_counts
from tests.recovery.test_kill_after_checkpoint import _job_env
from tests.recovery.test_start_choices import _cli, _kill

pytestmark = [pytest.mark.integration, pytest.mark.flink]


def _answers(s, rids: set[str]) -> Counter[str]:  # noqa: ANN001
    return Counter(rid for v in read_committed(s, s.topic("recommendations"), idle_ms=1000)
                   if (rid := json.loads(v)["request_id"]) in rids)


def _requests(s, users: list[str], tag: str, ts: int) -> list[tuple[bytes, bytes]]:  # noqa: ANN001
    return [(u.encode(), json.dumps({"request_id": f"{s.topic_prefix}{tag}-{u}", "user_id": u, "k": 5,
                                     "ts": ts}).encode()) for u in users]


def test_fresh_start_answers_each_request_once_and_counts_exactly(isolated, tmp_path: Path) -> None:  # noqa: ANN001
    s = isolated
    # no checkpoint completes in run 1 (interval 10 min): nothing is committed, run 2 reads everything again
    env = _job_env(s, tmp_path / "checkpoints", LIVEREC_PROFILE_FLUSH_MS="1000",
                   LIVEREC_CHECKPOINT_INTERVAL_MS="600000", LIVEREC_RECOMMENDATIONS_DELIVERY="at_least_once")
    start = int(time.time() * 1000) - 3600 * 1000
    first = generator.events(240, users=8, start_ms=start, seed=61, user_prefix=f"{s.topic_prefix}u", max_step_ms=20)
    users = sorted(first.per_user)
    produce(s, s.topic("events"), first.records)
    old = _requests(s, users, "old", first.max_ts)
    old_ids = {json.loads(v)["request_id"] for _, v in old}

    log1 = tmp_path / "run1.log"
    proc = _cli(env, log1, "--fresh")
    try:
        ok, diff = await_counts(s, first.per_user, 240)
        assert ok, f"run 1 never wrote exact profiles: {list(diff.items())[:3]}; log {log1}"
        produce(s, s.topic("rec-requests"), old)
        assert wait_until(lambda: set(_answers(s, old_ids)) == old_ids, 120, interval_s=1.0), (
            f"run 1 did not answer the requests; log {log1}")
    finally:
        _kill(proc)

    later = first.max_ts + 10 * 60 * 1000
    more = [(u.encode(), json.dumps({"event_id": f"{s.topic_prefix}more-{u}", "user_id": u, "item_id": "i7",
                                     "type": "view", "ts": later}).encode()) for u in users]
    new = _requests(s, users[:4], "new", later + 1)
    all_ids = old_ids | {json.loads(v)["request_id"] for _, v in new}
    log2 = tmp_path / "run2.log"
    proc = _cli(env, log2, "--fresh")
    try:
        produce(s, s.topic("events"), more)
        produce(s, s.topic("rec-requests"), new)
        expected = Counter(first.per_user) + Counter(users)
        ok, diff = await_counts(s, expected, 240)
        assert wait_until(lambda: set(_answers(s, all_ids)) == all_ids, 120, interval_s=1.0), (
            f"run 2 did not answer the new requests; log {log2}")
        # a second answer to an old request would come with the re-read requests, before the new ones
        answers = _answers(s, all_ids)
    finally:
        _kill(proc)
    text = log2.read_text()
    assert "8 requests after the committed offsets were already answered" in text, text[-2000:]
    assert ok, f"counts after the fresh start are not exact: {list(diff.items())[:3]}; log {log2}"
    doubled = {r: c for r, c in answers.items() if c != 1}
    assert not doubled, f"requests answered more than once across the fresh start: {doubled}"

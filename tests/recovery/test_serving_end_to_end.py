"""Serving on the real stack, with a kill -9 in the middle.

One job process (the `flink run` entry point, in a local MiniCluster) serves requests for a new, a
warm and a hot user: each gets exactly one answer with the right `source`, and never an item the user
already interacted with. An item many users take up moves up in a user's answer. Then the job is
killed right after a checkpoint, `liverec state check` accepts that checkpoint (and refuses it under
another max parallelism), the job is restored from it, and the same request gets the same answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce, read_committed
from tests.recovery.test_kill_after_checkpoint import _committed_offsets, _job_env, _kill, _latest_checkpoint, _start

pytestmark = [pytest.mark.integration, pytest.mark.flink]

BOOKS = [f"b{i}" for i in range(15)]
MUSIC = [f"m{i}" for i in range(15)]


def _event(eid: str, user: str, item: str, ts: int) -> tuple[bytes, bytes]:
    cat = "books" if item.startswith("b") else "music"
    doc = {"event_id": eid, "user_id": user, "item_id": item, "type": "click", "ts": ts, "category": cat}
    return user.encode(), json.dumps(doc).encode()


class Answers:
    """Reads committed answers of the recommendations topic, keyed by request id."""

    def __init__(self, settings) -> None:  # noqa: ANN001
        self.s = settings
        self.all: list[dict] = []

    def wait(self, ids: set[str], timeout_s: float, log: Path) -> dict[str, dict]:
        def got() -> bool:
            self.all = [json.loads(v) for v in read_committed(self.s, self.s.topic("recommendations"), idle_ms=500)]
            return ids <= {a["request_id"] for a in self.all}

        missing = lambda: ids - {a["request_id"] for a in self.all}  # noqa: E731
        assert wait_until(got, timeout_s, interval_s=1), f"no answer to {missing()}; job log {log}"
        return {a["request_id"]: a for a in self.all if a["request_id"] in ids}


def _state_check(env: dict[str, str], checkpoint: Path) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pipeline.cli", "state", "check", "--savepoint", str(checkpoint)],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300, check=False,
    )


def _request(settings, rid: str, user: str, *, k: int = 10, exclude_seen: bool = True) -> None:  # noqa: ANN001
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    doc = {"request_id": rid, "user_id": user, "k": k, "exclude_seen": exclude_seen, "ts": int(time.time() * 1000)}
    p.send(settings.topic("rec-requests"), json.dumps(doc).encode(), key=user.encode())
    p.flush()
    p.close()


def test_sources_exclusions_vector_moves_and_same_answer_after_restore(isolated, tmp_path) -> None:
    s = isolated
    pre = s.topic_prefix
    chk_dir, log = tmp_path / "checkpoints", tmp_path / "job.log"
    t0 = int(time.time() * 1000) - 600_000
    records, n = [], 0
    crowd = [f"{pre}c{i}" for i in range(12)]
    for r in range(6):  # the crowd reads books and music alike: popularity, co-occurrence, item vectors
        for j, user in enumerate(crowd):
            for item in (BOOKS[(j + r) % 15], MUSIC[(2 * j + r) % 15]):
                records.append(_event(f"{pre}e{n}", user, item, t0 + n))
                n += 1
    hot, warm, new = f"{pre}hot", f"{pre}warm", f"{pre}new"
    hot_items = BOOKS[:8]
    for item in hot_items:
        records.append(_event(f"{pre}e{n}", hot, item, t0 + n))
        n += 1
    records.append(_event(f"{pre}e{n}", warm, "m3", t0 + n))
    n += 1
    produce(s, s.topic("events"), records)
    group = f"killtest-{pre}job"
    env = _job_env(s, chk_dir, LIVEREC_ITEM_FLUSH_MS="200", LIVEREC_PROFILE_FLUSH_MS="500",
                   LIVEREC_SESSION_GAP_MS=str(3_600_000))
    proc = _start(env, log)
    answers = Answers(s)
    try:
        assert wait_until(lambda: _committed_offsets(s, group) >= len(records), 180, interval_s=0.5), log
        for rid, user in (("r-new", new), ("r-warm", warm), ("r-hot", hot)):
            _request(s, f"{pre}{rid}", user)
        got = answers.wait({f"{pre}r-new", f"{pre}r-warm", f"{pre}r-hot"}, 120, log)
        by_id = [a["request_id"] for a in answers.all]
        assert all(by_id.count(r) == 1 for r in got), "a request was answered twice"
        assert got[f"{pre}r-new"]["source"] == "cold_start"
        assert got[f"{pre}r-warm"]["source"] == "session"
        assert got[f"{pre}r-hot"]["source"] == "personalized"
        for rid, seen in (("r-warm", {"m3"}), ("r-hot", set(hot_items))):
            items = [i["item_id"] for i in got[f"{pre}{rid}"]["items"]]
            assert len(items) == 10 and not set(items) & seen, (rid, items)
        assert got[f"{pre}r-hot"]["freshest_event_ts"] is not None
        print("answers:", {r: (a["source"], [i["item_id"] for i in a["items"]][:5]) for r, a in got.items()})

        # An item everyone takes up now: its vector, popularity and co-occurrence change, it moves up.
        full = dict(k=30, exclude_seen=False)
        _request(s, f"{pre}r-before", hot, **full)
        before = answers.wait({f"{pre}r-before"}, 60, log)[f"{pre}r-before"]
        ranks = [i["item_id"] for i in before["items"]]
        mover = ranks[-1]
        more = [_event(f"{pre}x{i}", u, mover, t0 + n + i) for i, u in enumerate([*crowd, hot] * 2)]
        produce(s, s.topic("events"), more)
        assert wait_until(lambda: _committed_offsets(s, group) >= len(records) + len(more), 120, interval_s=0.5)
        _request(s, f"{pre}r-after", hot, **full)
        after = answers.wait({f"{pre}r-after"}, 60, log)[f"{pre}r-after"]
        moved = [i["item_id"] for i in after["items"]]
        print(f"{mover}: rank {ranks.index(mover)} -> {moved.index(mover)}; index {before['index_version']} -> "
              f"{after['index_version']}")
        assert moved.index(mover) < ranks.index(mover)
        assert after["index_version"] != before["index_version"]

        # Same request before and after a kill -9 + restore from the retained checkpoint.
        _request(s, f"{pre}r-same-1", hot)
        first = answers.wait({f"{pre}r-same-1"}, 60, log)[f"{pre}r-same-1"]
    finally:
        _kill(proc)
    checkpoint = _latest_checkpoint(chk_dir)
    assert checkpoint is not None
    # Before the restore, as an SRE would: the retained checkpoint fits this build, and not another max parallelism.
    ok = _state_check(env, checkpoint)
    assert ok.returncode == 0 and "compatible with this build" in ok.stdout, ok.stdout + ok.stderr[-2000:]
    bad = _state_check({**env, "LIVEREC_MAX_PARALLELISM": "64"}, checkpoint)
    assert bad.returncode == 1 and "max parallelism" in bad.stdout, bad.stdout + bad.stderr[-2000:]
    proc = _start({**env, "LIVEREC_RESTORE_PATH": str(checkpoint)}, log)
    try:
        _request(s, f"{pre}r-same-2", hot)
        second = answers.wait({f"{pre}r-same-2"}, 120, log)[f"{pre}r-same-2"]
    finally:
        _kill(proc)
    print(f"restored from {checkpoint.name}: {[i['item_id'] for i in second['items']]}")
    # Same items in the same order from the same rung; scores equal up to the popularity decay between
    # the two request times (seconds against a 7-day half-life).
    assert second["source"] == first["source"]
    assert [i["item_id"] for i in second["items"]] == [i["item_id"] for i in first["items"]]
    assert [i["score"] for i in second["items"]] == pytest.approx([i["score"] for i in first["items"]], abs=1e-3)
    ids = [a["request_id"] for a in answers.all]
    assert sorted(set(ids)) == sorted(ids), "an answer was emitted twice across the restore"

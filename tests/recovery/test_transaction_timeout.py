"""Negative control for exactly-once: a transaction timeout shorter than checkpoint + restart loses answers.

The transactional sinks pre-commit at a checkpoint and commit when it completes. If the broker aborts
the transaction first (its `transaction.timeout.ms` ran out), the commit fails and the records are gone,
while the checkpoint already moved the source offsets past the request: nothing replays it. A kill only
widens a window (checkpoint done, commit not yet) that a test cannot hit on purpose, so this control
makes the window certain instead: the timeout (2 s) is shorter than the checkpoint interval (20 s),
which is the far end of "shorter than checkpoint + restart". One request is sent right after a
checkpoint, so its answer's transaction is the only one open and times out before the next checkpoint.

Counted: a read_uncommitted consumer sees that the answer was written; after two more checkpoints a
read_committed consumer (what every service reads) sees it or not, and the kill series' own answer
check (`answer_violations`) must report it missing. With the default timeout the same steps deliver
the answer exactly once, so the loss comes from the timeout and nothing else.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce, read_committed, read_uncommitted
from tests.recovery.test_kill_after_checkpoint import _job_env, _kill, _start
from tests.recovery.test_kill_series import CheckpointWatch, _completed, answer_violations

pytestmark = [pytest.mark.integration, pytest.mark.flink]

CHECKPOINT_MS = 20_000


@pytest.mark.parametrize(
    ("timeout_ms", "lost"), [(2_000, True), (900_000, False)], ids=["timeout-2s-loses", "default-keeps"]
)
def test_transaction_timeout_below_checkpoint_interval_is_detected_as_loss(
    isolated, tmp_path, timeout_ms: int, lost: bool
) -> None:
    s = isolated
    chk_dir, log = tmp_path / "checkpoints", tmp_path / "job.log"
    env = _job_env(s, chk_dir, LIVEREC_CHECKPOINT_INTERVAL_MS=str(CHECKPOINT_MS),
                   LIVEREC_KAFKA_TRANSACTION_TIMEOUT_MS=str(timeout_ms), LIVEREC_JOB_NAME="txntimeout")
    rid, user = f"{s.topic_prefix}req-after-checkpoint", f"{s.topic_prefix}new-user"
    proc = _start(env, log)
    try:
        assert wait_until(lambda: _completed(chk_dir), 240, interval_s=0.2), f"no checkpoint completed; job log {log}"
        after_request = CheckpointWatch(chk_dir)
        sent = time.monotonic()
        doc = {"request_id": rid, "user_id": user, "k": 5, "ts": int(time.time() * 1000)}
        produce(s, s.topic("rec-requests"), [(user.encode(), json.dumps(doc).encode())])

        def written() -> bool:
            return any(json.loads(v)["request_id"] == rid
                       for v in read_uncommitted(s, s.topic("recommendations"), idle_ms=500))

        assert wait_until(written, 60, interval_s=0.5), f"the job never wrote an answer; job log {log}"
        answered_s = time.monotonic() - sent
        # two completed checkpoints after the request: the answer's transaction was pre-committed at the
        # first, and its commit (or the failure of it) happened before the second completed
        assert wait_until(lambda: after_request.count() >= 2, 4 * CHECKPOINT_MS / 1000, interval_s=0.5), (
            f"fewer than 2 checkpoints after the request; job log {log}")
        answers = Counter(json.loads(v)["request_id"] for v in read_committed(s, s.topic("recommendations"),
                                                                             idle_ms=2000))
    finally:
        _kill(proc)
    bad = answer_violations([rid], answers)
    failed_commits = sum(1 for line in log.read_text(errors="replace").splitlines()
                         if "ProducerFenced" in line or "InvalidTxnState" in line or "InvalidProducerEpoch" in line)
    print(f"injected: transaction.timeout.ms={timeout_ms}, checkpoint interval {CHECKPOINT_MS} ms, one request "
          f"right after a checkpoint (written {answered_s:.1f} s later); counted: read_committed copies "
          f"{answers.get(rid, 0)}, violations {bad or 'none'}, fenced/invalid-txn lines in the job log "
          f"{failed_commits}")
    if lost:
        assert bad == ["1 answers missing, e.g. ['" + rid + "']"], bad
    else:
        assert not bad, bad

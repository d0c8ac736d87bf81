"""Schema evolution across a restore, with real processes: v1 state → v2 build → every user migrated.

Injected: a build whose state codec is v2 (a field added, default "web") restores a retained
checkpoint written by a v1 build; then a build that cannot read v1 restores the same checkpoint.
Counted: 100% of users continue their v1 count with the field defaulted; the incompatible build fails
with the codec's message and emits nothing (never a wrong value).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce, read_committed
from tests.recovery.test_kill_after_checkpoint import _kill, _latest_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.flink]


def _start(settings, chk: Path, log: Path, version: str, **extra: str) -> subprocess.Popen:  # noqa: ANN001
    env = {**os.environ, "LIVEREC_TOPIC_PREFIX": settings.topic_prefix, "LIVEREC_CHECKPOINT_DIR": chk.as_uri(),
           "LIVEREC_CHECKPOINT_INTERVAL_MS": "1000", "LIVEREC_JOB_NAME": "evo", "LIVEREC_TEST_EVO_VERSION": version,
           **extra}
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.recovery.evolution_job"], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _outputs(settings) -> list[tuple[str, int, str]]:  # noqa: ANN001
    rows = [bytes(v).decode().split(",") for v in read_committed(settings, settings.topic("user-counts"), idle_ms=500)]
    return [(u, int(c), ch) for u, c, ch in rows]


def test_v1_state_migrates_to_v2_and_an_incompatible_build_fails_loudly(isolated, tmp_path) -> None:
    s = isolated
    chk, log = tmp_path / "checkpoints", tmp_path / "job.log"
    users = [f"{s.topic_prefix}u{i}" for i in range(30)]
    first = [(u.encode(), u.encode()) for i in range(3) for u in users]  # 3 records per user
    produce(s, s.topic("events"), first)
    proc = _start(s, chk, log, "1")
    try:
        assert wait_until(lambda: len(_outputs(s)) == len(first), 180, interval_s=1), f"v1 never caught up; {log}"
    finally:
        _kill(proc)
    checkpoint = _latest_checkpoint(chk)
    assert checkpoint is not None
    v1 = {u: c for u, c, _ in _outputs(s)}
    assert set(v1.values()) == {3}

    # A deliberately incompatible build first: it must fail, not restore wrong values.
    produce(s, s.topic("events"), [(u.encode(), u.encode()) for u in users])
    bad = _start(s, chk, log, "2-no-v1", LIVEREC_RESTORE_PATH=str(checkpoint), LIVEREC_RESTART_ATTEMPTS="0")
    try:
        assert wait_until(lambda: bad.poll() is not None, 180, interval_s=1), "the incompatible build kept running"
    finally:
        if bad.poll() is None:
            _kill(bad)
    assert bad.returncode != 0
    text = log.read_text(errors="replace")
    assert "state for 'evo' has version 1, which this build cannot read" in text
    assert len(_outputs(s)) == len(first), "the incompatible build emitted something"
    print("injected: incompatible build (no v1 decoder): failed with the codec's message, emitted nothing")

    # The v2 build restores the same checkpoint: every user continues from 3, channel defaulted.
    good = _start(s, chk, log, "2", LIVEREC_RESTORE_PATH=str(checkpoint))
    try:
        ok = wait_until(lambda: len(_outputs(s)) == len(first) + len(users), 180, interval_s=1)
    finally:
        _kill(good)
    assert ok, f"v2 did not process the new records; log {log}"
    after = [(u, c, ch) for u, c, ch in _outputs(s) if ch != "-"]
    migrated = {u for u, c, ch in after if c == v1[u] + 1 and ch == "web"}
    print(f"counted: {len(migrated)}/{len(users)} users restored from v1 and migrated to v2")
    assert migrated == set(users)

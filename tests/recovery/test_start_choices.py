"""`liverec job` without flags resumes this job's latest retained checkpoint, and refuses an empty start.

On the real stack, through the real CLI: a `--fresh` run checkpoints a first batch and is killed (-9);
a second run without flags must say which checkpoint it resumes and end with exact per-user counts
over both batches (an empty start would count the second batch only, from the group's offsets). With
the checkpoints gone, a third start must be refused before any job starts, naming both flags.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import generator
from pipeline.infra.procs import wait_until
from pipeline.kafka_io import produce
from tests.recovery.counts import await_counts
from tests.recovery.test_kill_after_checkpoint import _committed_offsets, _job_env, _latest_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.flink]

LIVEREC = str(Path(sys.executable).with_name("liverec"))


def _cli(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603
            [LIVEREC, "job", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_restart_resumes_the_latest_checkpoint_or_refuses(isolated, tmp_path: Path) -> None:  # noqa: ANN001
    s = isolated
    chk_dir = tmp_path / "checkpoints"
    env = _job_env(s, chk_dir, LIVEREC_PROFILE_FLUSH_MS="1000")
    group = f"{env['LIVEREC_JOB_NAME']}-{s.topic_prefix}job"
    start = int(time.time() * 1000) - 3600 * 1000
    first = generator.events(600, users=30, start_ms=start, seed=31, user_prefix=f"{s.topic_prefix}u", max_step_ms=20)
    produce(s, s.topic("events"), first.records)

    log1 = tmp_path / "run1.log"
    proc = _cli(env, log1, "--fresh")
    try:
        assert wait_until(lambda: _committed_offsets(s, group) == len(first.records), 240, interval_s=0.5), (
            f"run 1: no checkpoint covered the first batch; log {log1}")
    finally:
        _kill(proc)
    assert "starting FRESH" in log1.read_text()
    checkpoint = _latest_checkpoint(chk_dir)
    assert checkpoint is not None

    second = generator.events(300, users=30, start_ms=first.max_ts + 1, seed=32, user_prefix=f"{s.topic_prefix}u",
                              max_step_ms=20)
    produce(s, s.topic("events"), second.records)
    expected = Counter(first.per_user) + Counter(second.per_user)
    log2 = tmp_path / "run2.log"
    proc = _cli(env, log2)
    try:
        ok, diff = await_counts(s, expected, 240)
    finally:
        _kill(proc)
    resumed = [line for line in log2.read_text().splitlines()
               if line.startswith("resuming from the latest retained checkpoint")]
    assert resumed, f"run 2 did not say it resumed; log {log2}"
    assert resumed[0].endswith(str(checkpoint)), f"{resumed[0]!r} is not run 1's last checkpoint {checkpoint}"
    assert ok, f"lost or doubled after the automatic resume: {list(diff.items())[:5]}; log {log2}"

    shutil.rmtree(chk_dir)
    log3 = tmp_path / "run3.log"
    proc = _cli(env, log3)
    try:
        assert proc.wait(timeout=180) == 2, f"run 3 was not refused; log {log3}"
    finally:
        _kill(proc)
    text = " ".join(log3.read_text().split())  # the console wraps long lines
    assert "refusing to start without state" in text and "--fresh" in text and "--restore" in text, text[-2000:]
    assert "committed offsets" in text

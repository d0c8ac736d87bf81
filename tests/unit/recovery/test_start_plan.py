"""How a start treats existing state (pipeline.recovery): the pure decision and checkpoint discovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import recovery
from pipeline.errors import ConfigError
from pipeline.recovery import Start, StartRefused, latest_checkpoint, plan_start, write_marker
from pipeline.settings import load_settings

ROOT = "file:///ck"


def _plan(**kw: object) -> recovery.StartPlan:
    args: dict[str, object] = {"restore": None, "fresh": False, "latest": None, "committed_offsets": 0,
                               "profiles_exist": False, "root": ROOT}
    args.update(kw)
    return plan_start(**args)  # type: ignore[arg-type]


def test_nothing_to_lose_starts_new() -> None:
    assert _plan().start is Start.NEW


def test_a_retained_checkpoint_is_resumed_and_named() -> None:
    plan = _plan(latest=Path("/ck/j1/chk-7"), committed_offsets=40, profiles_exist=True)
    assert (plan.start, plan.path) == (Start.RESUME, "/ck/j1/chk-7")
    assert "/ck/j1/chk-7" in plan.message


@pytest.mark.parametrize(("offsets", "profiles", "named"), [
    (12, False, "12 committed offsets"), (0, True, "user profiles"), (5, True, "5 committed offsets")])
def test_empty_start_over_existing_state_is_refused_with_the_flags(offsets: int, profiles: bool, named: str) -> None:
    with pytest.raises(StartRefused) as err:
        _plan(committed_offsets=offsets, profiles_exist=profiles)
    text = str(err.value)
    assert named in text and "--restore" in text and "--fresh" in text and ROOT in text


def test_fresh_and_restore_are_taken_as_asked() -> None:
    assert _plan(fresh=True, committed_offsets=3, profiles_exist=True).start is Start.FRESH
    plan = _plan(restore="/sp/savepoint-1", latest=Path("/ck/j/chk-1"))
    assert (plan.start, plan.path) == (Start.RESTORE, "/sp/savepoint-1")
    with pytest.raises(ConfigError, match="contradict"):
        _plan(restore="/sp/x", fresh=True)


def _chk(root: Path, job: str, n: int, mtime: float, *, done: bool = True) -> Path:
    d = root / job / f"chk-{n}"
    d.mkdir(parents=True)
    if done:
        (d / "_metadata").write_bytes(b"x")
        os.utime(d / "_metadata", (mtime, mtime))
    return d


def test_latest_checkpoint_is_the_newest_completed_one_of_this_job(tmp_path: Path) -> None:
    s = load_settings(topic_prefix="t1-", job_name="liverec")
    other = load_settings(topic_prefix="t2-", job_name="liverec")
    assert latest_checkpoint(tmp_path, s) is None
    for job, who in (("a", s), ("b", s), ("c", other)):
        write_marker(tmp_path, job, who)
    _chk(tmp_path, "a", 9, 1_000.0)  # high id, old: a run before a fresh start
    newest = _chk(tmp_path, "b", 2, 2_000.0)
    _chk(tmp_path, "b", 3, 3_000.0, done=False)  # in progress: no _metadata
    _chk(tmp_path, "c", 1, 9_000.0)  # another topic prefix: never this job's
    _chk(tmp_path, "d", 1, 9_500.0)  # no marker: a test's or benchmark's checkpoint
    assert latest_checkpoint(tmp_path, s) == newest
    assert latest_checkpoint(tmp_path, other) == tmp_path / "c" / "chk-1"


def test_local_root_of_uris() -> None:
    assert recovery.local_root("file:///a/b%20c") == Path("/a/b c")
    assert recovery.local_root("/plain/path") == Path("/plain/path")
    assert recovery.local_root("s3://bucket/ck") is None

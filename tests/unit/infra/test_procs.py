"""Pid-file process management: start, detect, stop by recorded pid, never by a recycled one."""

from __future__ import annotations

import sys

import pytest

from pipeline.errors import InfraError
from pipeline.infra import procs


def _svc(tmp_path, name="dummy") -> procs.Service:
    return procs.Service(name, tmp_path / "run", tmp_path / "logs")


def _sleeper(svc: procs.Service) -> list[str]:
    # Arguments after `-c CODE` go to sys.argv, so the marker rides along harmlessly.
    return [sys.executable, "-c", "import time; time.sleep(120)", svc.marker]


def test_start_records_pid_and_stop_kills_exactly_it(tmp_path) -> None:
    svc = _svc(tmp_path)
    pid = procs.start(svc, _sleeper(svc))
    assert procs.running_pid(svc) == pid
    assert procs.stop(svc, timeout_s=10) == pid
    assert procs.running_pid(svc) is None
    assert not svc.pid_file.exists()


def test_stop_without_running_process_is_a_noop(tmp_path) -> None:
    assert procs.stop(_svc(tmp_path)) is None


def test_pid_file_of_a_foreign_process_is_ignored_and_not_killed(tmp_path) -> None:
    import os

    svc = _svc(tmp_path)
    svc.run_dir.mkdir(parents=True)
    svc.pid_file.write_text(str(os.getpid()))  # our own pytest process: no marker on its command line
    assert procs.running_pid(svc) is None
    assert procs.stop(svc) is None
    assert not svc.pid_file.exists()


def test_garbage_pid_file_is_treated_as_not_running(tmp_path) -> None:
    svc = _svc(tmp_path)
    svc.run_dir.mkdir(parents=True)
    svc.pid_file.write_text("not-a-pid")
    assert procs.running_pid(svc) is None


def test_command_without_marker_is_refused(tmp_path) -> None:
    svc = _svc(tmp_path)
    with pytest.raises(InfraError, match="marker"):
        procs.start(svc, [sys.executable, "-c", "pass"])


def test_wait_until_polls_until_true_and_reports_timeout() -> None:
    calls = iter([False, False, True])
    assert procs.wait_until(lambda: next(calls), 5, interval_s=0.01)
    assert not procs.wait_until(lambda: False, 0.05, interval_s=0.01)

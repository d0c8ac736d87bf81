"""Savepoint compatibility guard: the job graph's operator uids must not change by accident.

If this fails after an intended change, read docs/operations.md (state of a renamed/removed uid is
not restored: allowNonRestoredState) and then regenerate the golden file:
`python -m pipeline.jobs.uids` and keep only entries with a uid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.flink

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "job_uids.json"


def test_job_uids_match_the_golden_list() -> None:
    # A fresh process: generated Table-API uids depend on what was built before in the same JVM.
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.jobs.uids"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    graph = json.loads(proc.stdout)
    current = [n for n in graph if n["uid"]]
    assert current == json.loads(GOLDEN.read_text())
    # Every operator that holds state or transactions must carry an explicit uid.
    from pipeline.jobs.liverec_job import UIDS

    assert set(UIDS) <= {n["uid"] for n in current}
    for node in graph:
        if node["name"] in ("user-shards", "item-shards", "events-router", "index-shard") or "sink" in node["name"]:
            assert node["uid"], f"operator {node['name']!r} has no uid"

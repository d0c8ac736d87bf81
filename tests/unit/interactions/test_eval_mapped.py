"""eval-offline / eval-pipeline on a file of one's own: the shared reader feeds the replay's events."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.eval_offline import load_events
from pipeline.interactions import ReadOptions


def test_a_mapped_semicolon_log_becomes_dense_time_ordered_events(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text(
        "when;visitor;product;action\n"
        "2025-01-02T10:00:05Z;v2;p-b;pageview\n"
        "2025-01-02T10:00:01Z;v1;p-a;pageview\n"
        "not a time;v1;p-c;pageview\n"
        "2025-01-02T10:00:09Z;v1;p-b;transaction\n"
    )
    opts = ReadOptions.parse(mapping="ts=when,user=visitor,item=product,type=action",
                             types="view=pageview,purchase=transaction")
    ev = load_events(f, opts)
    # sorted by time: v1/p-a (1 s), v2/p-b (5 s), v1/p-b (9 s); the bad row is reported, not kept
    assert ev.users.tolist() == [0, 1, 0]
    assert ev.items.tolist() == [0, 1, 1]
    assert ev.ts.tolist() == [1735812001, 1735812005, 1735812009]


def test_a_file_with_no_readable_row_is_an_error_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("a,b,t\n")
    with pytest.raises(ConfigError, match="no interaction"):
        load_events(f, ReadOptions.parse(mapping="user=a,item=b,ts=t"))

"""Cassandra rows of a profile and a closed session (`operators.profile.rows`), built from real events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import numpy as np
import pytest

from operators.profile.logic import DEFAULT_PARAMS, SessionSummary, on_event, on_timer
from operators.profile.rows import PROFILE_COLUMNS, SESSION_COLUMNS, WRITTEN_AT, last_event_ts, profile_row, session_row
from state_schemas.events import EVENT_TYPE_NAMES, Event
from state_schemas.user_profile import SCHEMA_VERSION, UserProfile

GAP = 30 * 60 * 1000
T0 = 1_764_000_000_000
DAY = 86_400_000
HL = DEFAULT_PARAMS.interest_half_life_ms
_ids = iter(range(10**9))


def ev(ts: int, type: str = "view", item: str = "i-1", category: str | None = "books", **kw: Any) -> Event:
    return Event(event_id=f"e-{next(_ids)}", user_id="u-1", item_id=item, type=type, ts=ts, category=category, **kw)


def run(*events: Event) -> tuple[UserProfile, list[SessionSummary]]:
    state: UserProfile | None = None
    closed = []
    for e in events:
        state, out = on_event(state, e, gap_ms=GAP)
        if out.closed is not None:
            closed.append(out.closed)
    assert state is not None
    return state, closed


def as_dict(row: tuple[object, ...], columns: tuple[str, ...]) -> dict[str, object]:
    assert len(row) == len(columns)
    return dict(zip(columns, row, strict=True))


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- columns vs the CQL tables ----------------------------------------------------------------------


def _cql_columns(table: str) -> list[str]:
    cql = resources.files("state_schemas").joinpath("cql/002_tables.cql").read_text()
    body = re.search(rf"CREATE TABLE IF NOT EXISTS \{{keyspace\}}\.{table} \((.*?)\n\);", cql, re.S)
    assert body is not None, table
    cols = []
    for line in body.group(1).splitlines():
        line = line.strip().rstrip(",")
        if line and not line.startswith(("PRIMARY KEY", "--")):
            cols.append(line.split()[0])
    for f in sorted(resources.files("state_schemas").joinpath("cql").iterdir(), key=lambda f: f.name):
        if f.name.endswith(".cql"):  # later, additive migrations
            cols += re.findall(rf"ALTER TABLE \{{keyspace\}}\.{table} ADD IF NOT EXISTS (\w+)", f.read_text())
    return cols


@pytest.mark.parametrize(("table", "columns"), [("user_profiles", (*PROFILE_COLUMNS, WRITTEN_AT)),
                                               ("sessions", SESSION_COLUMNS)])
def test_columns_are_the_cql_table_columns(table: str, columns: tuple[str, ...]) -> None:
    # the prepared INSERT names these columns: a column added on one side only fails the job at open()
    assert set(columns) == set(_cql_columns(table))
    assert len(set(columns)) == len(columns)


# --- profile_row ------------------------------------------------------------------------------------


def test_profile_row_follows_profile_columns() -> None:
    p, closed = run(
        ev(T0, "view", "i-1", "books", dwell_ms=1_000),
        ev(T0 + 60_000, "click", "i-2", "music"),
        ev(T0 + 120_000, "click", "i-2", "music"),
        ev(T0 + 2 * GAP + 120_000, "purchase", "i-3", "books"),  # closes the first session
    )
    assert len(closed) == 1
    p = p.with_embedding(np.arange(4, dtype=np.float32), T0 + 2 * GAP + 120_000)
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    assert list(row) == list(PROFILE_COLUMNS)
    assert row["user_id"] == "u-1"
    assert row["schema_version"] == SCHEMA_VERSION == 1
    assert row["seq"] == p.seq == 4
    assert row["event_count"] == 4
    assert row["counters"] == {"view": 1, "click": 2, "purchase": 1}
    assert row["recent_items"] == ["i-1", "i-2", "i-3"]
    assert row["vector"] == np.arange(4, dtype="<f4").tobytes()
    assert row["last_session_id"] == f"u-1:{T0}" == closed[0].session_id
    assert row["last_session_end"] == utc(T0 + 120_000)
    assert row["sessions_closed"] == 1
    assert row["updated_at"] == utc(T0 + 2 * GAP + 120_000)


def test_counters_name_only_types_that_occurred() -> None:
    p, _ = run(ev(T0, "add_to_cart"), ev(T0 + 1, "remove_from_cart"), ev(T0 + 2, "add_to_cart"))
    counters = as_dict(profile_row(p), PROFILE_COLUMNS)["counters"]
    assert counters == {"add_to_cart": 2, "remove_from_cart": 1}
    assert set(counters) <= set(EVENT_TYPE_NAMES) and all(n > 0 for n in counters.values())


def test_interests_and_engagement_are_decayed_to_the_last_event_time() -> None:
    # books at T0 (weight 1), music one half-life later (weight 1.5): read at the music event's time
    p, _ = run(ev(T0, "view", category="books"), ev(T0 + HL, "click", category="music"))
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    assert row["interests"] == pytest.approx({"books": 0.5, "music": 1.5})
    assert row["engagement"] == pytest.approx(0.5 + 1.5)
    assert row["updated_at"] == utc(T0 + HL)


def test_a_late_event_does_not_move_the_read_time_back() -> None:
    # the late (older) event is added decayed; the row is still read at the newest event's time
    p, _ = run(ev(T0 + HL, "view", category="books"), ev(T0 - 2 * GAP, "view", category="books"))
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    assert row["updated_at"] == utc(T0 + HL)
    assert row["interests"]["books"] == pytest.approx(1.0 + 2 ** (-(HL + 2 * GAP) / HL))


def test_a_weight_zero_event_still_sets_the_read_time() -> None:
    p, _ = run(ev(T0, "view", category="books"), ev(T0 + HL, "remove_from_cart", category="books"))
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    assert row["updated_at"] == utc(T0 + HL)
    assert row["interests"] == pytest.approx({"books": 0.5})
    assert row["engagement"] == pytest.approx(0.5)


def test_timestamps_are_utc_datetimes_and_none_before_a_session_closes() -> None:
    p, _ = run(ev(T0 + 123))
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    assert row["last_session_id"] is None and row["last_session_end"] is None
    at = row["updated_at"]
    assert isinstance(at, datetime) and at.tzinfo is UTC
    assert at == datetime(2025, 11, 24, 16, 0, 0, 123_000, tzinfo=UTC)
    assert int(at.timestamp() * 1000) == T0 + 123


def test_no_vector_until_the_first_step() -> None:
    p, _ = run(ev(T0))
    assert as_dict(profile_row(p), PROFILE_COLUMNS)["vector"] is None


def test_a_session_closed_by_the_timer_shows_in_the_row() -> None:
    p, _ = run(ev(T0), ev(T0 + 1_000))
    p2, closed = on_timer(p, T0 + 1_000 + GAP, GAP)
    assert closed is not None and p2 is not None
    row = as_dict(profile_row(p2), PROFILE_COLUMNS)
    assert (row["seq"], row["sessions_closed"]) == (3, 1)
    assert row["last_session_id"] == closed.session_id == f"u-1:{T0}"
    assert row["last_session_end"] == utc(T0 + 1_000)
    assert row["updated_at"] == utc(T0 + 1_000)
    assert last_event_ts(p2) == T0 + 1_000


def test_profile_row_is_pure() -> None:
    p, _ = run(ev(T0), ev(T0 + 5))
    assert profile_row(p) == profile_row(p)
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    row["interests"]["books"] = 99.0  # type: ignore[index]
    row["counters"]["view"] = 99  # type: ignore[index]
    assert as_dict(profile_row(p), PROFILE_COLUMNS)["interests"]["books"] != 99.0  # type: ignore[index]
    assert p.type_counts[0] == 2


# --- session_row ------------------------------------------------------------------------------------


def test_session_row_follows_session_columns() -> None:
    _, closed = run(
        ev(T0, "view", "i-1", "books", dwell_ms=1_500),
        ev(T0 + 10_000, "add_to_cart", "i-1", "books", dwell_ms=500),
        ev(T0 + 20_000, "purchase", "i-1", "garden"),
        ev(T0 + 20_000 + GAP + 1, "view"),  # closes it
    )
    (s,) = closed
    row = as_dict(session_row(s), SESSION_COLUMNS)
    assert list(row) == list(SESSION_COLUMNS)
    assert row == {
        "user_id": "u-1",
        "session_id": f"u-1:{T0}",
        "start_ts": utc(T0),
        "end_ts": utc(T0 + 20_000),
        "events_by_type": {"view": 1, "add_to_cart": 1, "purchase": 1},
        "categories": {"books": 2, "garden": 1},
        "dwell_ms": 2_000,
        "converted": True,
        "event_count": 3,
    }
    assert row["start_ts"].tzinfo is UTC  # type: ignore[union-attr]


def test_session_row_maps_are_plain_dicts() -> None:
    # the driver serialises dict for map<...>; a mappingproxy would not do
    _, closed = run(ev(T0), ev(T0 + GAP + 1))
    row = as_dict(session_row(closed[0]), SESSION_COLUMNS)
    assert type(row["events_by_type"]) is dict and type(row["categories"]) is dict
    assert row["converted"] is False and row["event_count"] == 1


# --- rehydration: a profile back from its row --------------------------------------------------------


def _as_driver_returns(row: dict[str, object]) -> dict[str, object]:
    """What the driver hands back: naive UTC datetimes, float32 blob as bytes, maps and lists as given."""
    out = dict(row)
    for k in ("last_session_end", "updated_at"):
        v = out[k]
        out[k] = v.replace(tzinfo=None) if isinstance(v, datetime) else v
    return out


def test_profile_from_its_row_writes_the_same_row_and_continues_counting() -> None:
    from operators.profile.rows import profile_from_row

    events = (ev(T0, "view", "a"), ev(T0 + 1_000, "purchase", "b", category="garden"),
              ev(T0 + GAP + DAY, "click", "c"), ev(T0 + GAP + DAY + 5, "add_to_cart", "d"))
    p, closed = run(*events)
    assert closed, "the test needs a closed session"
    p = p.with_embedding(np.arange(8, dtype=np.float32) / 8, p.engagement_ts)
    row = as_dict(profile_row(p), PROFILE_COLUMNS)
    back = profile_from_row(_as_driver_returns(row))
    assert as_dict(profile_row(back), PROFILE_COLUMNS) == row
    assert (back.seq, back.total_events, back.sessions_closed) == (p.seq, p.total_events, p.sessions_closed)
    assert back.session is None  # not in the row: the next event opens a new session
    again, out = on_event(back, events[-1], gap_ms=GAP)  # read again after a fresh start: already counted
    assert again.total_events == p.total_events and out.status == "duplicate"
    nxt, _ = on_event(back, ev(T0 + 3 * GAP + 2 * DAY, "view", "e"), gap_ms=GAP)
    assert nxt.total_events == p.total_events + 1 and nxt.seq > p.seq  # writes keep their timestamp order


def test_profile_from_a_sparse_row() -> None:
    from operators.profile.rows import profile_from_row

    back = profile_from_row({"user_id": "u-9", "seq": 3, "event_count": 3})
    assert (back.user_id, back.seq, back.total_events, back.embedding, back.interests) == ("u-9", 3, 3, b"", {})

"""Cassandra rows of a user profile and a closed session (pure: no driver import).

Every write carries `USING TIMESTAMP <seq>`: `seq` grows by one per state update of that user, so a
replay after a failure rewrites a row with the same or a lower timestamp and can never move it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from operators.profile.logic import DEFAULT_PARAMS, ProfileParams, SessionSummary, decayed, last_session_id
from state_schemas.events import EVENT_TYPE_NAMES
from state_schemas.user_profile import NO_TS, SCHEMA_VERSION, UserProfile

PROFILE_COLUMNS = (
    "user_id", "schema_version", "seq", "event_count", "counters", "interests", "engagement",
    "recent_items", "vector", "last_session_id", "last_session_end", "sessions_closed", "updated_at",
    "recent_event_fps",
)
#: Set by the writer, not by `profile_row` (a wall-clock time: this module has no clock); see
#: state_schemas/cql/003_profiles_rehydration.cql for why it exists.
WRITTEN_AT = "written_at"
SESSION_COLUMNS = (
    "user_id", "session_id", "start_ts", "end_ts", "events_by_type", "categories", "dwell_ms",
    "converted", "event_count",
)


def _dt(ms: int) -> datetime | None:
    return None if ms == NO_TS else datetime.fromtimestamp(ms / 1000, tz=UTC)


def last_event_ts(p: UserProfile) -> int:
    """Event time of the newest thing the profile reflects."""
    candidates = [p.engagement_ts, p.embedding_ts, p.last_closed_end_ts]
    if p.session is not None:
        candidates.append(p.session.last_ts)
    return max(candidates)


def profile_row(p: UserProfile, params: ProfileParams = DEFAULT_PARAMS) -> tuple[object, ...]:
    """Values for PROFILE_COLUMNS; interests and engagement are read at the profile's last event time."""
    at = last_event_ts(p)
    interests = {c: decayed(v, t, at, params.interest_half_life_ms) for c, (v, t) in p.interests.items()}
    engagement = 0.0
    if p.engagement_ts != NO_TS:
        engagement = decayed(p.engagement, p.engagement_ts, at, params.engagement_half_life_ms)
    counters = {name: n for name, n in zip(EVENT_TYPE_NAMES, p.type_counts, strict=True) if n}
    return (
        p.user_id, SCHEMA_VERSION, p.seq, p.total_events, counters, interests, engagement,
        list(p.recent_items), p.embedding or None, last_session_id(p), _dt(p.last_closed_end_ts),
        p.sessions_closed, _dt(at), p.recent_event_fps or None,
    )


def _ms_or_none(ms: int) -> int | None:
    return None if ms == NO_TS else ms


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def profile_json(p: UserProfile, written_at_ms: int, params: ProfileParams = DEFAULT_PARAMS) -> str:
    """The `user_profiles` row of ``p`` in CQL ``INSERT ... JSON`` form (the Java sink's input).

    The same values as `profile_row`, with timestamps as epoch milliseconds and blobs as ``0x`` hex;
    ``written_at_ms`` is the writer's wall clock (this module has no clock), see `WRITTEN_AT`.

    >>> row = json.loads(profile_json(UserProfile("u1", seq=3, total_events=2), 1_000))
    >>> row["user_id"], row["seq"], row["event_count"], row["vector"], row["written_at"]
    ('u1', 3, 2, None, 1000)
    """
    at = last_event_ts(p)
    hl = params.interest_half_life_ms
    engagement = 0.0
    if p.engagement_ts != NO_TS:
        engagement = decayed(p.engagement, p.engagement_ts, at, params.engagement_half_life_ms)
    return _dumps({
        "user_id": p.user_id, "schema_version": SCHEMA_VERSION, "seq": p.seq, "event_count": p.total_events,
        "counters": {name: n for name, n in zip(EVENT_TYPE_NAMES, p.type_counts, strict=True) if n},
        "interests": {c: decayed(v, t, at, hl) for c, (v, t) in p.interests.items()},
        "engagement": engagement, "recent_items": list(p.recent_items),
        "vector": "0x" + p.embedding.hex() if p.embedding else None, "last_session_id": last_session_id(p),
        "last_session_end": _ms_or_none(p.last_closed_end_ts), "sessions_closed": p.sessions_closed,
        "updated_at": _ms_or_none(at), "recent_event_fps": "0x" + p.recent_event_fps.hex() if p.recent_event_fps
        else None, WRITTEN_AT: written_at_ms,
    })


def session_row_json(s: SessionSummary) -> str:
    """The `sessions` row of a closed session in CQL ``INSERT ... JSON`` form.

    >>> from operators.profile.logic import SessionSummary
    >>> json.loads(session_row_json(SessionSummary("u1", "u1:5", 5, 9, 2, {"view": 2}, {}, 0, False, 4)))["end_ts"]
    9
    """
    return _dumps({
        "user_id": s.user_id, "session_id": s.session_id, "start_ts": _ms_or_none(s.start_ts),
        "end_ts": _ms_or_none(s.end_ts), "events_by_type": dict(s.type_counts), "categories": dict(s.categories),
        "dwell_ms": s.dwell_ms, "converted": s.converted, "event_count": s.event_count,
    })


def session_row(s: SessionSummary) -> tuple[object, ...]:
    """Values for SESSION_COLUMNS."""
    return (
        s.user_id, s.session_id, _dt(s.start_ts), _dt(s.end_ts), dict(s.type_counts), dict(s.categories),
        s.dwell_ms, s.converted, s.event_count,
    )


def _ms(value: object) -> int:
    """Epoch ms of a driver timestamp (naive datetimes are UTC, as Cassandra stores them)."""
    if not isinstance(value, datetime):
        return NO_TS
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(round(value.timestamp() * 1000))


def profile_from_row(row: Mapping[str, Any]) -> UserProfile:
    """A profile rebuilt from its `user_profiles` row: what a user stage without state starts from.

    Why: after a start with empty keyed state (``--fresh``, lost state) the row is the best knowledge of
    the user; answering from it beats a cold start, and continuing its ``seq`` keeps the row's
    ``USING TIMESTAMP`` order (a profile starting again at seq 0 would have every write ignored).
    Restored: counts, per-type counters, interests and engagement (as of ``updated_at``), recent items, the
    embedding, the last closed session (its id and end), sessions closed, the dedupe fingerprints of the last
    ``dedupe_window`` events (so those, read again, are not counted twice). Not in the row, so not restored: the
    open session (the next event starts a new one), late-event count, the seen-items history beyond the recent
    items.
    """
    at = _ms(row.get("updated_at"))
    counters = row.get("counters") or {}
    interests = {str(c): (float(v), at) for c, v in (row.get("interests") or {}).items()}
    engagement = float(row.get("engagement") or 0.0)
    vector = row.get("vector") or b""
    sid = row.get("last_session_id")
    start = sid.rsplit(":", 1)[1] if isinstance(sid, str) and ":" in sid else ""
    return UserProfile(
        user_id=str(row["user_id"]),
        seq=int(row.get("seq") or 0),
        total_events=int(row.get("event_count") or 0),
        sessions_closed=int(row.get("sessions_closed") or 0),
        type_counts=tuple(int(counters.get(name, 0)) for name in EVENT_TYPE_NAMES),
        last_closed_start_ts=int(start) if start.lstrip("-").isdigit() else NO_TS,
        last_closed_end_ts=_ms(row.get("last_session_end")),
        interests=MappingProxyType(interests),
        engagement=engagement,
        engagement_ts=at if engagement else NO_TS,
        recent_items=tuple(str(i) for i in row.get("recent_items") or ()),
        embedding=bytes(vector),
        embedding_ts=at if vector else NO_TS,
        recent_event_fps=bytes(row.get("recent_event_fps") or b""),
    )

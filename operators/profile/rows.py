"""Cassandra rows of a user profile and a closed session (pure: no driver import).

Every write carries `USING TIMESTAMP <seq>`: `seq` grows by one per state update of that user, so a
replay after a failure rewrites a row with the same or a lower timestamp and can never move it back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from operators.profile.logic import DEFAULT_PARAMS, ProfileParams, SessionSummary, decayed, last_session_id
from state_schemas.events import EVENT_TYPE_NAMES
from state_schemas.user_profile import NO_TS, SCHEMA_VERSION, UserProfile

PROFILE_COLUMNS = (
    "user_id", "schema_version", "seq", "event_count", "counters", "interests", "engagement",
    "recent_items", "vector", "last_session_id", "last_session_end", "sessions_closed", "updated_at",
)
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
        p.sessions_closed, _dt(at),
    )


def session_row(s: SessionSummary) -> tuple[object, ...]:
    """Values for SESSION_COLUMNS."""
    return (
        s.user_id, s.session_id, _dt(s.start_ts), _dt(s.end_ts), dict(s.type_counts), dict(s.categories),
        s.dwell_ms, s.converted, s.event_count,
    )

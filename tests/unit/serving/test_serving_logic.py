"""`operators.serving.logic.build_query`: the ladder's rung, the query vector, exclusions and freshness."""

from __future__ import annotations

import numpy as np
import pytest

from operators.serving.logic import (
    Query,
    build_query,
    freshest_event_ts,
)
from pipeline.errors import ConfigError
from state_schemas.requests_v1 import RequestV1, Source
from state_schemas.user_profile import Session, UserProfile

NOW = 1_764_000_000_000
HOUR = 3_600_000
VECS: dict[str, np.ndarray] = {
    "a": np.array([1.0, 0.0, 0.0]),
    "b": np.array([0.0, 1.0, 0.0]),
    "c": np.array([0.0, 0.0, 1.0]),
}
CATS = {"a": "books", "b": "books", "c": "music", "d": "music", "e": "toys"}
POP: dict[str, tuple[float, float]] = {i: (5.0 - n, NOW) for n, i in enumerate("abcde")}


def warm(recent: tuple[str, ...] = ("a",), emb: list[float] | None = None, ts: int = NOW - HOUR) -> UserProfile:
    p = UserProfile("u1", recent_items=recent, engagement=1.0, engagement_ts=ts)
    return p.with_embedding(emb, ts) if emb is not None else p


def request(k: int = 3, exclude_seen: bool = True, category: str | None = None) -> RequestV1:
    return RequestV1("r1", "u1", NOW, k, exclude_seen, category)


def q(profile: UserProfile | None, **kw: object) -> Query:
    return build_query(profile, VECS.get, session_weight=kw.pop("session_weight", 0.5), now_ms=NOW, **kw)  # type: ignore[arg-type]


# --- build_query: the ladder -------------------------------------------------------------------------------


def test_no_profile_is_cold_start() -> None:
    query = q(None, category="books")
    assert (query.source, query.vector, query.user_id, query.freshest_event_ts) == (Source.COLD_START, None, None, None)
    assert query.exclude == frozenset() and query.category == "books"


def test_profile_without_history_is_cold_start() -> None:
    query = q(UserProfile("u1", late_events=1, engagement=1.0, engagement_ts=NOW - 5))
    assert query.source is Source.COLD_START and query.vector is None
    assert query.freshest_event_ts == NOW - 5


def test_recent_items_without_embedding_is_session() -> None:
    query = q(warm(("a", "b")))
    assert query.source is Source.SESSION
    assert query.vector is not None and query.vector.dtype == np.float32
    np.testing.assert_allclose(query.vector, [2**-0.5, 2**-0.5, 0.0], rtol=1e-6)
    assert query.exclude == {"a", "b"} and query.seeds == ("a", "b")


def test_session_with_no_known_vector_has_no_query_vector() -> None:
    query = q(warm(("zz",)))
    assert query.source is Source.SESSION and query.vector is None


def test_embedding_is_personalized_and_blended_with_recent_items() -> None:
    p = warm(("a",), emb=[0.0, 3.0, 0.0])
    np.testing.assert_allclose(q(p, session_weight=0.0).vector, [0, 1, 0], atol=1e-7)
    np.testing.assert_allclose(q(p, session_weight=1.0).vector, [1, 0, 0], atol=1e-7)
    np.testing.assert_allclose(q(p, session_weight=0.25).vector, [0.25, 0.75, 0], atol=1e-7)
    assert q(p).source is Source.PERSONALIZED


def test_embedding_without_recent_vectors_is_the_normalised_embedding() -> None:
    query = q(warm(("zz",), emb=[0.0, 0.0, 2.0]))
    assert query.source is Source.PERSONALIZED
    np.testing.assert_allclose(query.vector, [0, 0, 1], atol=1e-7)


def test_item_vectors_of_another_dimension_are_skipped() -> None:
    vecs = {**VECS, "x": np.ones(5)}
    query = build_query(warm(("x", "a"), emb=[0.0, 1.0, 0.0]), vecs.get, session_weight=0.5, now_ms=NOW)
    np.testing.assert_allclose(query.vector, [0.5, 0.5, 0], atol=1e-7)


def test_session_weight_decays_with_time_since_last_event() -> None:
    p = warm(("a",), emb=[0.0, 1.0, 0.0], ts=NOW - HOUR)
    query = q(p, session_weight=0.5, session_half_life_ms=HOUR)
    np.testing.assert_allclose(query.vector, [0.25, 0.75, 0], atol=1e-7)


def test_exclude_seen_false_excludes_nothing() -> None:
    assert q(warm(("a", "b")), exclude_seen=False).exclude == frozenset()


def test_bad_session_weight() -> None:
    with pytest.raises(ConfigError, match="session_weight"):
        q(None, session_weight=1.5)


def test_freshest_event_ts_takes_the_newest_of_every_clock() -> None:
    s = Session(NOW - 10, NOW - 3, (1, 0, 0, 0, 0, 0), {})
    p = UserProfile("u1", session=s, engagement_ts=NOW - 7, interests={"books": (1.0, NOW - 1)})
    assert freshest_event_ts(p) == NOW - 1
    assert freshest_event_ts(p._replace(interests={})) == NOW - 3
    assert freshest_event_ts(UserProfile("u1")) is None

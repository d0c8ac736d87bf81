"""Gathering shard partials into one answer (the ladder) and building queries from user state."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from operators.serving.logic import finish, make_query
from state_schemas.messages import PartialMsg
from state_schemas.requests_v1 import Source
from state_schemas.user_profile import UserProfile
from tests.contracts.strategies import PROPS

T = 1_764_000_000_000


def part(shard: int = 0, shards: int = 1, ranked=(), trending=(), baseline=(), *, source: str = "personalized",
         kind: str = "request", k: int = 3, target: str | None = None, known: bool = False) -> PartialMsg:
    return PartialMsg("q1", "u1", kind, k, source, T, T - 5, target, shard, shards, tuple(ranked), tuple(trending),
                      tuple(baseline), known, f"s{shard}", "")


def test_personalized_answer_is_padded_with_trending_never_twice() -> None:
    a, ev = finish([part(ranked=[("a", 2.0)], trending=[("a", 9.0), ("b", 5.0), ("c", 1.0)])], now_ms=T,
                   model_version="m")
    assert [i for i, _ in a.items] == ["a", "b", "c"] and a.source is Source.PERSONALIZED and ev is None
    assert (a.freshest_event_ts, a.served_at, a.model_version) == (T - 5, T, "m")


def test_nothing_ranked_falls_back_to_trending_and_cold_users_are_cold_start() -> None:
    a, _ = finish([part(trending=[("b", 5.0)])], now_ms=T, model_version="m")
    assert a.source is Source.TRENDING and [i for i, _ in a.items] == ["b"]
    c, _ = finish([part(ranked=[("x", 1.0)], trending=[("b", 5.0)], source="cold_start")], now_ms=T,
                  model_version="m")
    assert c.source is Source.COLD_START and [i for i, _ in c.items] == ["b"], "a cold user ignores ranked lists"
    e, _ = finish([part()], now_ms=T, model_version="m")
    assert e.items == () and e.source is Source.COLD_START


def test_shards_merge_by_score_whatever_their_arrival_order() -> None:
    p0 = part(0, 2, ranked=[("a", 1.0), ("c", 0.5)], trending=[("a", 3.0)])
    p1 = part(1, 2, ranked=[("b", 2.0)], trending=[("b", 4.0)])
    x, _ = finish([p0, p1], now_ms=T, model_version="m")
    y, _ = finish([p1, p0], now_ms=T, model_version="m")
    assert x == y and [i for i, _ in x.items] == ["b", "a", "c"] and x.index_version == "s0,s1"


def test_eval_outcome_judges_the_served_answer_and_the_baseline() -> None:
    p = part(ranked=[("a", 1.0)], trending=[("t", 1.0)], baseline=[("t", 9.0)], kind="eval", target="t",
             known=True)
    _, ev = finish([p], now_ms=T, model_version="m")
    assert ev is not None and ev.evaluated and ev.hit and ev.baseline_hit, "padding with trending counts"
    _, miss = finish([p._replace(target="z", target_known=False)], now_ms=T, model_version="m")
    assert miss is not None and not miss.evaluated and not miss.hit and not miss.baseline_hit


@PROPS
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.floats(-5, 5)), max_size=8),
       st.lists(st.tuples(st.sampled_from("abcdefgh"), st.floats(0, 5)), max_size=8), st.integers(1, 6))
def test_answers_are_distinct_at_most_k_and_empty_only_without_candidates(ranked, trending, k) -> None:
    a, _ = finish([part(ranked=ranked, trending=trending, k=k)], now_ms=T, model_version="m")
    ids = [i for i, _ in a.items]
    assert len(ids) == len(set(ids)) <= k
    assert (not ids) == (not ranked and not trending)


def profile(events: int, recent: tuple[str, ...] = ("a", "b"), emb: list[float] | None = None) -> UserProfile:
    p = UserProfile("u1", total_events=events, recent_items=recent, engagement=1.0, engagement_ts=T)
    return p.with_embedding(emb or [0.0, 2.0, 0.0], T) if events else p


VECS = {"a": np.array([1.0, 0.0, 0.0]), "b": np.array([0.0, 0.0, 1.0])}


def q(p: UserProfile | None, seen: tuple[str, ...] = (), **kw: object):  # noqa: ANN202
    args = {"qid": "q", "user_id": "u1", "kind": "request", "k": 5, "ts": T, "personalize_after": 3, **kw}
    return make_query(p, seen, VECS.get, **args)  # type: ignore[arg-type]


def test_query_rungs_follow_the_event_count() -> None:
    assert q(None).source == "cold_start" and q(None).vector is None
    warm = q(profile(2))
    assert warm.source == "session"
    np.testing.assert_allclose(warm.vector, [2**-0.5, 0, 2**-0.5], rtol=1e-6)
    hot = q(profile(3))
    assert hot.source == "personalized"
    np.testing.assert_allclose(hot.vector, [0.0, 2.0, 0.0]), "the raw embedding: index scores are BPR scores"


def test_query_excludes_everything_seen_unless_asked_not_to() -> None:
    assert q(profile(5), seen=("z", "a")).exclude == ("a", "b", "z")
    assert q(profile(5), seen=("z",), exclude_seen=False).exclude == ()
    assert q(profile(5)).seeds == ("a", "b")


def test_session_weight_blends_unit_parts_and_keeps_the_embedding_norm() -> None:
    v = q(profile(5), session_weight=0.5).vector
    half = 0.5 * 2**-0.5
    np.testing.assert_allclose(v, 2.0 * np.array([half, 0.5, half]), rtol=1e-6)


def test_state_digest_follows_every_byte_of_both_parts_and_reaches_the_answer() -> None:
    from operators.serving.logic import state_digest

    base = state_digest(b"profile", b"seen")
    assert base is not None and len(base) == 16
    assert state_digest(b"profile", b"seen") == base
    assert len({base, state_digest(b"profilf", b"seen"), state_digest(b"profile", b"seeo"),
                state_digest(b"profiles", b"een"), state_digest(b"profile", None)}) == 5
    assert state_digest(None, None) is None
    prof = UserProfile("u1", total_events=5, recent_items=("a",))
    q = make_query(prof, ("a",), lambda _i: None, qid="r", user_id="u1", kind="request", k=3, ts=T, digest=base)
    assert q.digest == base
    answer, _ = finish([part(ranked=[("x", 1.0)])._replace(digest=base)], now_ms=T, model_version="m")
    assert answer.state_digest == base

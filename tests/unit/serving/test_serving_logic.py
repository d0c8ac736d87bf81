"""`operators.serving.logic`: query building, the ladder, re-ranking, trending and `serve` fallbacks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.learner.popularity import decay
from operators.serving.logic import (
    DEFAULT_WEIGHTS,
    Query,
    ServeParams,
    build_query,
    freshest_event_ts,
    rerank,
    serve,
    trending,
)
from pipeline.errors import ConfigError
from state_schemas.requests_v1 import Answer, RequestV1, Source
from state_schemas.user_profile import Session, UserProfile
from tests.contracts.strategies import PROPS

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


# --- rerank and trending -----------------------------------------------------------------------------------

ONLY_ANN = {"ann": 1.0, "cooc": 0.0, "pop": 0.0}


def rr(cands: list[tuple[str, float]], **kw: object) -> list[tuple[str, float]]:
    args: dict[str, object] = {
        "popularity": POP,
        "cooc_scores": None,
        "now_ms": NOW,
        "half_life_ms": HOUR,
        "k": 10,
        **kw,
    }
    return rerank(cands, **args)  # type: ignore[arg-type]


def test_rerank_orders_by_blend_and_drops_excluded_filtered_and_nonfinite() -> None:
    cands = [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", float("nan")), ("e", 0.7)]
    assert [i for i, _ in rr(cands, weights=ONLY_ANN)] == ["b", "e", "c", "a"]
    assert [i for i, _ in rr(cands, weights=ONLY_ANN, exclude={"b"})] == ["e", "c", "a"]
    got = rr(cands, weights=ONLY_ANN, category_of=CATS.get, category="books")
    assert [i for i, _ in got] == ["b", "a"]


def test_rerank_uses_cooc_and_popularity() -> None:
    cands = [("a", 0.0), ("b", 0.0), ("c", 0.0)]
    assert rr(cands, cooc_scores={"c": 3.0, "b": 1.0})[0][0] == "c"
    assert rr(cands, cooc_scores=None)[0][0] == "a"  # only popularity differs


def test_rerank_dedupes_keeping_best_and_ignores_order() -> None:
    cands = [("a", 0.1), ("b", 0.5), ("a", 0.9)]
    got = rr(cands, weights=ONLY_ANN)
    assert [i for i, _ in got] == ["a", "b"]
    assert rr(list(reversed(cands)), weights=ONLY_ANN) == got


def test_rerank_category_needs_a_lookup() -> None:
    with pytest.raises(ConfigError, match="category_of"):
        rr([("a", 1.0)], category="books")


def test_rerank_unknown_weight_is_an_error() -> None:
    with pytest.raises(ConfigError):
        rr([("a", 1.0)], weights={"bpr": 1.0})


def test_trending_decays_and_breaks_ties_by_id() -> None:
    pop = {"old": (8.0, NOW - 2 * HOUR), "new": (3.0, NOW), "tie": (3.0, NOW), "gone": (0.0, NOW)}
    got = trending(pop, now_ms=NOW, half_life_ms=HOUR, k=10)
    assert got == [("new", 3.0), ("tie", 3.0), ("old", 2.0)]
    assert trending(pop, now_ms=NOW, half_life_ms=HOUR, k=1, exclude={"new"}) == [("tie", 3.0)]
    assert trending({}, now_ms=NOW, half_life_ms=HOUR, k=3) == []


item_ids = st.sampled_from(list("abcdefghij"))
pops = st.dictionaries(item_ids, st.tuples(st.floats(0, 100), st.integers(NOW - 10 * HOUR, NOW)), max_size=10)
cat_of = {i: ("books" if i in "abcde" else "music") for i in "abcdefghij"}


@PROPS
@given(pops, st.sampled_from(["books", "music"]), st.integers(1, 12), st.frozensets(item_ids))
def test_trending_respects_category_and_exclusion(
    pop: dict[str, tuple[float, int]], cat: str, k: int, exclude: frozenset[str]
) -> None:
    got = trending(pop, now_ms=NOW, half_life_ms=HOUR, k=k, exclude=exclude, category_of=cat_of.get, category=cat)
    assert all(cat_of[i] == cat and i not in exclude for i, _ in got)
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True) and len(got) <= k
    # trending's rule: an item whose *decayed* count is 0 (e.g. a subnormal that underflows) is not trending
    eligible = {
        i for i, (v, t) in pop.items() if decay(v, t, NOW, HOUR) > 0 and cat_of[i] == cat and i not in exclude
    }
    assert len(got) == min(k, len(eligible))


# --- serve: the ladder end to end --------------------------------------------------------------------------


def answer(
    query: Query,
    ann: list[tuple[str, float]] | None,
    req: RequestV1 | None = None,
    pop: Mapping[str, tuple[float, float]] = POP,
    **kw: object,
) -> Answer:
    args: dict[str, object] = {
        "popularity": pop,
        "category_of": CATS.get,
        "now_ms": NOW,
        "model_version": "m1",
        "index_version": "x1",
        **kw,
    }
    return serve(query, ann, req or request(), **args)  # type: ignore[arg-type]


def test_warm_user_is_personalized() -> None:
    p = warm(("a",), emb=[0.0, 1.0, 0.0])
    a = answer(q(p), [("a", 9.0), ("b", 0.9), ("c", 0.5), ("d", 0.1)])
    assert a.source is Source.PERSONALIZED
    assert [i for i, _ in a.items] == ["b", "c", "d"]
    assert (a.request_id, a.user_id, a.served_at, a.freshest_event_ts) == ("r1", "u1", NOW, NOW - HOUR)
    assert (a.model_version, a.index_version) == ("m1", "x1")


def test_session_user_is_session() -> None:
    a = answer(q(warm(("a",))), [("b", 0.9), ("c", 0.2), ("d", 0.1)])
    assert a.source is Source.SESSION and len(a.items) == 3


def test_new_user_gets_trending_as_cold_start() -> None:
    a = answer(q(None), [("e", 9.0)])  # the index is not asked for a cold user; its results are ignored
    assert a.source is Source.COLD_START
    assert [i for i, _ in a.items] == ["a", "b", "c"]


def test_empty_or_rebuilding_index_falls_back_to_trending() -> None:
    query = q(warm(("a",), emb=[0.0, 1.0, 0.0]))
    for ann in (None, []):
        a = answer(query, ann)
        assert a.source is Source.TRENDING and [i for i, _ in a.items] == ["b", "c", "d"]


def test_session_user_without_index_is_served_from_cooc() -> None:
    a = answer(q(warm(("a",))), None, cooc_scores={"d": 5.0, "e": 1.0})
    assert a.source is Source.SESSION
    assert [i for i, _ in a.items][:2] == ["d", "e"]
    assert len(a.items) == 3  # padded with trending


def test_short_list_is_padded_with_trending_unless_disabled() -> None:
    query = q(warm(("a",), emb=[0.0, 1.0, 0.0]))
    a = answer(query, [("e", 1.0)], req=request(k=3))
    assert [i for i, _ in a.items] == ["e", "b", "c"] and a.source is Source.PERSONALIZED
    a = answer(query, [("e", 1.0)], req=request(k=3), params=ServeParams(fill_with_trending=False))
    assert [i for i, _ in a.items] == ["e"]


def test_empty_answer_only_when_nothing_is_known() -> None:
    a = answer(q(None), None, pop={})
    assert a.items == () and a.source is Source.COLD_START
    a = answer(q(warm(("a",), emb=[0.0, 1.0, 0.0])), [], pop={})
    assert a.items == () and a.source is Source.COLD_START


def test_category_filter_applies_to_every_rung() -> None:
    query = q(warm(("a",), emb=[0.0, 1.0, 0.0]), category="music")
    a = answer(query, [("b", 0.9), ("c", 0.5)], req=request(k=3, category="music"))
    assert [i for i, _ in a.items] == ["c", "d"]
    assert all(CATS[i] == "music" for i, _ in answer(q(None, category="music"), None).items)


def test_serve_params_validate() -> None:
    with pytest.raises(ConfigError):
        ServeParams(half_life_ms=0)
    with pytest.raises(ConfigError):
        ServeParams(weights={"ann": float("nan")})
    assert dict(ServeParams().weights) == dict(DEFAULT_WEIGHTS)


# --- properties --------------------------------------------------------------------------------------------

recents = st.lists(item_ids, max_size=5, unique=True).map(tuple)
embs = st.none() | st.lists(st.floats(-1, 1), min_size=3, max_size=3).filter(lambda v: any(abs(x) > 1e-3 for x in v))
anns = st.none() | st.lists(st.tuples(item_ids, st.floats(-5, 5)), max_size=12)


@PROPS
@given(recents, embs, anns, pops, st.booleans(), st.integers(1, 12), st.none() | st.sampled_from(["books", "music"]))
def test_answers_never_contain_excluded_items_and_ladder_holds(
    recent: tuple[str, ...],
    emb: list[float] | None,
    ann: list[tuple[str, float]] | None,
    pop: dict[str, tuple[float, int]],
    exclude_seen: bool,
    k: int,
    cat: str | None,
) -> None:
    profile = warm(recent, emb=emb) if recent or emb is not None else None
    query = build_query(profile, VECS.get, session_weight=0.3, now_ms=NOW, exclude_seen=exclude_seen, category=cat)
    expected = Source.PERSONALIZED if emb is not None else Source.SESSION if recent else Source.COLD_START
    assert query.source is expected
    a = answer(query, ann, req=request(k=k, exclude_seen=exclude_seen, category=cat), pop=pop, category_of=cat_of.get)
    ids = [i for i, _ in a.items]
    assert len(ids) == len(set(ids)) <= k
    if exclude_seen:
        assert not set(ids) & set(recent)
    if cat is not None:
        assert all(cat_of[i] == cat for i in ids)
    # empty only when nothing eligible is known at all
    known = {i for i, (v, _) in pop.items() if v > 0}
    if expected is not Source.COLD_START:
        known |= {i for i, s in ann or ()}
    eligible = {i for i in known if (not exclude_seen or i not in recent) and (cat is None or cat_of[i] == cat)}
    assert (a.items == ()) == (not eligible)
    if not a.items:
        assert a.source is Source.COLD_START
    elif expected is Source.COLD_START:
        assert a.source is Source.COLD_START
    else:
        assert a.source in (expected, Source.TRENDING)

"""Per-user session and interest logic: the documented rules, example by example, then as properties."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from operators.profile.logic import (
    DEFAULT_PARAMS,
    Outcome,
    ProfileParams,
    SessionSummary,
    Status,
    decay_add,
    decayed,
    is_duplicate,
    last_session_id,
    on_event,
    on_timer,
    session_timer,
    top_interests,
)
from pipeline.errors import ConfigError, StateKeyError
from state_schemas import user_profile
from state_schemas.events import Event
from state_schemas.user_profile import NO_TS, UserProfile
from tests.contracts.strategies import FEW, PROPS

GAP = 30 * 60 * 1000
T0 = 1_764_000_000_000
DAY = 86_400_000
HL = 7 * DAY
_seq = iter(range(10**9))


def ev(ts: int, type: str = "view", item: str = "i-1", category: str | None = "books", **kw: Any) -> Event:
    return Event(
        event_id=kw.pop("event_id", f"e-{next(_seq)}"),
        user_id="u-1",
        item_id=item,
        type=type,
        ts=ts,
        category=category,
        **kw,
    )


def apply(*events: Event, state: UserProfile | None = None, **kw: Any) -> tuple[UserProfile, list[Outcome]]:
    outs = []
    for e in events:
        state, out = on_event(state, e, gap_ms=GAP, **kw)
        outs.append(out)
    assert state is not None
    return state, outs


# --- first event, sessions, timers ------------------------------------------------------------


def test_first_event_creates_the_profile() -> None:
    s, [out] = apply(ev(T0, "click", dwell_ms=700))
    assert out == Outcome(Status.APPLIED, None, T0 + GAP)
    assert s.user_id == "u-1" and s.seq == 1 and s.total_events == 1
    assert s.type_counts == (0, 1, 0, 0, 0, 0)
    assert s.session is not None and (s.session.start_ts, s.session.last_ts) == (T0, T0)
    assert s.session.categories == {"books": 1} and s.session.dwell_ms == 700
    assert s.interests == {"books": (1.5, T0)}
    assert (s.engagement, s.engagement_ts) == (1.5, T0)
    assert s.recent_items == ("i-1",)
    assert session_timer(s, GAP) == T0 + GAP


def test_an_event_exactly_gap_after_the_last_joins_one_more_splits() -> None:
    s, outs = apply(ev(T0), ev(T0 + GAP))
    assert outs[1].status is Status.APPLIED and outs[1].closed is None
    assert s.session is not None and s.session.event_count == 2
    s2, outs2 = apply(ev(T0 + 2 * GAP + 1, "purchase", item="i-9", category="music", dwell_ms=5), state=s)
    closed = outs2[0].closed
    assert closed == SessionSummary(
        user_id="u-1",
        session_id=f"u-1:{T0}",
        start_ts=T0,
        end_ts=T0 + GAP,
        event_count=2,
        type_counts={"view": 2},
        categories={"books": 2},
        dwell_ms=0,
        converted=False,
        seq=3,
    )
    assert s2.session is not None and s2.session.start_ts == T0 + 2 * GAP + 1 and s2.session.converted
    assert (s2.last_closed_start_ts, s2.last_closed_end_ts, s2.sessions_closed) == (T0, T0 + GAP, 1)
    assert last_session_id(s2) == f"u-1:{T0}"


def test_timer_closes_only_when_due() -> None:
    s, _ = apply(ev(T0), ev(T0 + 1000, "purchase", price=3.0))
    stale, none = on_timer(s, T0 + GAP, GAP)  # registered by the first event, made stale by the second
    assert stale is s and none is None
    closed_state, summary = on_timer(s, T0 + 1000 + GAP, GAP)
    assert summary is not None and summary.converted and summary.event_count == 2
    assert summary.seq == closed_state.seq == s.seq + 1
    assert closed_state.session is None and closed_state.sessions_closed == 1
    assert session_timer(closed_state, GAP) is None
    assert on_timer(closed_state, T0 + 10 * GAP, GAP) == (closed_state, None)
    assert on_timer(None, T0, GAP) == (None, None)


def test_out_of_order_event_within_gap_before_start_moves_the_start() -> None:
    s, outs = apply(ev(T0), ev(T0 - GAP))
    assert outs[1].status is Status.APPLIED
    assert s.session is not None and (s.session.start_ts, s.session.last_ts) == (T0 - GAP, T0)
    assert outs[1].timer_ts == T0 + GAP


# --- late events -------------------------------------------------------------------------------


def test_event_within_gap_of_a_closed_session_is_late() -> None:
    s, _ = apply(ev(T0))
    s, _ = on_timer(s, T0 + GAP, GAP)
    late, [out] = apply(ev(T0 + GAP, "add_to_cart", item="i-late", category="toys"), state=s)
    assert out == Outcome(Status.LATE, None, None)
    assert late.session is None and late.late_events == 1 and late.total_events == 2
    assert late.type_counts[2] == 1 and "toys" in late.interests  # counted
    assert late.recent_items == ("i-1",)  # but not a recent item
    assert late.seq == s.seq + 1


def test_event_after_the_gap_of_a_closed_session_opens_the_next() -> None:
    s, _ = apply(ev(T0))
    s, _ = on_timer(s, T0 + GAP, GAP)
    s2, [out] = apply(ev(T0 + GAP + 1), state=s)
    assert out.status is Status.APPLIED and s2.session is not None and s2.session.start_ts == T0 + GAP + 1


def test_event_long_before_the_open_session_is_late() -> None:
    s, [_, out] = apply(ev(T0), ev(T0 - GAP - 1))
    assert out.status is Status.LATE and out.timer_ts == T0 + GAP
    assert s.session is not None and s.session.event_count == 1 and s.late_events == 1


# --- dedupe ------------------------------------------------------------------------------------


def test_a_redelivered_event_changes_nothing() -> None:
    e = ev(T0)
    s, _ = apply(e)
    again, out = on_event(s, e, gap_ms=GAP)
    assert again is s and out.status is Status.DUPLICATE
    assert is_duplicate(s, e) and not is_duplicate(s, ev(T0)) and not is_duplicate(None, e)


def test_dedupe_window_is_bounded() -> None:
    params = ProfileParams(dedupe_window=3)
    first = ev(T0)
    s, _ = apply(first, ev(T0 + 1), ev(T0 + 2), params=params)
    assert is_duplicate(s, first)
    s, _ = apply(ev(T0 + 3), state=s, params=params)
    assert not is_duplicate(s, first)  # pushed out of the window: a redelivery now counts again
    assert len(s.recent_event_fps) == 3 * 8


# --- interests, engagement, recent items ------------------------------------------------------


def test_interest_decays_with_half_life() -> None:
    s, _ = apply(ev(T0), ev(T0 + HL))
    assert s.interests["books"] == (pytest.approx(1.5), T0 + HL)
    assert decayed(*s.interests["books"], T0 + 2 * HL, HL) == pytest.approx(0.75)


def test_weight_zero_events_touch_no_decayed_value() -> None:
    s, _ = apply(ev(T0))
    s2, _ = apply(ev(T0 + DAY, "remove_from_cart", category="toys"), state=s)
    assert s2.interests == s.interests and s2.engagement == s.engagement
    assert s2.type_counts[3] == 1


def test_events_without_category_only_count_towards_engagement() -> None:
    s, _ = apply(ev(T0, category=None))
    assert s.interests == {} and s.engagement == 1.0
    assert s.session is not None and s.session.categories == {}


def test_custom_weights() -> None:
    params = ProfileParams(
        type_weights={"view": 0.5, "click": 1, "add_to_cart": 2, "remove_from_cart": -1, "purchase": 10, "rate": 1}
    )
    s, _ = apply(ev(T0), ev(T0, "purchase"), params=params)
    assert s.interests["books"][0] == pytest.approx(10.5)


def test_interests_are_bounded_by_dropping_the_weakest() -> None:
    params = ProfileParams(max_categories=2)
    s, _ = apply(
        ev(T0, category="a"), ev(T0, "purchase", category="b"), ev(T0 + 1, "click", category="c"), params=params
    )
    assert set(s.interests) == {"b", "c"}  # a: 1.0 < c: 1.5 < b: 5.0
    assert s.session is not None and set(s.session.categories) == {"a", "b"}  # later new ones not recorded


def test_recent_items_are_distinct_most_recent_last_and_bounded() -> None:
    params = ProfileParams(recent_items=3)
    s, _ = apply(*[ev(T0 + i, item=it) for i, it in enumerate("abcb")], params=params)
    assert s.recent_items == ("a", "c", "b")
    s, _ = apply(ev(T0 + 9, item="d"), ev(T0 + 10, item="d"), state=s, params=params)
    assert s.recent_items == ("c", "b", "d")


def test_top_interests() -> None:
    s, _ = apply(ev(T0, category="a"), ev(T0, "purchase", category="b"), ev(T0, "click", category="c"))
    assert [c for c, _ in top_interests(s, T0 + DAY, 2)] == ["b", "c"]
    assert top_interests(s, T0, 5)[0] == ("b", 5.0)


def test_decay_examples() -> None:
    assert decay_add(0.0, NO_TS, 2.0, T0, HL) == (2.0, T0)
    assert decay_add(4.0, T0, 1.0, T0 + HL, HL) == (3.0, T0 + HL)
    assert decay_add(4.0, T0, 2.0, T0 - HL, HL) == (5.0, T0)  # late: contribution decayed to T0
    assert decayed(3.0, NO_TS, T0, HL) == 0.0
    assert decayed(3.0, T0, T0 - DAY, HL) == 3.0  # never grows backwards


def test_wrongly_keyed_event_is_a_named_error() -> None:
    s, _ = apply(ev(T0))
    with pytest.raises(StateKeyError, match="keyed by user_id"):
        on_event(s, ev(T0)._replace(user_id="u-2"), gap_ms=GAP)


@pytest.mark.parametrize(
    "kw",
    [
        {"interest_half_life_ms": 0},
        {"engagement_half_life_ms": -1},
        {"recent_items": 0},
        {"dedupe_window": 70_000},
        {"type_weights": {"view": 1.0}},
    ],
)
def test_bad_params_are_config_errors(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="ProfileParams"):
        ProfileParams(**kw)


def test_params_are_immutable_copies() -> None:
    weights = dict(DEFAULT_PARAMS.type_weights)
    p = ProfileParams(type_weights=weights)
    weights["view"] = 99.0
    assert p.type_weights["view"] == 1.0


# --- properties --------------------------------------------------------------------------------

deltas = st.integers(-10 * HL, 10 * HL)
weights = st.floats(0.0, 100.0)


@PROPS
@given(st.floats(0, 1e6), st.integers(0, 5 * HL), st.integers(0, 5 * HL))
def test_decay_composes(v: float, a: int, b: int) -> None:
    stepwise = decayed(decayed(v, T0, T0 + a, HL), T0 + a, T0 + a + b, HL)
    assert stepwise == pytest.approx(decayed(v, T0, T0 + a + b, HL), rel=1e-9, abs=1e-300)


@PROPS
@given(st.floats(0, 1e6), st.integers(0, 5 * HL), st.integers(0, 5 * HL), weights)
def test_decay_is_monotone(v: float, a: int, b: int, w: float) -> None:
    assert decayed(v, T0, T0 + a + b, HL) <= decayed(v, T0, T0 + a, HL)
    assert decay_add(v, T0, w, T0 + a, HL)[0] >= decayed(v, T0, T0 + a, HL)


@PROPS
@given(st.lists(st.tuples(weights, deltas), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_decayed_sum_does_not_depend_on_arrival_order(adds: list[tuple[float, int]], rnd: Any) -> None:
    def fold(seq: list[tuple[float, int]]) -> float:
        v, ref = 0.0, NO_TS
        for w, d in seq:
            v, ref = decay_add(v, ref, w, T0 + d, HL)
        return decayed(v, ref, T0 + 11 * HL, HL)

    shuffled = list(adds)
    rnd.shuffle(shuffled)
    assert fold(shuffled) == pytest.approx(fold(adds), rel=1e-9, abs=1e-12)


gaps = st.lists(st.integers(0, 3 * GAP), min_size=1, max_size=30)


@PROPS
@given(gaps, st.booleans())
def test_in_order_events_split_exactly_where_the_gap_is_exceeded(steps: list[int], with_timers: bool) -> None:
    times = [T0]
    for g in steps:
        times.append(times[-1] + g)
    state: UserProfile | None = None
    summaries: list[SessionSummary] = []
    for t in times:
        if with_timers and state is not None:
            # a watermark just below t fires every timer registered before, stale ones included
            for timer in (state.session.last_ts + GAP,) if state.session else ():
                if timer <= t - 1:
                    state, closed = on_timer(state, timer, GAP)
                    summaries += [closed] if closed else []
        state, out = on_event(state, ev(t), gap_ms=GAP)
        assert out.status is Status.APPLIED  # in-order events are never late
        summaries += [out.closed] if out.closed else []
    assert state is not None and state.session is not None
    expected_splits = sum(1 for g in steps if g > GAP)
    assert len(summaries) == expected_splits == state.sessions_closed
    bounds = [(s.start_ts, s.end_ts) for s in summaries] + [(state.session.start_ts, state.session.last_ts)]
    for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False):
        assert start - end > GAP
    assert sum(s.event_count for s in summaries) + state.session.event_count == len(times)
    assert len({s.session_id for s in summaries}) == len(summaries)


@PROPS
@given(st.lists(st.integers(0, 6 * GAP), min_size=1, max_size=20), st.data())
def test_replaying_already_seen_events_changes_nothing(offsets: list[int], data: st.DataObject) -> None:
    events = [
        ev(T0 + o, type=t)
        for o, t in zip(
            offsets,
            data.draw(
                st.lists(
                    st.sampled_from(["view", "click", "purchase", "rate"]), min_size=len(offsets), max_size=len(offsets)
                )
            ),
            strict=True,
        )
    ]
    state, _ = apply(*events)
    blob = user_profile.encode(state)
    replay = data.draw(st.lists(st.sampled_from(events), max_size=15))
    for e in replay:
        again, out = on_event(state, e, gap_ms=GAP)
        assert again is state and out.status is Status.DUPLICATE
    assert user_profile.encode(state) == blob


@PROPS
@given(st.lists(st.tuples(st.integers(-3 * GAP, 6 * GAP), st.booleans()), min_size=1, max_size=25))
def test_counters_add_up_and_closed_sessions_never_reopen(steps: list[tuple[int, bool]]) -> None:
    state: UserProfile | None = None
    in_sessions = timer_closes = 0
    for offset, fire in steps:
        if fire and state is not None and state.session is not None:
            state, closed = on_timer(state, state.session.last_ts + GAP, GAP)
            assert closed is not None
            in_sessions += closed.event_count
            timer_closes += 1
        before = state
        state, out = on_event(state, ev(T0 + offset), gap_ms=GAP)
        if out.closed:
            in_sessions += out.closed.event_count
        if before is not None and T0 + offset <= before.last_closed_end_ts + GAP:
            assert out.status is Status.LATE
    assert state is not None
    open_count = state.session.event_count if state.session else 0
    assert state.total_events == sum(state.type_counts) == len(steps)
    assert in_sessions + open_count + state.late_events == state.total_events
    assert state.seq == state.total_events + timer_closes  # one bump per state update


@FEW
@given(st.lists(st.integers(0, 3 * GAP), min_size=2, max_size=10))
def test_timer_for_the_open_session_is_its_last_event_plus_gap(offsets: list[int]) -> None:
    state, outs = apply(*[ev(T0 + o) for o in sorted(offsets)])
    assume(state.session is not None)
    assert outs[-1].timer_ts == session_timer(state, GAP) == state.session.last_ts + GAP  # type: ignore[union-attr]
    assert all(o.timer_ts is not None for o in outs)
    assert not math.isnan(state.engagement)

"""Purity and determinism of every pure logic function (River `check_learn_one`-style)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from operators.events.logic import validate
from operators.profile.logic import on_event, on_timer
from state_schemas import user_profile
from state_schemas.events import Event
from tests.contracts.strategies import FEW, PROPS, events

GAP = 30 * 60 * 1000
T0 = 1_700_000_000_000
user_events = st.lists(events(user_id="u-1", ts=st.integers(T0, T0 + 6 * GAP)), min_size=1, max_size=25)


@PROPS
@given(user_events, st.integers(T0, T0 + 8 * GAP))
def test_on_event_and_on_timer_leave_their_inputs_untouched_and_are_deterministic(
    evs: list[Event], timer_ts: int
) -> None:
    state = None
    for e in evs:
        before = None if state is None else user_profile.encode(state)
        new, out = on_event(state, e, gap_ms=GAP)
        again = on_event(state, e, gap_ms=GAP)
        assert (new, out) == again
        if state is not None:
            assert user_profile.encode(state) == before  # the input state was not mutated
        assert user_profile.decode(user_profile.encode(new)) == new  # every reachable state encodes
        state = new
    before = user_profile.encode(state)
    closed = on_timer(state, timer_ts, GAP)
    assert closed == on_timer(state, timer_ts, GAP)
    assert user_profile.encode(state) == before


@FEW
@given(st.binary(max_size=200))
def test_validate_is_deterministic(raw: bytes) -> None:
    assert validate(raw, now_ms=T0) == validate(raw, now_ms=T0)

"""Hypothesis strategies for every record and state value of `state_schemas`, shared by the tests.

Import as ``from tests.contracts.strategies import ...`` (the repository root is on sys.path when the
tests run with ``python -m pytest`` from it).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from state_schemas.adjustment import TARGETS, Adjustment
from state_schemas.drift_state import DriftState, FeatureState, Window
from state_schemas.events import EVENT_TYPE_NAMES, Event
from state_schemas.feature_batch import FeatureSamples
from state_schemas.index_entry import IndexEntry
from state_schemas.index_log import IndexLog
from state_schemas.item_cols import ItemCols
from state_schemas.item_vector import ItemVector
from state_schemas.user_profile import FP_BYTES, NO_TS, Session, UserProfile
from state_schemas.user_profile_v1 import N_TYPES

#: Property tests: no deadline (a loaded CI box must not fail them), modest example counts (fast).
PROPS = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])

U64 = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
U32 = 2**32 - 1

# What the event contract allows in ids and free text: no control characters, no lone surrogates.
_CHARS = st.characters(blacklist_categories=("Cs", "Cc"))
text = st.text(_CHARS, min_size=1, max_size=12)
ids = st.one_of(st.from_regex(r"[a-z]{1,3}-[0-9]{1,6}", fullmatch=True), text)
finite = st.floats(allow_nan=False, allow_infinity=False)
ts_ms = st.integers(min_value=946_684_800_000, max_value=2_000_000_000_000)


@st.composite
def events(draw: st.DrawFn, user_id: str | None = None, ts: st.SearchStrategy[int] | None = None) -> Event:
    """Any event the validator can produce (ignored_fields included)."""
    return Event(
        event_id=draw(ids),
        user_id=user_id if user_id is not None else draw(ids),
        item_id=draw(ids),
        type=draw(st.sampled_from(EVENT_TYPE_NAMES)),
        ts=draw(ts if ts is not None else ts_ms),
        category=draw(st.none() | text),
        dwell_ms=draw(st.none() | st.integers(0, 86_400_000)),
        session_hint=draw(st.none() | text),
        price=draw(st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False)),
        ignored_fields=draw(st.integers(0, 0xFFFF)),
    )


def event_json(e: Event) -> bytes:
    """The wire JSON a producer would send for ``e`` (optional fields left out when absent)."""
    d: dict[str, Any] = {k: v for k, v in e._asdict().items() if v is not None and k != "ignored_fields"}
    return json.dumps(d).encode()


counts = st.tuples(*[st.integers(0, U32)] * N_TYPES)
ts_any = st.integers(I64_MIN, I64_MAX)


@st.composite
def sessions(draw: st.DrawFn) -> Session:
    """Any open session the codec must carry."""
    return Session(
        start_ts=draw(ts_any),
        last_ts=draw(ts_any),
        type_counts=draw(counts),
        categories=draw(st.dictionaries(text, st.integers(0, U32), max_size=3)),
        dwell_ms=draw(st.integers(0, U64)),
    )


@st.composite
def profiles(draw: st.DrawFn) -> UserProfile:
    """Any user profile the codec must carry (not only those `on_event` can reach)."""
    dim = draw(st.sampled_from([0, 1, 3]))
    return UserProfile(
        user_id=draw(ids),
        seq=draw(st.integers(0, U64)),
        total_events=draw(st.integers(0, U64)),
        late_events=draw(st.integers(0, U64)),
        sessions_closed=draw(st.integers(0, U64)),
        type_counts=draw(st.tuples(*[st.integers(0, U64)] * N_TYPES)),
        session=draw(st.none() | sessions()),
        last_closed_start_ts=draw(st.just(NO_TS) | ts_any),
        last_closed_end_ts=draw(st.just(NO_TS) | ts_any),
        interests=draw(st.dictionaries(text, st.tuples(finite, ts_any), max_size=4)),
        engagement=draw(finite),
        engagement_ts=draw(ts_any),
        recent_items=tuple(draw(st.lists(ids, unique=True, max_size=5))),
        recent_event_fps=draw(st.binary(max_size=8 * 4).map(lambda b: b[: len(b) - len(b) % FP_BYTES])),
        embedding=draw(st.binary(min_size=4 * dim, max_size=4 * dim)),
        embedding_ts=draw(ts_any),
    )


@st.composite
def item_vectors(draw: st.DrawFn) -> ItemVector:
    """Any item state the codec must carry."""
    dim = draw(st.sampled_from([0, 1, 3]))
    return ItemVector(
        vector=draw(st.binary(min_size=4 * dim, max_size=4 * dim)),
        bias=draw(finite),
        update_count=draw(st.integers(0, U64)),
        seq=draw(st.integers(0, U64)),
        updated_ts=draw(ts_any),
    )


@st.composite
def index_entries(draw: st.DrawFn) -> IndexEntry:
    """Any per-item index state the codec must carry (the bias is stored as float32)."""
    dim = draw(st.sampled_from([0, 1, 3]))
    return IndexEntry(
        vector=draw(st.binary(min_size=4 * dim, max_size=4 * dim)),
        bias=draw(st.floats(allow_nan=False, allow_infinity=False, width=32)),
        vector_seq=draw(st.integers(0, U64)),
        popularity=draw(finite),
        popularity_ts=draw(st.integers(I64_MIN, I64_MAX)),
        count=draw(st.integers(0, U64)),
        weight=draw(finite),
        category=draw(st.one_of(st.just(""), text)),
        ordinal=draw(st.integers(0, U64)),
    )


@st.composite
def index_logs(draw: st.DrawFn) -> IndexLog:
    """Any index-shard log blob content: items and cells over a string table."""
    strings = tuple(draw(st.lists(ids, min_size=1, max_size=6, unique=True)))
    ns, dim = len(strings), draw(st.sampled_from([0, 1, 3]))
    n, c = draw(st.integers(0, 4)), draw(st.integers(0, 5))
    idx = st.integers(0, ns - 1)

    def arr(strategy: st.SearchStrategy[Any], size: int, dtype: str) -> Any:
        return np.array(draw(st.lists(strategy, min_size=size, max_size=size)), dtype=dtype)

    f64 = st.floats(allow_nan=False, width=64)
    return IndexLog(
        strings=strings, item=arr(idx, n, "<i4"), ordinal=arr(st.integers(0, 2**32 - 1), n, "<u4"),
        seq=arr(st.integers(0, U64), n, "<u8"), pop=arr(f64, n, "<f8"), pop_ts=arr(f64, n, "<f8"),
        count=arr(f64, n, "<f8"), weight=arr(f64, n, "<f8"),
        bias=arr(st.floats(allow_nan=False, width=32), n, "<f4"), category=arr(st.integers(-1, ns - 1), n, "<i4"),
        vecs=arr(st.floats(allow_nan=False, width=32), n * dim, "<f4").reshape(n, dim),
        cell_owner=arr(idx, c, "<i4"), cell_partner=arr(idx, c, "<i4"), cell_value=arr(f64, c, "<f8"),
    )


@st.composite
def item_col_sets(draw: st.DrawFn) -> ItemCols:
    """Any columns of item states."""
    n, dim = draw(st.integers(0, 4)), draw(st.sampled_from([0, 1, 3]))

    def arr(strategy: st.SearchStrategy[Any], size: int, dtype: str) -> Any:
        return np.array(draw(st.lists(strategy, min_size=size, max_size=size)), dtype=dtype)

    return ItemCols(
        ids=tuple(draw(st.lists(ids, min_size=n, max_size=n))), seq=arr(st.integers(0, U64), n, "<u8"),
        update_count=arr(st.integers(0, U64), n, "<u8"), updated_ts=arr(st.integers(I64_MIN, I64_MAX), n, "<i8"),
        bias=arr(finite, n, "<f8"), vecs=arr(st.floats(allow_nan=False, width=32), n * dim, "<f4").reshape(n, dim),
    )


def sample_index_log() -> IndexLog:
    """An index log of two items and two cells (fixed)."""
    return IndexLog(
        strings=("item-1", "item-2", "books"), item=np.array([0, 1], "<i4"), ordinal=np.array([0, 1], "<u4"),
        seq=np.array([3, 0], "<u8"), pop=np.array([2.5, 1.0]), pop_ts=np.array([1.764e12, 1.764e12]),
        count=np.array([3.0, 1.0]), weight=np.array([3.0, 1.0]), bias=np.array([0.5, -0.5], "<f4"),
        category=np.array([2, -1], "<i4"), vecs=np.ones((2, 4), "<f4"), cell_owner=np.array([0, 1], "<i4"),
        cell_partner=np.array([1, 0], "<i4"), cell_value=np.array([1.0, 1.0]),
    )


f32s = st.lists(st.floats(width=32), max_size=6).map(lambda xs: struct.pack(f"<{len(xs)}f", *xs))


@st.composite
def feature_batches(draw: st.DrawFn) -> tuple[FeatureSamples, ...]:
    """Any FeatureBatch: features with names, spans and float32 samples (NaN included: compared as bytes)."""
    return tuple(draw(st.lists(st.builds(FeatureSamples, text, ts_any, ts_any, f32s), max_size=4)))


windows = st.builds(Window, st.integers(0, U32), ts_any, ts_any, st.integers(0, U64), f32s)


@st.composite
def drift_states(draw: st.DrawFn) -> DriftState:
    """Any drift monitor state (statistics finite: -1 stands for "no test yet")."""
    return DriftState(tuple(draw(st.lists(
        st.builds(FeatureState, text, windows, windows, st.booleans(), ts_any, st.integers(0, U32), finite,
                  finite),
        max_size=3))))


adjustments = st.builds(Adjustment, st.sampled_from(TARGETS) | text, finite, ts_any, ts_any, st.just("") | text)


def typical_profile() -> UserProfile:
    """A profile of the size the job keeps for an active user (fixed, for example-based tests)."""
    return UserProfile(
        user_id="user-42",
        seq=311,
        total_events=310,
        late_events=2,
        sessions_closed=17,
        type_counts=(200, 80, 12, 3, 5, 10),
        session=Session(1_764_000_000_000, 1_764_000_600_000, (3, 1, 1, 0, 0, 0), {"books": 4, "music": 1}, 9_000),
        last_closed_start_ts=1_763_990_000_000,
        last_closed_end_ts=1_763_991_000_000,
        interests={f"genre-{i}": (1.5 * i + 0.25, 1_764_000_000_000 - i * 3_600_000) for i in range(12)},
        engagement=42.5,
        engagement_ts=1_764_000_600_000,
        recent_items=tuple(f"item-{i}" for i in range(20)),
        recent_event_fps=bytes(range(256)) * 2,
        embedding=bytes(range(256)),
        embedding_ts=1_764_000_600_000,
    )


#: A fixed example per codec name (cheap, for the checks that need one value, not many).
SAMPLES: dict[str, Any] = {
    "event": Event("evt-1", "user-42", "item-7", "purchase", 1_764_000_000_000, "books", 1200, "s-9", 9.99, 2),
    "user_profile": typical_profile(),
    "item_vector": ItemVector(bytes(range(256)), 0.5, 12, 13, 1_764_000_000_000),
    "index_entry": IndexEntry(bytes(range(256)), 0.5, 13, 3.25, 1_764_000_000_000, 4, 6.5, "books", 12),
    "seen_items": tuple(f"item-{i}" for i in range(50)),
    "cooc_log": [(f"item-{i}", f"item-{i + 1}", 1.5 * i) for i in range(20)],
    "index_log": sample_index_log(),
    "item_log": ItemCols(("item-1", "item-2"), np.array([3, 1], "<u8"), np.array([9, 2], "<u8"),
                         np.array([1_764_000_000_000, -(2**63)], "<i8"), np.array([0.5, -0.25]),
                         np.ones((2, 4), "<f4")),
    "feature_batch": (FeatureSamples("event_type", 1_764_000_000_000, 1_764_000_000_090, struct.pack("<3f", 0, 0, 4)),
                      FeatureSamples("dwell_ms", 1_764_000_000_010, 1_764_000_000_050, struct.pack("<f", 1200))),
    "drift_state": DriftState((FeatureState("category", Window(1, 1_764_000_000_000, 1_764_000_600_000, 9000,
                                                               struct.pack("<4f", 0.1, 0.5, 0.5, -1)),
                                            Window(3, 1_764_000_600_001, 1_764_000_700_000, 2,
                                                   struct.pack("<2f", 0.1, 0.9)),
                                            True, 1_763_990_000_000, 1, 0.42, 1e-12),)),
    "adjustment": Adjustment("popularity_weight", 2.0, 1_764_000_000_000, 1_764_000_900_000, "category"),
}

#: One strategy per codec name of `state_schemas.registry.CODECS`; a contract test fails when a codec
#: is registered without one.
EXAMPLES: dict[str, st.SearchStrategy[Any]] = {
    "event": events(),
    "user_profile": profiles(),
    "item_vector": item_vectors(),
    "index_entry": index_entries(),
    "seen_items": st.lists(ids, max_size=20).map(tuple),
    "cooc_log": st.lists(st.tuples(ids, ids, st.floats(allow_nan=False)), max_size=20),
    "index_log": index_logs(),
    "item_log": item_col_sets(),
    "feature_batch": feature_batches(),
    "drift_state": drift_states(),
    "adjustment": adjustments,
}

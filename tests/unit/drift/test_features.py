"""The drift features of a batch: what each sample is, the spans, and the KS bound for coded features."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from operators.drift import features as F
from state_schemas import feature_batch
from state_schemas.events import EVENT_TYPE_CODES
from tests.contracts.strategies import PROPS

T = 1_764_000_000_000


def by_name(fb: feature_batch.FeatureBatch) -> dict[str, feature_batch.FeatureSamples]:
    return {f.name: f for f in fb}


def test_user_features_per_event_per_user_and_per_session() -> None:
    fb = F.user_features(
        types=[EVENT_TYPE_CODES["view"], EVENT_TYPE_CODES["purchase"], EVENT_TYPE_CODES["click"]],
        ts=[T + 30, T + 10, T + 20],
        dwell_ms=[None, 1500, 250],
        categories=["books", None, "books"],
        norms=[0.5, 2.0],
        sessions=[(3, T - 60_000, T - 1_000), (1, T - 5_000, T - 5_000)],
    )
    got = by_name(fb)
    assert list(got) == ["event_type", "dwell_ms", "category", "session_events", "session_ms", "user_norm"]
    assert got["event_type"].values().tolist() == [0, 4, 1]
    assert (got["event_type"].start_ts, got["event_type"].end_ts) == (T + 10, T + 30)
    # dwell: only the events that have one, and the span of those events
    assert got["dwell_ms"].values().tolist() == [1500, 250]
    assert (got["dwell_ms"].start_ts, got["dwell_ms"].end_ts) == (T + 10, T + 20)
    books = F.category_code("books")
    assert got["category"].values().tolist() == pytest.approx([books, -1.0, books])
    assert got["session_events"].values().tolist() == [3, 1]
    assert got["session_ms"].values().tolist() == [59_000, 0]
    assert (got["session_ms"].start_ts, got["session_ms"].end_ts) == (T - 5_000, T - 1_000)  # sessions' last events
    assert got["user_norm"].values().tolist() == [0.5, 2.0]
    assert (got["user_norm"].start_ts, got["user_norm"].end_ts) == (T + 10, T + 30)


def test_a_batch_without_events_sends_only_its_closed_sessions() -> None:
    fb = F.user_features(types=[], ts=[], dwell_ms=[], categories=[], sessions=[(2, T, T + 5)])
    assert [f.name for f in fb] == ["session_events", "session_ms"]
    assert F.user_features(types=[], ts=[], dwell_ms=[], categories=[]) == ()


def test_parallel_lists_of_other_lengths_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="types, ts, dwell_ms and categories"):
        F.user_features(types=[0, 1], ts=[T], dwell_ms=[None, None], categories=[None, None])


def test_the_batch_round_trips_through_its_codec() -> None:
    fb = F.user_features(types=np.array([0, 1, 2]), ts=np.array([T, T + 1, T + 2]), dwell_ms=[1, 2, 3],
                         categories=["a", "b", "c"], norms=np.array([1.0, np.nan, 3.0]))
    assert feature_batch.decode(feature_batch.encode(fb)) == fb
    assert by_name(fb)["user_norm"].values().tolist() == [1.0, 3.0], "a NaN norm is not a sample"


def test_served_scores_and_the_buffer() -> None:
    fb = F.served_features([T + 5, T + 1, T + 9], [[1.5, 0.5], [], [0.25, float("inf")]])
    (f,) = fb
    assert (f.name, f.start_ts, f.end_ts) == ("served_score", T + 5, T + 9), "an empty answer adds no time"
    assert f.values().tolist() == [1.5, 0.5, 0.25]
    buf = F.ScoreBuffer(min_samples=4)
    buf.add(T, [1.0, 2.0])
    buf.add(T + 1, [3.0])
    assert buf.take() == () and len(buf) == 3
    assert buf.take(force=True)[0].size == 3 and len(buf) == 0
    with pytest.raises(ValueError, match="one ts per answer"):
        F.served_features([T], [[1.0], [2.0]])


def test_category_codes_are_stable_and_in_range() -> None:
    import zlib

    assert F.category_code("garden") == zlib.crc32(b"garden") / 2**32
    assert F.category_code(None) == -1.0


@PROPS
@given(
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(1, 50), min_size=2, max_size=6),
    st.data(),
)
def test_ks_on_category_codes_sees_half_of_any_share_change(counts_a: dict[str, int], data: st.DataObject) -> None:
    """The bound the features docstring relies on: D >= max |share change| / 2, whatever the hash order."""
    counts_b = {c: data.draw(st.integers(0, 50)) for c in counts_a}
    if sum(counts_b.values()) == 0:
        return
    a = np.repeat([F.category_code(c) for c in counts_a], list(counts_a.values()))
    b = np.repeat([F.category_code(c) for c in counts_b], list(counts_b.values()))
    share_a = {c: n / a.size for c, n in counts_a.items()}
    share_b = {c: n / b.size for c, n in counts_b.items()}
    biggest = max(abs(share_a[c] - share_b[c]) for c in counts_a)
    tv = sum(abs(share_a[c] - share_b[c]) for c in counts_a) / 2
    d = float(ks_2samp(a, b).statistic)
    assert biggest / 2 - 1e-9 <= d <= tv + 1e-9

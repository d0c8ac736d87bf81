"""Incremental item-item co-occurrence, sparse (shardable) and dense forms."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.learner.cooc import (
    CoOccurrence,
    CoocParams,
    DenseCoOccurrence,
    apply_pairs,
    pair_messages,
    partners,
)
from pipeline.errors import ConfigError


def _feed(model: CoOccurrence | DenseCoOccurrence, stream: list[tuple[int, int]], keep: int) -> dict[int, list[int]]:
    recent: dict[int, list[int]] = {}
    for user, item in stream:
        r = recent.setdefault(user, [])
        model.update(r, item)
        r.append(item)
        del r[:-keep]
    return recent


def test_counts_and_symmetry() -> None:
    c = CoOccurrence(CoocParams(window=10, score_window=10, recency=1.0, alpha=0.0))
    _feed(c, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)], keep=10)
    assert c.row(1) == {2: 1.0, 3: 1.0}
    assert c.row(2) == {1: 1.0, 3: 2.0}
    assert c.row(3) == {1: 1.0, 2: 2.0}
    assert c.count(3) == 2.0
    assert c.scores([2]) == {1: 1.0, 3: 2.0}


def test_window_limits_partners_and_dedupes() -> None:
    assert partners([1, 2, 3, 2, 9], 9, window=3) == [3, 2]
    assert partners([4, 5, 6], 7, window=2) == [5, 6]
    msgs = pair_messages([1, 2], 3, window=5, weight=2.0)
    assert sorted(msgs) == [(1, 3, 2.0), (2, 3, 2.0), (3, 1, 2.0), (3, 2, 2.0)]


def test_apply_pairs_is_pure() -> None:
    row = {1: 1.0}
    out = apply_pairs(row, [(1, 1.0), (2, 0.5)])
    assert out == {1: 2.0, 2: 0.5}
    assert row == {1: 1.0}


def test_recency_and_alpha() -> None:
    c = CoOccurrence(CoocParams(window=5, score_window=2, recency=0.5, alpha=1.0))
    _feed(c, [(0, 1), (0, 3), (1, 2), (1, 3), (2, 3)], keep=5)
    # rows: 1:{3:1}, 2:{3:1}, 3:{1:1,2:1}; count(3)=3; scoring [1, 2] weights 0.5, 1.0
    assert c.scores([1, 2]) == {3: pytest.approx((0.5 + 1.0) / 3.0)}


streams = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 15)), max_size=60)
cooc_params = st.builds(
    CoocParams,
    window=st.integers(1, 6),
    score_window=st.integers(1, 6),
    recency=st.sampled_from([1.0, 0.7]),
    alpha=st.sampled_from([0.0, 0.5]),
)


@settings(max_examples=60, deadline=None)
@given(stream=streams, params=cooc_params)
def test_sparse_and_dense_agree_and_stay_symmetric(stream: list[tuple[int, int]], params: CoocParams) -> None:
    sparse, dense = CoOccurrence(params), DenseCoOccurrence(params, capacity=4)
    keep = max(params.window, params.score_window)
    recent = _feed(sparse, stream, keep)
    _feed(dense, stream, keep)
    for i in range(16):
        assert sparse.row(i) == pytest.approx(dense.row(i))
        for j, c in sparse.row(i).items():
            assert sparse.row(j)[i] == c
            assert i != j
    for r in recent.values():
        s = sparse.scores(r)
        d = dense.scores(r, 16)
        assert d.tolist() == pytest.approx([s.get(i, 0.0) for i in range(16)])


@pytest.mark.parametrize("bad", [{"window": 0}, {"score_window": 0}, {"recency": 0.0}, {"alpha": 2.0}])
def test_bad_params_raise(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="CoocParams"):
        CoocParams(**bad)

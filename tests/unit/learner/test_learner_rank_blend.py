"""Top-k with a seen set, z-scores and the blend."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import operators.learner.blend as blend_mod
import operators.learner.rank as rank_mod
from operators.learner.blend import Blend, zscore
from operators.learner.rank import top_k
from pipeline.errors import ConfigError


def test_doctests_pass() -> None:
    assert doctest.testmod(rank_mod).failed == 0
    assert doctest.testmod(blend_mod).failed == 0


def test_top_k_excludes_seen_and_orders_best_first() -> None:
    s = np.array([5.0, 1.0, 9.0, 7.0, 3.0])
    assert top_k(s, 3).tolist() == [2, 3, 0]
    assert top_k(s, 3, exclude=[2, 0]).tolist() == [3, 4, 1]
    assert top_k(s, 10, exclude=[0, 1, 2, 3, 4]).tolist() == []
    assert top_k([1.0, np.nan, -np.inf, 0.5], 4).tolist() == [0, 3]


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.integers(-3, 3).map(float), max_size=40),
    k=st.integers(0, 12),
    data=st.data(),
)
def test_top_k_matches_a_full_sort(scores: list[float], k: int, data: st.DataObject) -> None:
    exclude = data.draw(st.lists(st.integers(0, max(len(scores) - 1, 0)), max_size=10)) if scores else []
    got = top_k(scores, k, exclude=exclude)
    kept = [i for i in range(len(scores)) if i not in set(exclude)]
    expected = sorted(kept, key=lambda i: (-scores[i], i))[:k]
    assert got.tolist() == expected


def test_zscore() -> None:
    z = zscore([1.0, 2.0, 3.0, 4.0])
    assert z.mean() == pytest.approx(0.0)
    assert z.std() == pytest.approx(1.0)
    assert zscore([2.0, 2.0]).tolist() == [0.0, 0.0]
    assert zscore([]).size == 0


def test_blend_is_scale_free_per_component() -> None:
    b = Blend({"x": 1.0, "y": 2.0})
    x, y = np.array([0.0, 1.0, 5.0]), np.array([3.0, 1.0, 2.0])
    a = b.score({"x": x, "y": y})
    assert a.tolist() == pytest.approx(b.score({"x": 1000 * x - 7, "y": 0.01 * y}).tolist())
    assert a.tolist() == pytest.approx((zscore(x) + 2 * zscore(y)).tolist())


def test_blend_errors() -> None:
    b = Blend({"x": 1.0, "y": 1.0})
    assert b.score({"x": [1.0, 2.0]}).tolist() == pytest.approx([-1.0, 1.0])  # missing component = 0
    with pytest.raises(ConfigError, match="no weight"):
        b.score({"z": [1.0]})
    with pytest.raises(ConfigError, match="differ in length"):
        b.score({"x": [1.0], "y": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="finite"):
        Blend({"x": float("nan")})

"""Item-side learning (`operators.items.logic`): initial state, one gradient, bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from operators.items.logic import apply, initial_item
from operators.learner.bpr import BPRParams, bpr_user_step
from state_schemas.codec import NO_TS
from state_schemas.item_vector import ItemVector
from state_schemas.messages import ItemUpdate
from tests.contracts.strategies import FEW, PROPS

DIM = 8
P = BPRParams(dim=DIM)
SEED = 7
I64 = st.integers(-(2**63), 2**63 - 1)
F32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
ids = st.text(min_size=1, max_size=20)


def upd(vec: np.ndarray, *, ts: int = 1, weight: float = 1.0, bias: float = 0.0, item: str = "i-1") -> ItemUpdate:
    return ItemUpdate(item, ts, weight, np.asarray(vec, dtype=np.float32), bias)


def _norm(v: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(v, dtype=np.float64)))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


# --- initial_item -----------------------------------------------------------------------------------


@FEW
@given(ids, st.integers(0, 2**63 - 1))
def test_initial_item_is_deterministic_in_seed_and_item(item_id: str, seed: int) -> None:
    a = initial_item(P, item_id, seed)
    assert a == initial_item(P, item_id, seed)
    assert a.dim == DIM and a.bias == 0.0
    assert (a.seq, a.update_count, a.updated_ts) == (0, 0, NO_TS)


@PROPS
@given(ids, ids)
def test_initial_item_differs_across_items(a: str, b: str) -> None:
    if a == b:
        return
    assert initial_item(P, a, SEED).vector != initial_item(P, b, SEED).vector


def test_initial_item_differs_across_seeds_and_is_small() -> None:
    a, b = initial_item(P, "i-1", 1), initial_item(P, "i-1", 2)
    assert a.vector != b.vector
    assert 0 < _norm(a.as_array()) < P.max_norm


def test_initial_item_is_not_the_initial_user_of_the_same_id() -> None:
    # users and items draw from separate namespaces: user "7" and item "7" must not share a vector
    from operators.profile.embedding import initial_user

    assert initial_item(P, "7", SEED).as_array().tolist() != initial_user(P, "7", SEED).tolist()


# --- apply: bookkeeping -----------------------------------------------------------------------------


def test_first_update_starts_from_the_initial_item() -> None:
    zero = upd(np.zeros(DIM), ts=5)
    p0 = BPRParams(dim=DIM, reg=0.0)
    s = apply(p0, None, zero, SEED)
    # a zero gradient without regularisation leaves the initial vector as it was
    assert s.vector == initial_item(p0, "i-1", SEED).vector
    assert (s.seq, s.update_count, s.updated_ts) == (1, 1, 5)
    assert apply(p0, None, zero, SEED) == s


def test_apply_matches_the_docstring_example() -> None:
    s = apply(BPRParams(dim=4), None, ItemUpdate("i1", 5, 1.0, np.ones(4, np.float32), 1.0), seed=1)
    assert (s.seq, s.update_count, s.updated_ts) == (1, 1, 5)


@PROPS
@given(st.lists(I64, min_size=1, max_size=12))
def test_seq_and_count_grow_by_one_and_updated_ts_is_the_max(ts_list: list[int]) -> None:
    state: ItemVector | None = None
    for n, ts in enumerate(ts_list, start=1):
        state = apply(P, state, upd(np.full(DIM, 0.1), ts=ts), SEED)
        assert (state.seq, state.update_count) == (n, n)
        assert state.updated_ts == max(ts_list[:n])


def test_seq_continues_from_restored_state() -> None:
    cur = ItemVector.from_array(np.zeros(DIM), seq=41, update_count=40, updated_ts=1_000)
    s = apply(P, cur, upd(np.ones(DIM), ts=900), SEED)
    assert (s.seq, s.update_count, s.updated_ts) == (42, 41, 1_000)


def test_apply_does_not_mutate_its_inputs() -> None:
    cur = initial_item(P, "i-1", SEED)
    grad = np.ones(DIM, np.float32)
    u = upd(grad)
    before = (cur, grad.copy())
    apply(P, cur, u, SEED)
    assert cur == before[0] and np.array_equal(grad, before[1])


# --- apply: learning --------------------------------------------------------------------------------


@st.composite
def inside(draw: st.DrawFn, max_norm: float, min_norm: float = 0.1) -> np.ndarray:
    """A float32 vector of norm in [min_norm, max_norm]."""
    v = draw(arrays(np.float64, DIM, elements=st.floats(-1, 1)))
    n = np.linalg.norm(v)
    if n < 1e-3:
        v = np.ones(DIM)
        n = np.linalg.norm(v)
    return (v / n * draw(st.floats(min_norm, max_norm))).astype(np.float32)


def _expected_gain(p: BPRParams, u: np.ndarray, c: float) -> float:
    """u·(v' - v) for v' = v + lr * project(c * u, grad_clip), no reg, no norm clip."""
    n = _norm(u)
    return p.lr * min(abs(c) * n, p.grad_clip) * n


@PROPS
@given(inside(2.0), inside(1.5, min_norm=0.5), st.floats(0.1, 5.0), st.floats(0.1, 5.0))
def test_positive_gradient_raises_the_score_without_regularisation(v, u, g, weight) -> None:
    # Without reg and away from the norm bound: u·v' - u·v = lr * |clip(w * g * u)| * |u| > 0.
    p = BPRParams(dim=DIM, reg=0.0)
    new = apply(p, ItemVector.from_array(v), upd(g * u, weight=weight), SEED).as_array()
    gain = float(u.astype(np.float64) @ new) - float(u.astype(np.float64) @ v)
    expected = _expected_gain(p, u, g * weight)
    assert gain > 0
    assert abs(gain - expected) <= 1e-3 * expected + 1e-5


@PROPS
@given(inside(P.max_norm), inside(P.max_norm), st.floats(0.01, 5.0), st.floats(0.1, 5.0))
def test_positive_gradient_turns_the_item_toward_the_user(v, u, g, weight) -> None:
    # With the default reg (a uniform shrink) and norm clipping (a rescale), the direction still moves toward u.
    new = apply(P, ItemVector.from_array(v), upd(g * u, weight=weight), SEED).as_array()
    assert _cos(new, u) >= _cos(v, u) - 1e-6


@PROPS
@given(inside(2.0), inside(1.5, min_norm=0.5), st.floats(0.1, 5.0))
def test_negative_gradient_lowers_the_score(v, u, g) -> None:
    p = BPRParams(dim=DIM, reg=0.0)
    new = apply(p, ItemVector.from_array(v), upd(-g * u), SEED).as_array()
    loss = float(u.astype(np.float64) @ v) - float(u.astype(np.float64) @ new)
    assert loss > 0.5 * _expected_gain(p, u, g)


def test_positive_bias_gradient_raises_the_bias() -> None:
    cur = ItemVector.from_array(np.zeros(DIM), bias=0.0)
    assert apply(P, cur, upd(np.zeros(DIM), bias=0.5), SEED).bias > 0
    assert apply(P, cur, upd(np.zeros(DIM), bias=-0.5), SEED).bias < 0


def test_weight_zero_only_regularises() -> None:
    cur = ItemVector.from_array(np.ones(DIM), bias=1.0)
    s = apply(P, cur, upd(np.full(DIM, 3.0), weight=0.0, bias=3.0), SEED)
    np.testing.assert_allclose(s.as_array(), np.ones(DIM) * (1 - P.lr * P.reg), rtol=1e-6)
    assert s.bias == 1.0 - P.lr * P.reg * 1.0


def test_a_real_user_step_raises_the_positive_item_score() -> None:
    # the gradient the user stage really sends for the positive item, applied by the item stage
    rng = np.random.default_rng(0)
    u = (rng.standard_normal(DIM) * 0.3).astype(np.float32)
    vi, vj = initial_item(P, "pos", SEED), initial_item(P, "neg", SEED)
    _, grads = bpr_user_step(P, u, vi.as_array(), vi.bias, vj.as_array()[None, :], np.float32([vj.bias]))
    pos = apply(P, vi, ItemUpdate("pos", 1, 1.0, grads.pos.vec, grads.pos.bias), SEED)
    neg = apply(P, vj, ItemUpdate("neg", 1, 1.0, grads.neg[0].vec, grads.neg[0].bias), SEED)
    score = lambda s: float(u @ s.as_array()) + s.bias  # noqa: E731
    assert score(pos) > score(vi)
    assert score(neg) < score(vj)


# --- apply: bounds ----------------------------------------------------------------------------------


@PROPS
@given(
    st.integers(1, 32).flatmap(
        lambda d: st.tuples(
            st.just(d),
            arrays(np.float32, d, elements=F32),
            arrays(np.float32, d, elements=F32),
        )
    ),
    F32,
    F32,
    F32.map(abs),
)
def test_norm_and_bias_stay_bounded_for_any_finite_input(dvg, bias, bias_grad, weight) -> None:
    dim, vec, grad = dvg
    p = BPRParams(dim=dim)
    cur = ItemVector.from_array(vec, bias=float(bias))
    s = apply(p, cur, ItemUpdate("i", 1, float(weight), grad, float(bias_grad)), SEED)
    out = s.as_array()
    assert np.all(np.isfinite(out)) and np.isfinite(s.bias)
    assert _norm(out) <= p.max_norm
    assert abs(s.bias) <= p.max_bias


@FEW
@given(inside(1.0, min_norm=0.5), st.lists(st.floats(0.5, 5.0), min_size=40, max_size=60))
def test_norm_stays_bounded_when_pushed_the_same_way_again_and_again(direction, weights) -> None:
    # each step adds up to lr * grad_clip = 0.4 along one direction: unclipped, the norm would pass 4
    state: ItemVector | None = None
    for weight in weights:
        state = apply(P, state, upd(10 * direction, weight=weight), SEED)
        assert _norm(state.as_array()) <= P.max_norm
    assert _norm(state.as_array()) > 0.9 * P.max_norm  # it did reach the bound

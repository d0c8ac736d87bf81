"""Online BPR: the pure user step and item update."""

from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import operators.learner.bpr as bpr_mod
from operators.learner.bpr import (
    BPRParams,
    ItemGrad,
    apply_item_update,
    apply_item_updates,
    bpr_loss,
    bpr_user_step,
    clip_norm,
    init_vector,
    key_rng,
    sample_negatives,
)
from pipeline.errors import ConfigError, SchemaError

DIM = 8
finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


def _pair(seed: int, n_neg: int = 3):
    rng = np.random.default_rng(seed)
    vec = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.3  # noqa: E731
    return vec(DIM), vec(DIM), float(rng.normal()), vec(n_neg, DIM), rng.normal(size=n_neg).astype(np.float32)


def _full_step(p: BPRParams, u, vi, bi, vj, bj, w: float = 1.0):
    new_u, g = bpr_user_step(p, u, vi, bi, vj, bj, w)
    new_vi, new_bi = apply_item_update(p, vi, bi, g.pos, w)
    upd = [apply_item_update(p, vj[n], float(bj[n]), g.neg[n], w) for n in range(len(g.neg))]
    return new_u, new_vi, new_bi, np.stack([v for v, _ in upd]), np.float32([b for _, b in upd])


def test_doctests_pass() -> None:
    assert doctest.testmod(bpr_mod).failed == 0


@pytest.mark.parametrize("seed", range(20))
def test_small_step_reduces_the_pair_loss(seed: int) -> None:
    p = BPRParams(dim=DIM, lr=0.01, reg=0.0)
    u, vi, bi, vj, bj = _pair(seed)
    before = bpr_loss(u, vi, bi, vj, bj)
    after = bpr_loss(*_full_step(p, u, vi, bi, vj, bj))
    assert after < before


def test_heavier_event_moves_further() -> None:
    p = BPRParams(dim=DIM, lr=0.01, reg=0.0)
    u, vi, bi, vj, bj = _pair(3)
    light, _ = bpr_user_step(p, u, vi, bi, vj, bj, p.weight_for("view"))
    heavy, _ = bpr_user_step(p, u, vi, bi, vj, bj, p.weight_for("purchase"))
    assert np.linalg.norm(heavy - u) > np.linalg.norm(light - u)


def test_step_is_pure() -> None:
    p = BPRParams(dim=DIM)
    args = _pair(1)
    copies = [np.copy(a) for a in args]
    _full_step(p, *args)
    for a, c in zip(args, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_item_grads_route_one_message_per_item() -> None:
    p = BPRParams(dim=DIM)
    u, vi, bi, vj, bj = _pair(2, n_neg=3)
    _, g = bpr_user_step(p, u, vi, bi, vj, bj)
    msgs = g.per_item(5, [7, 9, 7])
    assert [item for item, _ in msgs] == [5, 7, 9, 7]
    assert g.pos.bias == pytest.approx(-sum(x.bias for x in g.neg))


def test_clip_norm_bounds_and_keeps_direction() -> None:
    v = np.float32([3.0, 4.0])
    out = clip_norm(v, 1.0)
    assert np.linalg.norm(out) <= 1.0
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-5)
    np.testing.assert_array_equal(clip_norm(np.float32([0.3, 0.4]), 1.0), np.float32([0.3, 0.4]))


@settings(max_examples=150, deadline=None)
@given(
    u=arrays(np.float32, DIM, elements=finite32),
    vi=arrays(np.float32, DIM, elements=finite32),
    vj=arrays(np.float32, (3, DIM), elements=finite32),
    biases=arrays(np.float32, 4, elements=finite32),
    weight=st.floats(0.0, 100.0),
    p=st.builds(
        BPRParams,
        dim=st.just(DIM),
        lr=st.floats(1e-4, 1.0),
        reg=st.floats(0.0, 1.0),
        max_norm=st.floats(0.1, 10.0),
        grad_clip=st.floats(0.1, 10.0),
    ),
)
def test_norms_stay_within_clip_for_any_finite_input(u, vi, vj, biases, weight, p) -> None:
    new_u, new_vi, new_bi, new_vj, new_bj = _full_step(p, u, vi, float(biases[0]), vj, biases[1:], weight)
    for v in (new_u, new_vi, *new_vj):
        assert v.dtype == np.float32
        assert np.all(np.isfinite(v))
        assert float(np.linalg.norm(v.astype(np.float64))) <= p.max_norm
    assert all(abs(b) <= p.max_bias for b in (new_bi, *new_bj.tolist()))


@settings(max_examples=100, deadline=None)
@given(
    u=arrays(np.float32, DIM, elements=st.floats(-1, 1, width=32)),
    vi=arrays(np.float32, DIM, elements=st.floats(-1, 1, width=32)),
    vj=arrays(np.float32, (2, DIM), elements=st.floats(-1, 1, width=32)),
)
def test_item_gradients_are_bounded_by_user_norm(u, vi, vj) -> None:
    p = BPRParams(dim=DIM, max_norm=2.0)
    _, g = bpr_user_step(p, u, vi, 0.0, vj, np.zeros(2, np.float32))
    bound = 2 * min(float(np.linalg.norm(u)), p.max_norm) + 1e-5  # sum of 2 sigmoids <= 2
    assert float(np.linalg.norm(g.pos.vec)) <= bound
    assert all(0.0 <= g.pos.bias <= 2.0 and -1.0 <= x.bias <= 0.0 for x in g.neg)


def test_same_seed_same_vectors_and_negatives() -> None:
    p = BPRParams(dim=DIM)
    np.testing.assert_array_equal(init_vector(p, key_rng(7, "user", 42)), init_vector(p, key_rng(7, "user", 42)))
    assert not np.array_equal(init_vector(p, key_rng(7, "user", 42)), init_vector(p, key_rng(8, "user", 42)))
    assert not np.array_equal(init_vector(p, key_rng(7, "user", 42)), init_vector(p, key_rng(7, "item", 42)))
    a = sample_negatives(np.random.default_rng(3), 100, 50, exclude=5)
    b = sample_negatives(np.random.default_rng(3), 100, 50, exclude=5)
    np.testing.assert_array_equal(a, b)


@settings(max_examples=100, deadline=None)
@given(n_known=st.integers(0, 50), n=st.integers(0, 40), exclude=st.integers(-1, 60), seed=st.integers(0, 2**32))
def test_negatives_are_known_and_never_the_positive(n_known: int, n: int, exclude: int, seed: int) -> None:
    neg = sample_negatives(np.random.default_rng(seed), n_known, n, exclude=exclude)
    assert np.all((neg >= 0) & (neg < n_known))
    assert exclude not in neg.tolist()
    pool = n_known - (1 if 0 <= exclude < n_known else 0)
    assert neg.size == (n if pool > 0 else 0)


def test_event_weights_are_data_and_unknown_types_fail_loudly() -> None:
    p = BPRParams(event_weights={"view": 1.0, "like": 2.0})
    assert p.weight_for("like") == 2.0
    with pytest.raises(SchemaError, match="unknown event type 'purchase'"):
        p.weight_for("purchase")
    with pytest.raises(TypeError):
        p.event_weights["view"] = 9.0  # type: ignore[index]


@pytest.mark.parametrize("bad", [{"dim": 0}, {"lr": -0.1}, {"reg": -1.0}, {"max_norm": 0.0}])
def test_bad_params_raise_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="BPRParams"):
        BPRParams(**bad)


def test_params_pickle_round_trip() -> None:
    # PyFlink pickles functions together with their params to ship them to the Python workers.
    p = BPRParams(event_weights={"view": 1.0, "purchase": 5.0})
    q = pickle.loads(pickle.dumps(p))
    assert q == p
    assert hash(q) == hash(p)
    assert q.weight_for("purchase") == 5.0


@settings(max_examples=100, deadline=None)
@given(
    vecs=arrays(np.float32, (4, DIM), elements=finite32),
    biases=arrays(np.float32, 4, elements=finite32),
    grads=arrays(np.float32, (4, DIM), elements=st.floats(-1e6, 1e6, width=32)),
    gbias=arrays(np.float32, 4, elements=st.floats(-10, 10, width=32)),
    weight=st.floats(0.0, 10.0),
)
def test_batched_item_update_matches_one_at_a_time(vecs, biases, grads, gbias, weight) -> None:
    p = BPRParams(dim=DIM)
    bv, bb = apply_item_updates(p, vecs, biases, grads, gbias, weight)
    for n in range(4):
        v, b = apply_item_update(p, vecs[n], float(biases[n]), ItemGrad(grads[n], float(gbias[n])), weight)
        np.testing.assert_allclose(bv[n], v, rtol=1e-5, atol=1e-6)
        assert float(bb[n]) == pytest.approx(b, rel=1e-5, abs=1e-6)
        assert float(np.linalg.norm(bv[n].astype(np.float64))) <= p.max_norm


def test_one_event_weight_table() -> None:
    # The learner and the profile stage weigh events with the event contract's table, not a copy of it.
    from operators.profile.logic import ProfileParams
    from state_schemas.events import EVENT_TYPE_WEIGHTS

    assert dict(BPRParams().event_weights) == dict(EVENT_TYPE_WEIGHTS) == dict(ProfileParams().type_weights)
    for name, w in EVENT_TYPE_WEIGHTS.items():
        assert BPRParams().weight_for(name) == w

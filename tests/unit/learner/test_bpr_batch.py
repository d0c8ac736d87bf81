"""Batched user-side BPR step: row-for-row equal to the per-event step, gradients summed per item."""

from __future__ import annotations

import doctest
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import operators.learner.bpr_batch as batch_mod
from operators.learner.bpr import BPRParams, apply_item_updates, bpr_user_step
from operators.learner.bpr_batch import CoalescedGrads, apply_coalesced, bpr_batch_user_step, coalesce, rounds

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
params_st = st.builds(
    BPRParams,
    dim=st.just(1),  # replaced per test with the drawn dimension
    lr=st.floats(1e-3, 1.0),
    reg=st.floats(0.0, 0.5),
    max_norm=st.floats(0.1, 10.0),
    max_bias=st.floats(0.1, 10.0),
    grad_clip=st.floats(0.1, 10.0),
)


def _with_dim(p: BPRParams, d: int) -> BPRParams:
    return BPRParams(dim=d, lr=p.lr, reg=p.reg, max_norm=p.max_norm, max_bias=p.max_bias, grad_clip=p.grad_clip)


def _batch(seed: int, n: int, k: int, d: int, m: int, scale: float = 1.0, weights: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    users = (rng.standard_normal((n, d)) * scale).astype(np.float32)
    vecs = (rng.standard_normal((m, d)) * scale).astype(np.float32)
    biases = (rng.standard_normal(m) * 3 * scale).astype(np.float32)
    pos = rng.integers(0, m, n)
    negs = rng.integers(0, m, (n, k))
    w = rng.choice([1.0, 1.5, 3.0, 5.0], n) if weights is None else weights
    return users, pos, negs, w, vecs, biases


def _loop(p: BPRParams, users, pos, negs, w, vecs, biases):
    """Per-row bpr_user_step; weighted ItemGrads summed per item (plus sum of |terms| for tolerances)."""
    new = np.array(users, dtype=np.float32)
    d = vecs.shape[1]
    vec_sum: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(d))
    abs_sum: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(d))
    bias_sum: Counter[int] = Counter()
    count: Counter[int] = Counter()
    for i in range(len(users)):
        if w[i] <= 0 or negs.shape[1] == 0:
            continue
        new[i], g = bpr_user_step(p, users[i], vecs[pos[i]], float(biases[pos[i]]), vecs[negs[i]], biases[negs[i]],
                                  float(w[i]))
        for item, grad in g.per_item(pos[i], negs[i]):
            term = float(w[i]) * grad.vec.astype(np.float64)
            vec_sum[item] += term
            abs_sum[item] += np.abs(term)
            bias_sum[item] += float(w[i]) * grad.bias
            count[item] += 1
    items = sorted(count)
    return (new, np.array(items, dtype=np.int64), np.array([vec_sum[i] for i in items]).reshape(-1, d),
            np.array([bias_sum[i] for i in items]), np.array([count[i] for i in items], dtype=np.int64),
            np.array([abs_sum[i] for i in items]).reshape(-1, d))


def _assert_matches_loop(p: BPRParams, users, pos, negs, w, vecs, biases) -> CoalescedGrads:
    new, grads = bpr_batch_user_step(p, users, pos, negs, w, vecs, biases)
    ref_u, items, vec, bias, count, abs_vec = _loop(p, users, pos, negs, w, vecs, biases)
    assert new.dtype == np.float32 and new.shape == users.shape
    np.testing.assert_allclose(new, ref_u, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(grads.items, items)
    np.testing.assert_array_equal(grads.count, count)
    assert grads.vec.dtype == np.float32 and grads.bias.dtype == np.float32 and grads.items.dtype == np.int64
    # The loop rounds each ItemGrad to float32 before weighting: allow that per summed term.
    assert np.all(np.abs(grads.vec - vec) <= 1e-6 * abs_vec + 1e-6)
    np.testing.assert_allclose(grads.bias, bias, rtol=1e-6, atol=1e-6)
    return grads


def test_doctests_pass() -> None:
    result = doctest.testmod(batch_mod)
    assert result.attempted > 0 and result.failed == 0


# --- rounds ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.one_of(st.integers(0, 6), st.sampled_from(["a", "b", "c"])), max_size=60))
def test_rounds_partition_keys_and_keep_order(keys) -> None:
    parts = rounds(keys)
    flat = np.concatenate(parts) if parts else np.empty(0, np.int64)
    assert sorted(flat.tolist()) == list(range(len(keys)))  # every index exactly once
    for part in parts:
        assert part.dtype == np.int64 and len(part) > 0
        assert len({keys[i] for i in part}) == len(part)  # distinct keys within a round
        assert part.tolist() == sorted(part.tolist())
    seen: Counter[object] = Counter()
    for i, key in enumerate(keys):  # the k-th occurrence of a key sits in round k
        assert i in parts[seen[key]].tolist()
        seen[key] += 1


def test_rounds_examples() -> None:
    assert rounds([]) == []
    assert [r.tolist() for r in rounds(["u1", "u2", "u1", "u1", "u3"])] == [[0, 1, 4], [2], [3]]
    assert [r.tolist() for r in rounds(np.array([7, 7, 7]).tolist())] == [[0], [1], [2]]


# --- the step against the per-row loop -------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 12),
    k=st.integers(0, 4),
    d=st.integers(1, 6),
    m=st.integers(1, 8),
    scale=st.sampled_from([0.01, 0.3, 1.0, 30.0]),  # 30: inputs beyond max_norm / max_bias
    weights=st.lists(st.sampled_from([0.0, -1.0, 0.5, 1.0, 5.0, 1e3, 1e6]), min_size=12, max_size=12),
    p=params_st,
)
def test_matches_bpr_user_step_row_by_row(seed, n, k, d, m, scale, weights, p) -> None:
    users, pos, negs, _, vecs, biases = _batch(seed, n, k, d, m, scale)
    _assert_matches_loop(_with_dim(p, d), users, pos, negs, np.array(weights[:n]), vecs, biases)


@pytest.mark.parametrize(
    ("n", "k", "d", "m", "distinct"),
    [
        (300, 8, 64, 40, False),  # big batch, items mostly repeated: per-component sums
        (300, 8, 64, 20_000, False),  # big batch, items mostly once: scatter, then sum the repeated
        (40, 8, 64, 50, False),  # small batch: scatter, then one flat sum
        (20, 2, 16, 100_000, True),  # no item twice: one scatter (sorted distinct set)
        (200, 8, 64, 2_000, True),  # no item twice, mark-table distinct set
    ],
)
def test_matches_loop_on_every_summing_path(n: int, k: int, d: int, m: int, distinct: bool) -> None:
    p = BPRParams(dim=d)
    users, pos, negs, w, vecs, biases = _batch(3, n, k, d, m, scale=0.5)
    if distinct:
        ids = np.random.default_rng(4).permutation(m)[: n * (k + 1)]
        pos, negs = ids[:n], ids[n:].reshape(n, k)
    grads = _assert_matches_loop(p, users, pos, negs, w, vecs, biases)
    assert (grads.count.max() == 1) == distinct


def test_items_shared_between_rows_are_summed() -> None:
    p = BPRParams(dim=4)
    users, _, _, _, vecs, biases = _batch(5, 3, 3, 4, 6)
    pos = np.array([2, 0, 2])
    negs = np.array([[3, 3, 1], [2, 4, 5], [0, 1, 3]])  # 2 is a positive and a negative; 3 twice in row 0
    grads = _assert_matches_loop(p, users, pos, negs, np.array([1.0, 3.0, 0.5]), vecs, biases)
    assert dict(zip(grads.items.tolist(), grads.count.tolist(), strict=True)) == {0: 2, 1: 2, 2: 3, 3: 3, 4: 1, 5: 1}


def test_users_appearing_in_several_rounds_update_sequentially() -> None:
    # The intended use: split by user with rounds, feed each round the previous round's vectors.
    p = BPRParams(dim=8)
    _, pos, negs, w, vecs, biases = _batch(6, 12, 4, 8, 30)
    ids = ["a", "b", "a", "c", "a", "b", "d", "a", "c", "e", "b", "a"]
    start = {u: np.random.default_rng(i).standard_normal(8).astype(np.float32) for i, u in enumerate("abcde")}

    state = dict(start)
    ref_grads = defaultdict(lambda: np.zeros(8))
    for i, uid in enumerate(ids):  # one event at a time against the same (stale) item table
        state[uid], g = bpr_user_step(p, state[uid], vecs[pos[i]], float(biases[pos[i]]), vecs[negs[i]],
                                      biases[negs[i]], float(w[i]))
        for item, grad in g.per_item(pos[i], negs[i]):
            ref_grads[item] += w[i] * grad.vec.astype(np.float64)

    batched = dict(start)
    parts = []
    for idx in rounds(ids):
        users = np.stack([batched[ids[i]] for i in idx])
        new, grads = bpr_batch_user_step(p, users, pos[idx], negs[idx], w[idx], vecs, biases)
        batched.update({ids[i]: new[j] for j, i in enumerate(idx)})
        parts.append(grads)
    for uid in start:
        np.testing.assert_allclose(batched[uid], state[uid], atol=1e-5)
    merged = coalesce(*parts)
    assert merged.items.tolist() == sorted(ref_grads)
    assert int(merged.count.sum()) == len(ids) * 5
    np.testing.assert_allclose(merged.vec, np.array([ref_grads[i] for i in merged.items]), rtol=1e-5, atol=1e-5)


def test_rows_without_weight_or_negatives_change_nothing() -> None:
    p = BPRParams(dim=4)
    users, pos, negs, _, vecs, biases = _batch(7, 4, 3, 4, 50)
    pos[1], negs[1] = 49, [48, 47, 46]  # items only the weight-0 row touches
    w = np.array([1.0, 0.0, -2.0, 3.0])
    new, grads = bpr_batch_user_step(p, users, pos, negs, w, vecs, biases)
    np.testing.assert_array_equal(new[[1, 2]], users[[1, 2]])
    assert not np.array_equal(new[0], users[0])
    assert not set(grads.items.tolist()) & {46, 47, 48, 49}
    _assert_matches_loop(p, users, pos, negs, w, vecs, biases)

    for w_none, negs_none in ((np.zeros(4), negs), (np.ones(4), np.empty((4, 0), np.int64))):
        same, empty = bpr_batch_user_step(p, users, pos, negs_none, w_none, vecs, biases)
        np.testing.assert_array_equal(same, users)
        assert same is not users
        assert len(empty) == 0 and empty.vec.shape == (0, 4) and empty.dim == 4


def test_empty_batch() -> None:
    p = BPRParams(dim=3)
    new, grads = bpr_batch_user_step(p, np.empty((0, 3), np.float32), np.empty(0, np.int64),
                                     np.empty((0, 2), np.int64), np.empty(0), np.ones((2, 3), np.float32),
                                     np.zeros(2, np.float32))
    assert new.shape == (0, 3) and len(grads) == 0


def test_step_is_pure_and_deterministic() -> None:
    p = BPRParams(dim=8)
    args = _batch(8, 20, 4, 8, 15, scale=3.0)  # scale 3: projections happen
    copies = [np.copy(a) for a in args]
    first = bpr_batch_user_step(p, *args)
    second = bpr_batch_user_step(p, *args)
    for a, c in zip(args, copies, strict=True):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(first[0], second[0])
    for f in ("items", "vec", "bias", "count"):
        np.testing.assert_array_equal(getattr(first[1], f), getattr(second[1], f))


def test_identical_item_vectors_with_huge_weight_only_regularise() -> None:
    # grad_u = sum_j g_j (v_i - v_j) is exactly zero when every negative's vector equals the
    # positive's (bpr_user_step gets exactly zero); a huge weight must not clip rounding noise up to
    # a full step. Different biases give different g_j, so g_sum v_i - sum_j g_j v_j would be noise.
    p = BPRParams(dim=4, reg=0.1)
    rng = np.random.default_rng(12)
    vecs = np.tile(np.float32([0.3, -0.2, 0.1, 0.5]), (6, 1))
    biases = rng.normal(size=6).astype(np.float32)
    users = rng.normal(size=(20, 4)).astype(np.float32) * 0.5
    pos, negs = rng.integers(0, 6, 20), rng.integers(0, 6, (20, 3))
    new, _ = bpr_batch_user_step(p, users, pos, negs, np.full(20, 1e30), vecs, biases)
    for i in range(20):
        ref, _ = bpr_user_step(p, users[i], vecs[pos[i]], float(biases[pos[i]]), vecs[negs[i]], biases[negs[i]], 1e30)
        np.testing.assert_allclose(new[i], ref, atol=1e-7)
    np.testing.assert_allclose(new, users * (1 - p.lr * p.reg), atol=1e-7)


def test_clipped_step_is_the_same_for_any_larger_weight() -> None:
    # Past the clip the weight no longer matters, up to the largest float (where w * grad_u
    # overflows and bpr_user_step itself returns NaN); item gradients saturate, finite.
    p = BPRParams(dim=8)
    users, pos, negs, _, vecs, biases = _batch(11, 6, 3, 8, 10)
    at_clip, _ = bpr_batch_user_step(p, users, pos, negs, np.full(6, 1e6), vecs, biases)
    for w in (1e200, 1e307, float(np.finfo(np.float64).max)):
        new, grads = bpr_batch_user_step(p, users, pos, negs, np.full(6, w), vecs, biases)
        np.testing.assert_allclose(new, at_clip, atol=1e-6)
        assert np.all(np.isfinite(grads.vec)) and np.all(np.isfinite(grads.bias))
        assert np.max(np.abs(grads.bias)) == np.finfo(np.float32).max  # saturated, not inf
        table_v, table_b = vecs.copy(), biases.copy()
        apply_coalesced(p, table_v, table_b, grads)
        assert np.all(np.linalg.norm(table_v.astype(np.float64), axis=1) <= p.max_norm)


def test_huge_float64_inputs_take_the_safe_norm_path() -> None:
    p = BPRParams(dim=4)
    users = np.array([[1e200, -3e199, 0.0, 1.0], [1e-200, 0.0, 0.0, 0.0]])
    vecs = np.array([[1e300, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [1e-300, 1e-310, 0.0, 0.0]])
    biases = np.array([1e30, -1e30, 0.0], np.float32)
    pos, negs, w = np.array([0, 2]), np.array([[1, 2], [1, 0]]), np.array([1.0, 2.0])
    new, grads = bpr_batch_user_step(p, users, pos, negs, w, vecs, biases)
    for i in range(2):
        with np.errstate(over="ignore"):  # bpr's own slow path starts from an overflowed dot product
            ref, _ = bpr_user_step(p, users[i], vecs[pos[i]], float(biases[pos[i]]), vecs[negs[i]], biases[negs[i]],
                                   w[i])
        np.testing.assert_allclose(new[i], ref, atol=1e-5)
    assert np.all(np.isfinite(new)) and np.all(np.isfinite(grads.vec))


@st.composite
def _any_finite_batch(draw):
    n, k, d, m = draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    return (
        _with_dim(draw(params_st), d),
        draw(arrays(np.float32, (n, d), elements=finite32)),
        draw(arrays(np.int64, n, elements=st.integers(0, m - 1))),
        draw(arrays(np.int64, (n, k), elements=st.integers(0, m - 1))),
        draw(arrays(np.float64, n, elements=st.floats(allow_nan=False, allow_infinity=False))),
        draw(arrays(np.float32, (m, d), elements=finite32)),
        draw(arrays(np.float32, m, elements=finite32)),
    )


@settings(max_examples=300, deadline=None)
@given(batch=_any_finite_batch())
def test_any_finite_input_gives_finite_bounded_output(batch) -> None:
    p, users, pos, negs, w, vecs, biases = batch
    new, grads = bpr_batch_user_step(p, users, pos, negs, w, vecs, biases)
    active = w > 0
    assert np.all(np.isfinite(new))
    assert np.all(np.linalg.norm(new[active].astype(np.float64), axis=1) <= p.max_norm)
    np.testing.assert_array_equal(new[~active], users[~active])
    for arr in (grads.vec, grads.bias):
        assert np.all(np.isfinite(arr))
    table_v, table_b = vecs.copy(), biases.copy()
    apply_coalesced(p, table_v, table_b, grads)
    assert np.all(np.isfinite(table_v)) and np.all(np.isfinite(table_b))
    assert np.all(np.linalg.norm(table_v[grads.items].astype(np.float64), axis=1) <= p.max_norm)
    assert np.all(np.abs(table_b[grads.items]) <= p.max_bias)


# --- applying and merging gradients ----------------------------------------------------------------


def test_apply_coalesced_equals_apply_item_updates_on_those_rows() -> None:
    p = BPRParams(dim=8)
    users, pos, negs, w, vecs, biases = _batch(9, 30, 4, 8, 25, scale=2.0)
    _, grads = bpr_batch_user_step(p, users, pos, negs, w, vecs, biases)
    want_v, want_b = vecs.copy(), biases.copy()
    want_v[grads.items], want_b[grads.items] = apply_item_updates(p, vecs[grads.items], biases[grads.items],
                                                                  grads.vec, grads.bias, 1.0)
    got_v, got_b = vecs.copy(), biases.copy()
    apply_coalesced(p, got_v, got_b, grads)
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_array_equal(got_b, want_b)
    untouched = np.setdiff1d(np.arange(25), grads.items)
    np.testing.assert_array_equal(got_v[untouched], vecs[untouched])

    apply_coalesced(p, got_v, got_b, batch_mod._empty(8))  # nothing to apply: no change, no error
    np.testing.assert_array_equal(got_v, want_v)


def _grads(items: list[int], d: int = 2) -> CoalescedGrads:
    k = len(items)
    return CoalescedGrads(np.array(items, np.int64), np.ones((k, d), np.float32), np.ones(k, np.float32),
                          np.ones(k, np.int64))


@pytest.mark.parametrize(
    ("grads", "table_dim", "match"),
    [
        (_grads([0, 5]), 2, "items must be ascending, distinct and in"),
        (_grads([-1, 2]), 2, "items must be ascending"),
        (_grads([2, 1]), 2, "items must be ascending"),
        (_grads([1, 1]), 2, "items must be ascending"),
        (_grads([0, 1], d=3), 2, "grads.vec has d=3"),
    ],
)
def test_apply_coalesced_rejects_bad_gradients(grads: CoalescedGrads, table_dim: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply_coalesced(BPRParams(dim=table_dim), np.zeros((4, table_dim), np.float32), np.zeros(4, np.float32), grads)


def test_coalesce_sums_per_item() -> None:
    a = CoalescedGrads(np.array([1, 4]), np.float32([[1, 2], [3, 4]]), np.float32([1, 2]), np.array([1, 2]))
    b = CoalescedGrads(np.array([0, 4]), np.float32([[5, 6], [7, 8]]), np.float32([3, 4]), np.array([3, 1]))
    m = coalesce(a, b, batch_mod._empty(2))
    assert m.items.tolist() == [0, 1, 4] and m.count.tolist() == [3, 1, 3]
    np.testing.assert_array_equal(m.vec, np.float32([[5, 6], [1, 2], [10, 12]]))
    np.testing.assert_array_equal(m.bias, np.float32([3, 1, 6]))
    assert coalesce(a) is a
    big = CoalescedGrads(np.array([0]), np.float32([[3e38, -3e38]]), np.float32([3e38]), np.array([1]))
    sat = coalesce(big, big)  # saturates to the float32 range instead of overflowing to inf
    assert np.all(np.isfinite(sat.vec)) and np.all(np.isfinite(sat.bias))
    with pytest.raises(ValueError, match="at least one"):
        coalesce()
    with pytest.raises(ValueError, match="same dimension"):
        coalesce(a, batch_mod._empty(3))


def test_coalesced_grads_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="must agree"):
        CoalescedGrads(np.array([0, 1]), np.zeros((1, 2), np.float32), np.zeros(2, np.float32), np.ones(2, np.int64))


# --- argument checks -------------------------------------------------------------------------------


def _good():
    users, pos, negs, w, vecs, biases = _batch(10, 3, 2, 4, 5)
    return {"users": users, "pos": pos, "negs": negs, "weights": w, "item_vecs": vecs, "item_biases": biases}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("users", np.zeros(4, np.float32), r"users must have shape \(n, params.dim=4\), got \(4,\)"),
        ("users", np.zeros((3, 5), np.float32), r"users must have shape .* got \(3, 5\)"),
        ("pos", np.zeros(2, np.int64), r"pos must have shape \(n,\) with n=3"),
        ("pos", np.zeros(3), "pos must hold integer item-table indices"),
        ("pos", np.array([0, 5, 1]), r"pos indices must be in \[0, m=5\)"),
        ("negs", np.zeros(3, np.int64), r"negs must have shape \(n, K\)"),
        ("negs", np.array([[0, -1], [0, 0], [1, 1]]), r"negs indices must be in \[0, m=5\)"),
        ("weights", np.ones(4), r"weights must have shape \(n,\) with n=3"),
        ("weights", np.array([1.0, np.nan, 1.0]), "weights must be finite"),
        ("item_vecs", np.zeros((5, 3), np.float32), r"item_vecs must be \(m, params.dim=4\)"),
        ("item_biases", np.zeros(4, np.float32), r"item_biases \(m,\), got \(5, 4\) and \(4,\)"),
        ("item_vecs", np.full((5, 4), np.inf, np.float32), "item_vecs hold NaN or inf"),
        ("users", np.full((3, 4), np.nan, np.float32), "users hold NaN or inf"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(field: str, value: np.ndarray, match: str) -> None:
    args = _good() | {field: value}
    with pytest.raises(ValueError, match=match):
        bpr_batch_user_step(BPRParams(dim=4), **args)

"""User-side online learning (`operators.profile.embedding`): the item table and one BPR user step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.items.logic import apply, initial_item
from operators.learner.bpr import BPRParams
from operators.profile.embedding import ItemTable, initial_user, user_step
from tests.contracts.strategies import FEW, PROPS

DIM = 8
SEED = 7
P = BPRParams(dim=DIM, negatives=4)
TS = 1_764_000_000_000


def vec(x: float, dim: int = DIM) -> np.ndarray:
    return np.full(dim, x, dtype=np.float32)


def table_of(n: int, *, params: BPRParams = P, capacity: int = 1024) -> ItemTable:
    """A table of items i-0..i-{n-1} at their initial vectors (what the user stage builds itself)."""
    t = ItemTable(params.dim, capacity=capacity)
    for k in range(n):
        init = initial_item(params, f"i-{k}", SEED)
        t.upsert(f"i-{k}", init.as_array(), init.bias)
    return t


def step(
    t: ItemTable,
    item: str,
    *,
    u: np.ndarray | None = None,
    weight: float = 1.0,
    rng_seed: int = 0,
    params: BPRParams = P,
    rng: np.random.Generator | None = None,
):
    rng = rng if rng is not None else np.random.default_rng(rng_seed)
    return user_step(params, SEED, "u-1", u, item, weight, TS, t, rng)


# --- ItemTable --------------------------------------------------------------------------------------


def test_table_grows_beyond_its_capacity_with_stable_indices() -> None:
    t = ItemTable(3, capacity=2)
    idx = {f"i-{k}": t.upsert(f"i-{k}", vec(k, 3), float(k)) for k in range(11)}
    assert idx == {f"i-{k}": k for k in range(11)}
    assert len(t) == 11 and t.ids == [f"i-{k}" for k in range(11)]
    assert t.vecs.shape[0] >= 11 and t.biases.shape[0] == t.vecs.shape[0]
    for k in range(11):
        assert t.index[f"i-{k}"] == k
        assert t.vecs[k].tolist() == [float(k)] * 3 and t.biases[k] == k


def test_upsert_of_a_known_item_replaces_in_place() -> None:
    t = ItemTable(2, capacity=1)
    t.upsert("a", vec(1, 2), 0.5)
    t.upsert("b", vec(2, 2), 0.5)
    assert t.upsert("a", vec(9, 2), -1.0) == 0
    assert len(t) == 2 and t.ids == ["a", "b"]
    assert t.vecs[0].tolist() == [9.0, 9.0] and t.biases[0] == -1.0
    assert t.vecs[1].tolist() == [2.0, 2.0]


def test_upsert_copies_the_vector() -> None:
    # the table must not alias a (read-only) state view or a caller's array
    t = ItemTable(2)
    v = vec(1, 2)
    t.upsert("a", v, 0.0)
    v[:] = 5
    assert t.vecs[0].tolist() == [1.0, 1.0]


@PROPS
@given(st.lists(st.text(max_size=4), max_size=40), st.integers(1, 8))
def test_indices_are_first_appearance_order_whatever_the_capacity(ids: list[str], capacity: int) -> None:
    t = ItemTable(2, capacity=capacity)
    for n, item in enumerate(ids):
        t.upsert(item, vec(n, 2), float(n))
    distinct = list(dict.fromkeys(ids))
    assert t.ids == distinct and t.index == {item: k for k, item in enumerate(distinct)}
    last = {item: n for n, item in enumerate(ids)}  # the last write of each item wins
    for item, k in t.index.items():
        assert t.biases[k] == last[item]


# --- user_step: entering items, no-op cases ---------------------------------------------------------


def test_a_new_item_enters_with_its_initial_item_vector() -> None:
    t = table_of(3)
    step(t, "new-item")
    init = initial_item(P, "new-item", SEED)
    k = t.index["new-item"]
    assert k == 3 and len(t) == 4
    assert t.vecs[k].tobytes() == init.vector and t.biases[k] == init.bias


def test_a_known_item_is_not_reset() -> None:
    t = table_of(3)
    t.upsert("i-1", vec(0.5), 0.25)
    step(t, "i-1")
    assert t.vecs[1].tolist() == vec(0.5).tolist() and t.biases[1] == 0.25 and len(t) == 3


def test_first_step_of_a_user_starts_from_initial_user() -> None:
    t = table_of(1)
    u, updates = step(t, "i-0")  # single item: no negatives, so no step, only the initial vector
    assert updates == []
    assert u.tobytes() == initial_user(P, "u-1", SEED).tobytes()


def test_user_vector_of_another_dimension_is_replaced_by_initial_user() -> None:
    t = table_of(1)
    u, _ = step(t, "i-0", u=vec(1.0, DIM + 1))
    assert u.tobytes() == initial_user(P, "u-1", SEED).tobytes()


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_weight_zero_changes_nothing_but_enters_the_item(weight: float) -> None:
    t = table_of(5)
    u0 = vec(0.3)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    u, updates = step(t, "fresh", u=u0, weight=weight, rng=rng)
    assert updates == [] and u is u0
    assert "fresh" in t.index
    assert rng.bit_generator.state == state  # no negatives drawn


def test_a_single_item_table_gives_no_updates() -> None:
    t = ItemTable(DIM)
    u0 = vec(0.3)
    u, updates = step(t, "only", u=u0)
    assert updates == [] and u is u0 and t.ids == ["only"]


# --- user_step: updates -----------------------------------------------------------------------------


@PROPS
@given(st.integers(2, 30), st.data(), st.integers(1, 16), st.integers(0, 2**32))
def test_one_positive_then_negatives_never_the_positive(
    n: int, data: st.DataObject, negatives: int, rng_seed: int
) -> None:
    params = BPRParams(dim=DIM, negatives=negatives)
    t = table_of(n, params=params)
    pos = f"i-{data.draw(st.integers(0, n - 1))}"
    _, updates = step(t, pos, params=params, rng_seed=rng_seed, weight=1.5)
    assert len(updates) == 1 + negatives
    assert updates[0].item_id == pos
    assert all(u.item_id != pos for u in updates[1:])
    assert all(u.item_id in t.index for u in updates)
    assert all((u.ts, u.weight) == (TS, 1.5) for u in updates)
    assert all(u.vec_grad.shape == (DIM,) and u.vec_grad.dtype == np.float32 for u in updates)


def test_negatives_cover_every_other_item() -> None:
    # uniform over the others: the last item and the one right after the positive are reachable too
    t = table_of(4)
    rng = np.random.default_rng(1)
    seen: set[str] = set()
    for _ in range(30):
        _, updates = step(t, "i-1", rng=rng)
        seen.update(u.item_id for u in updates[1:])
    assert seen == {"i-0", "i-2", "i-3"}


def test_a_new_positive_gets_updates_too() -> None:
    t = table_of(3)
    _, updates = step(t, "new-item")
    assert [u.item_id for u in updates[:1]] == ["new-item"] and len(updates) == 1 + P.negatives
    assert all(u.item_id != "new-item" for u in updates[1:])


def test_positive_gradient_points_along_the_user_and_negatives_against_it() -> None:
    t = table_of(4)
    u0 = initial_user(P, "u-1", SEED)
    _, updates = step(t, "i-0", u=u0)
    assert float(updates[0].vec_grad @ u0) > 0 and updates[0].bias_grad > 0
    assert all(float(g.vec_grad @ u0) < 0 and g.bias_grad < 0 for g in updates[1:])


def test_user_step_does_not_touch_item_vectors() -> None:
    # items are learned in the item stage; the user stage only reads its copy
    t = table_of(5)
    before = (t.vecs.copy(), t.biases.copy())
    step(t, "i-2")
    assert np.array_equal(t.vecs, before[0]) and np.array_equal(t.biases, before[1])


def _margin(u: np.ndarray, t: ItemTable, pos: str, negs: list[str]) -> float:
    score = lambda item: float(u @ t.vecs[t.index[item]]) + float(t.biases[t.index[item]])  # noqa: E731
    return score(pos) - float(np.mean([score(j) for j in negs]))


def test_repeated_steps_raise_the_positive_over_a_fixed_negative() -> None:
    t = table_of(2)  # one possible negative: every draw is i-1
    rng = np.random.default_rng(0)
    u = None
    margins = []
    for _ in range(20):
        u, updates = step(t, "i-0", u=u, rng=rng)
        assert {x.item_id for x in updates[1:]} == {"i-1"}
        margins.append(_margin(u, t, "i-0", ["i-1"]))
    assert all(b > a for a, b in zip(margins, margins[1:], strict=False))
    assert margins[-1] > margins[0] + 1e-3


def test_repeated_steps_raise_the_positive_over_the_other_items() -> None:
    t = table_of(6)
    others = [f"i-{k}" for k in range(1, 6)]
    rng = np.random.default_rng(0)
    u = initial_user(P, "u-1", SEED)
    start = _margin(u, t, "i-0", others)
    for _ in range(30):
        u, _ = step(t, "i-0", u=u, rng=rng)
    assert _margin(u, t, "i-0", others) > start + 1e-3


def test_closed_loop_with_the_item_stage_raises_the_margin_further() -> None:
    # user step → item updates applied by the item stage → fed back into the table (the broadcast)
    t_open, t_loop = table_of(4), table_of(4)
    states = {item: initial_item(P, item, SEED) for item in t_loop.ids}
    others = ["i-1", "i-2", "i-3"]
    u_open = u_loop = initial_user(P, "u-1", SEED)
    rng_open, rng_loop = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(15):
        u_open, _ = step(t_open, "i-0", u=u_open, rng=rng_open)
        u_loop, updates = step(t_loop, "i-0", u=u_loop, rng=rng_loop)
        for upd in updates:
            states[upd.item_id] = apply(P, states[upd.item_id], upd, SEED)
            t_loop.upsert(upd.item_id, states[upd.item_id].as_array(), states[upd.item_id].bias)
    assert _margin(u_loop, t_loop, "i-0", others) > _margin(u_open, t_open, "i-0", others) > 0


@FEW
@given(st.integers(0, 2**32), st.integers(2, 20))
def test_same_rng_seed_same_result(rng_seed: int, n: int) -> None:
    runs = []
    for _ in range(2):
        t = table_of(n)
        rng = np.random.default_rng(rng_seed)
        u = None
        out = []
        for item in ["i-0", "i-1", "new", "i-0"]:
            u, updates = step(t, item, u=u, rng=rng)
            out.append((u.tobytes(), [(x.item_id, x.vec_grad.tobytes(), x.bias_grad) for x in updates]))
        runs.append((out, list(t.ids)))
    assert runs[0] == runs[1]


def test_user_step_does_not_mutate_the_user_vector() -> None:
    t = table_of(3)
    u0 = initial_user(P, "u-1", SEED)
    copy = u0.copy()
    u1, _ = step(t, "i-0", u=u0)
    assert np.array_equal(u0, copy) and not np.array_equal(u1, u0)


def test_new_user_vector_is_float32_within_the_norm_bound() -> None:
    t = ItemTable(DIM)
    t.upsert("a", vec(3.0), 0.0)  # norm 8.5, over max_norm: the step projects it first
    t.upsert("b", vec(-3.0), 0.0)
    u = vec(1.0)
    for _ in range(50):
        u, _ = step(t, "a", u=u, weight=5.0)
        assert u.dtype == np.float32 and np.linalg.norm(u.astype(np.float64)) <= P.max_norm

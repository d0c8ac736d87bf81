"""Batched, vectorised user-side BPR step: many interactions in one numpy call.

Why: per event, `bpr.bpr_user_step` is a few dozen small numpy calls, so interpreter overhead
dominates its cost. A user stage that buffers a micro-batch can do the same arithmetic for all rows
at once. Row by row the maths is `bpr_user_step`'s (a simultaneous step against one, possibly
stale, item table), and the item gradients come out already weighted and summed per item, ready
for the item stage (`apply_coalesced`).

A user who appears several times in one batch must still see its updates one after another: split
the batch with `rounds`, call `bpr_batch_user_step` once per round with the user vectors of the
previous round, and merge the rounds' gradients with `coalesce`.

Pure functions of their arguments (no RNG, no clock); inputs are never mutated, except the item
table that `apply_coalesced` updates in place by design.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from operators.learner.bpr import _SHRINK, BPRParams, apply_item_updates

_F32_MAX = float(np.finfo(np.float32).max)
# Row norms whose square would leave the comfortable float64 range are recomputed scaled by the
# row's largest magnitude (squares overflow above ~1e154 and underflow below ~1e-154).
_SAFE_LO, _SAFE_HI = 1e-140, 1e140
# Up to this many summed terms (entries x d) one flat bincount beats d per-component calls.
_SMALL_SUM = 1 << 17


@dataclass(frozen=True, slots=True)
class CoalescedGrads:
    """Item-side output of a batch: one already-weighted gradient sum per distinct item.

    `vec` and `bias` are ascent directions (as `bpr.ItemGrad`), summed over every row that touched
    the item, each row's contribution multiplied by its weight; apply them with weight 1. Sums are
    saturated to the float32 range, so absurd weights give large finite gradients, never inf/NaN.
    """

    items: NDArray[np.int64]
    """(k,) distinct item-table indices, ascending."""
    vec: NDArray[np.float32]
    """(k, d) sum of weight * item-vector gradient."""
    bias: NDArray[np.float32]
    """(k,) sum of weight * bias gradient."""
    count: NDArray[np.int64]
    """(k,) number of gradients summed into each item (for statistics / update counters)."""

    def __post_init__(self) -> None:
        k = self.items.shape[0] if self.items.ndim == 1 else -1
        if (k < 0 or self.vec.ndim != 2 or self.vec.shape[0] != k or self.bias.shape != (k,)
                or self.count.shape != (k,)):
            msg = (f"CoalescedGrads: items (k,), vec (k, d), bias (k,), count (k,) must agree, got items "
                   f"{self.items.shape}, vec {self.vec.shape}, bias {self.bias.shape}, count {self.count.shape}.")
            raise ValueError(msg)

    @property
    def dim(self) -> int:
        """Embedding dimension d of the gradients."""
        return int(self.vec.shape[1])

    def __len__(self) -> int:
        return int(self.items.shape[0])


def rounds(keys: Sequence[Hashable]) -> list[NDArray[np.int64]]:
    """Split row indices into rounds holding each key at most once, keeping each key's order.

    The k-th occurrence of a key goes to round k, so a user who appears several times in a batch
    still gets sequential user-vector updates while each round is one vectorised call. Indices
    within a round are ascending.

    >>> [r.tolist() for r in rounds(["a", "b", "a", "c", "a", "b"])]
    [[0, 1, 3], [2, 5], [4]]
    """
    seen: dict[Hashable, int] = {}
    occurrence: list[int] = []
    for key in keys:  # one dict lookup per row: cheap next to the step itself
        k = seen.get(key, 0)
        seen[key] = k + 1
        occurrence.append(k)
    if not occurrence:
        return []
    occ = np.asarray(occurrence, dtype=np.int64)
    order = np.argsort(occ, kind="stable")  # stable: ascending row index inside each round
    sizes = np.bincount(occ)
    return [part.astype(np.int64, copy=False) for part in np.split(order, np.cumsum(sizes)[:-1])]


def bpr_batch_user_step(
    params: BPRParams,
    users: NDArray[np.float32],
    pos: NDArray[np.int64],
    negs: NDArray[np.int64],
    weights: NDArray[np.floating[Any]],
    item_vecs: NDArray[np.float32],
    item_biases: NDArray[np.float32],
) -> tuple[NDArray[np.float32], CoalescedGrads]:
    """One simultaneous BPR step for n rows; returns the n new user vectors and per-item gradients.

    Row i is `bpr_user_step(params, users[i], item_vecs[pos[i]], item_biases[pos[i]],
    item_vecs[negs[i]], item_biases[negs[i]], weights[i])`, including its input projection,
    gradient clip, regulariser and final norm clip; shapes: users (n, d), pos (n,), negs (n, K),
    weights (n,), item table (m, d) / (m,). Rows with weight <= 0, and all rows when K == 0,
    return their user vector unchanged and add no gradient (as `embedding.user_step`). Users must
    be distinct within a call (see `rounds`): every row reads the given user vector. Raises
    ValueError, naming the argument, for mismatched shapes, out-of-range item indices and NaN/inf
    weights or vectors.

    >>> import numpy as np
    >>> from operators.learner.bpr import BPRParams, bpr_user_step
    >>> p = BPRParams(dim=4, negatives=2)
    >>> rng = np.random.default_rng(0)
    >>> table, bias = rng.standard_normal((5, 4)).astype(np.float32), np.zeros(5, np.float32)
    >>> users = rng.standard_normal((2, 4)).astype(np.float32)
    >>> pos, negs = np.array([0, 1]), np.array([[2, 3], [3, 4]])
    >>> new_users, grads = bpr_batch_user_step(p, users, pos, negs, np.ones(2), table, bias)
    >>> one, _ = bpr_user_step(p, users[1], table[1], 0.0, table[[3, 4]], bias[[3, 4]])
    >>> bool(np.allclose(new_users[1], one, atol=1e-6))
    True
    >>> grads.items.tolist(), grads.count.tolist()  # item 3 is a negative of both rows
    ([0, 1, 2, 3, 4], [1, 1, 1, 2, 1])
    """
    u_in, pos_i, negs_i, w = _check_step_args(params, users, pos, negs, weights, item_vecs, item_biases)
    n, d = u_in.shape
    k_neg = negs_i.shape[1]
    active = w > 0.0
    if k_neg == 0 or not active.any():
        return np.array(u_in, dtype=np.float32), _empty(d)  # a fresh array: inputs are never mutated
    rows: NDArray[np.intp] | None = None
    if not active.all():
        rows = np.flatnonzero(active)
        u_in, pos_i, negs_i, w = u_in[rows], pos_i[rows], negs_i[rows], w[rows]
        n = rows.shape[0]
    max_norm, max_bias = params.max_norm, params.max_bias

    # Gather and project each distinct item once (items repeat across rows); the same distinct set
    # is the coalescing key of the item gradients below.
    items, inv = _distinct(np.concatenate([pos_i, negs_i.reshape(-1)]), item_vecs.shape[0])
    k, entries = items.shape[0], n * (k_neg + 1)
    # Every large float64 temporary is a view into one block. Why: glibc gives freed heap memory
    # back to the OS once its free top exceeds twice the largest recent block, so a call made of
    # many mid-size temporaries faults all its pages in again on every call (two thirds of the
    # time of a 200-row batch on the 2-core VMs); one block that big stays in the heap. `work` (entries, d) holds
    # in turn the gathered item vectors, their differences and the item-gradient terms.
    work, table, sums, u, grad_u, spare = _carve(d, entries, k, k, n, n, n)
    np.copyto(table, item_vecs[items])
    _project_rows(table, max_norm, "item_vecs")
    table_b = np.clip(item_biases[items].astype(np.float64, copy=False), -max_bias, max_bias)
    np.copyto(u, u_in)
    _project_rows(u, max_norm, "users")
    vi = np.take(table, inv[:n], axis=0, out=work[:n], mode="clip")  # indices are valid: no check
    vj = np.take(table, inv[n:], axis=0, out=work[n:], mode="clip").reshape(n, k_neg, d)
    bi, bj = table_b[inv[:n]], table_b[inv[n:]].reshape(n, k_neg)

    x = (np.einsum("nd,nd->n", u, vi) + bi)[:, None] - np.einsum("nkd,nd->nk", vj, u) - bj
    g = 0.5 * (1.0 + np.tanh(-0.5 * x))  # sigmoid(-x) in bpr._sigmoid's tanh form: no overflow
    # sum_j g_j (vi - vj) as bpr does: differencing first keeps an exact zero exact, which matters
    # when a huge weight would otherwise clip rounding noise up to a full grad_clip step.
    np.subtract(vi[:, None, :], vj, out=vj)
    np.einsum("nk,nkd->nd", g, vj, out=grad_u)
    step = _clip_weighted(grad_u, w, params.grad_clip)  # in place
    step -= np.multiply(u, params.reg, out=spare)
    step *= params.lr
    step += u  # now u + lr * (clipped weighted gradient - reg * u): the new user vectors
    out = _project_rows(step, max_norm, "new user vectors").astype(np.float32)
    if rows is None:
        new_users = out
    else:
        new_users = np.array(users, dtype=np.float32)
        new_users[rows] = out

    # Item side: row i adds coef * u_i to each of its items, with coef = w_i * g_sum_i for the
    # positive and -w_i * g_ij for negative j; the bias gradient is coef itself. Capping coef keeps
    # every single term inside the float32 range (no inf, so no inf - inf = NaN in the sums).
    cap = _F32_MAX / max(1.0, max_norm)
    with np.errstate(over="ignore"):
        coef = np.concatenate([w * g.sum(axis=1), (-w[:, None] * g).reshape(-1)])
    np.clip(coef, -cap, cap, out=coef)
    count = np.bincount(inv, minlength=k)
    grads = CoalescedGrads(items=items.astype(np.int64, copy=False),
                           vec=_item_sums(inv, count, coef, u, work, sums, spare),
                           bias=_to_f32(cast(NDArray[np.float64], np.bincount(inv, weights=coef, minlength=k))),
                           count=count.astype(np.int64, copy=False))
    return new_users, grads


def coalesce(*grads: CoalescedGrads) -> CoalescedGrads:
    """Merge several rounds' gradients into one per-item sum (what one bigger round would give).

    >>> import numpy as np
    >>> a = CoalescedGrads(np.array([1, 4]), np.ones((2, 2), np.float32), np.ones(2, np.float32), np.ones(2, np.int64))
    >>> b = CoalescedGrads(np.array([4]), np.ones((1, 2), np.float32), np.ones(1, np.float32), np.ones(1, np.int64))
    >>> m = coalesce(a, b)
    >>> m.items.tolist(), m.vec.tolist(), m.count.tolist()
    ([1, 4], [[1.0, 1.0], [2.0, 2.0]], [1, 2])
    """
    if not grads:
        msg = "coalesce: needs at least one CoalescedGrads (the dimension d comes from them)."
        raise ValueError(msg)
    dims = {g.dim for g in grads}
    if len(dims) != 1:
        msg = f"coalesce: all gradients must have the same dimension d, got {sorted(dims)}."
        raise ValueError(msg)
    if len(grads) == 1:
        return grads[0]
    items, inv = np.unique(np.concatenate([g.items for g in grads]), return_inverse=True)
    count = np.zeros(items.shape[0], dtype=np.int64)
    np.add.at(count, inv, np.concatenate([g.count for g in grads]))
    vec = np.concatenate([g.vec for g in grads]).astype(np.float64)
    # With weights, bincount returns float64 (numpy's stubs only know the intp overload).
    bias = cast(NDArray[np.float64],
                np.bincount(inv, weights=np.concatenate([g.bias for g in grads]), minlength=items.shape[0]))
    return CoalescedGrads(items=items.astype(np.int64, copy=False),
                          vec=_to_f32(_sum_rows(inv, items.shape[0], vec)),
                          bias=_to_f32(bias), count=count)


def apply_coalesced(
    params: BPRParams, item_vecs: NDArray[np.float32], item_biases: NDArray[np.float32], grads: CoalescedGrads
) -> None:
    """Apply coalesced gradients in place to rows `grads.items` of an item table.

    Each item gets one `bpr.apply_item_updates` step with weight 1 (the sums are already weighted):
    the summed gradient is clipped once, as one update, which is why the rows must be distinct.
    """
    if item_vecs.ndim != 2 or item_biases.shape != (item_vecs.shape[0],):
        msg = (f"apply_coalesced: item_vecs must be (m, d) and item_biases (m,), got {item_vecs.shape} "
               f"and {item_biases.shape}.")
        raise ValueError(msg)
    if grads.dim != item_vecs.shape[1]:
        msg = f"apply_coalesced: grads.vec has d={grads.dim} but item_vecs is {item_vecs.shape}."
        raise ValueError(msg)
    if len(grads) == 0:
        return
    items = grads.items
    if int(items[0]) < 0 or int(items[-1]) >= item_vecs.shape[0] or bool(np.any(np.diff(items) <= 0)):
        msg = (f"apply_coalesced: grads.items must be ascending, distinct and in [0, {item_vecs.shape[0]}) "
               f"(item_vecs {item_vecs.shape}), got {items.shape[0]} items in [{items.min()}, {items.max()}].")
        raise ValueError(msg)
    vecs, biases = apply_item_updates(params, item_vecs[items], item_biases[items], grads.vec, grads.bias, 1.0)
    item_vecs[items] = vecs
    item_biases[items] = biases


def _check_step_args(
    params: BPRParams,
    users: NDArray[np.float32],
    pos: NDArray[np.int64],
    negs: NDArray[np.int64],
    weights: NDArray[np.floating[Any]],
    item_vecs: NDArray[np.float32],
    item_biases: NDArray[np.float32],
) -> tuple[NDArray[np.floating[Any]], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    # Checks are O(n K) on small arrays; the item table is only looked at through its shape.
    where = "bpr_batch_user_step"
    users, pos, negs = np.asarray(users), np.asarray(pos), np.asarray(negs)
    w = np.asarray(weights, dtype=np.float64)
    if users.ndim != 2 or users.shape[1] != params.dim:
        msg = f"{where}: users must have shape (n, params.dim={params.dim}), got {users.shape}."
        raise ValueError(msg)
    n = users.shape[0]
    if item_vecs.ndim != 2 or item_vecs.shape[1] != params.dim or item_biases.shape != (item_vecs.shape[0],):
        msg = (f"{where}: item_vecs must be (m, params.dim={params.dim}) and item_biases (m,), got "
               f"{item_vecs.shape} and {item_biases.shape}.")
        raise ValueError(msg)
    for name, arr, ndim, shape in (("pos", pos, 1, "(n,)"), ("negs", negs, 2, "(n, K)")):
        if arr.ndim != ndim or arr.shape[0] != n:
            msg = f"{where}: {name} must have shape {shape} with n={n} from users {users.shape}, got {arr.shape}."
            raise ValueError(msg)
        if not np.issubdtype(arr.dtype, np.integer):
            msg = f"{where}: {name} must hold integer item-table indices, got dtype {arr.dtype}."
            raise ValueError(msg)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= item_vecs.shape[0]):
            msg = (f"{where}: {name} indices must be in [0, m={item_vecs.shape[0]}) of item_vecs "
                   f"{item_vecs.shape}, got [{arr.min()}, {arr.max()}].")
            raise ValueError(msg)
    if w.shape != (n,):
        msg = f"{where}: weights must have shape (n,) with n={n} from users {users.shape}, got {w.shape}."
        raise ValueError(msg)
    if not np.all(np.isfinite(w)):
        msg = f"{where}: weights must be finite, got {w[~np.isfinite(w)][:3].tolist()}; check event weights."
        raise ValueError(msg)
    return users, pos.astype(np.intp, copy=False), negs.astype(np.intp, copy=False), w


def _empty(d: int) -> CoalescedGrads:
    return CoalescedGrads(np.empty(0, np.int64), np.empty((0, d), np.float32), np.empty(0, np.float32),
                          np.empty(0, np.int64))


def _distinct(idx: NDArray[np.intp], m: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """`np.unique(idx, return_inverse=True)` for indices into a table of m rows."""
    if m > 8 * idx.shape[0]:  # big table, small batch: sorting beats touching all m rows
        items, inv = np.unique(idx, return_inverse=True)
        return items, inv.reshape(-1)
    mark = np.zeros(m, dtype=bool)  # otherwise a mark table is several times cheaper than a sort
    mark[idx] = True
    items = np.flatnonzero(mark)
    slot = np.empty(m, dtype=np.intp)
    slot[items] = np.arange(items.shape[0])
    return items, slot[idx]


def _sum_rows(inv: NDArray[np.intp], k: int, rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row sums per group, `out[inv[e]] += rows[e]`: what `np.add.at(out, inv, rows)` computes.

    One bincount over (group, component) pairs, several times faster than 2-d `np.add.at`.
    """
    d = rows.shape[1]
    flat = (inv[:, None] * d + np.arange(d)).reshape(-1)
    sums = cast(NDArray[np.float64], np.bincount(flat, weights=rows.reshape(-1), minlength=k * d))
    return sums.reshape(k, d)


def _item_sums(inv: NDArray[np.intp], count: NDArray[np.intp], coef: NDArray[np.float64], u: NDArray[np.float64],
               work: NDArray[np.float64], sums: NDArray[np.float64], spare: NDArray[np.float64]) -> NDArray[np.float32]:
    """float32 per-item sums of `coef[e] * u[row of e]` over the entries e of `inv`.

    Entry e < n is row e's positive, entry n + i K + j row i's negative j (the order of `inv`);
    `work` (entries, d), `sums` (k, d) and `spare` (n, d) are scratch, overwritten.
    `np.add.at(out, inv, terms)` would give the same sums but is 3-5x slower on 2-d terms. Terms
    are in the float32 range (the caller caps coef); sums saturate to it.
    """
    n, d = u.shape
    entries, k = inv.shape[0], count.shape[0]
    k_neg = entries // n - 1
    repeated = count[inv] > 1  # entries whose item is hit more than once
    n_rep = int(np.count_nonzero(repeated))
    if 2 * n_rep <= entries or entries * d <= _SMALL_SUM:
        # Mostly items hit once (a table much larger than the batch), or a small batch: write every
        # term to its item, then overwrite the repeated items with their sums.
        np.multiply(coef[:n, None], u, out=work[:n])
        np.multiply(coef[n:].reshape(n, k_neg, 1), u[:, None, :], out=work[n:].reshape(n, k_neg, d))
        out = np.empty((k, d), dtype=np.float32)
        out[inv] = work
        if n_rep:
            e = np.flatnonzero(repeated)
            hit = np.flatnonzero(count > 1)
            local = np.empty(k, dtype=np.intp)
            local[hit] = np.arange(hit.shape[0])
            out[hit] = _to_f32(_sum_rows(local[inv[e]], hit.shape[0], work[e]))
        return out
    # Mostly repeated items in a big batch: lay the terms out component-major in the same memory
    # and sum with one bincount per component; the (entries x d) index array of a single bincount
    # would double the call's peak memory, and fresh pages cost more here than these d calls.
    terms = work.reshape(d, entries)
    src = np.concatenate([np.arange(n), np.repeat(np.arange(n), k_neg)])  # the user row of each entry
    u_t = spare.reshape(d, n)
    np.copyto(u_t, u.T)
    np.take(u_t, src, axis=1, out=terms, mode="clip")
    terms *= coef  # long contiguous inner loops: much faster than writing (d, n, K) blocks
    for c in range(d):
        sums[:, c] = np.bincount(inv, weights=terms[c], minlength=k)
    return _to_f32(sums)


def _carve(d: int, *rows: int) -> list[NDArray[np.float64]]:
    """(r, d) float64 views, one per r in `rows`, into a single fresh block (see the caller)."""
    block = np.empty(sum(rows) * d, dtype=np.float64)
    ends = np.cumsum((0, *rows)) * d
    return [block[a:b].reshape(r, d) for a, b, r in zip(ends[:-1], ends[1:], rows, strict=True)]


def _to_f32(x: NDArray[np.float64]) -> NDArray[np.float32]:
    # Saturate instead of overflowing to inf: only absurd weights ever reach the bound.
    np.maximum(x, -_F32_MAX, out=x)  # in place, and cheaper than np.clip's wrapper
    np.minimum(x, _F32_MAX, out=x)
    return x.astype(np.float32)


def _row_norms(x: NDArray[np.float64], what: str) -> NDArray[np.float64]:
    """L2 norms of the rows of a 2-d array, accurate for finite rows of any magnitude.

    A non-finite row raises (naming `what`) rather than spreading NaN into learned state; the check
    is free, as only rows whose squared norm left the safe range are looked at again.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms: NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", x, x))
    risky = ~((norms > _SAFE_LO) & (norms < _SAFE_HI))  # also catches inf from overflowed squares
    if risky.any():
        sub = x[risky]
        peak = np.max(np.abs(sub), axis=1)
        if not np.all(np.isfinite(peak)):
            msg = (f"bpr_batch_user_step: {what} hold NaN or inf in {int(np.sum(~np.isfinite(peak)))} row(s); "
                   "the inputs must be finite (check the state that produced them and BPRParams).")
            raise ValueError(msg)
        scaled = sub / np.where(peak > 0.0, peak, 1.0)[:, None]
        norms[risky] = peak * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    return norms


def _project_rows(x: NDArray[np.float64], bound: float, what: str) -> NDArray[np.float64]:
    """In place: scale each row onto the norm ball of `bound`, as `bpr._project` does per vector."""
    norms = _row_norms(x, what)
    over = norms > bound
    if over.any():  # usually no row is: stored vectors were clipped when written
        x *= np.where(over, (_SHRINK * bound) / np.maximum(norms, bound), 1.0)[:, None]
    return x


def _clip_weighted(grad: NDArray[np.float64], w: NDArray[np.float64], bound: float) -> NDArray[np.float64]:
    """In place: row-wise `bpr._project(w * grad, bound)`, never forming an overflowing `w * grad`.

    A clipped row is `grad / |grad| * bound` (times the same shrink): the weight only decides
    whether to clip, so huge finite weights give a full-size step instead of inf / NaN.
    """
    norms = _row_norms(grad, "user gradients")
    with np.errstate(over="ignore"):
        clip = w * norms > bound
    # Unclipped rows: |w * grad| <= bound, so the product is safe. Clipped rows have norms > 0
    # (w * norms > bound > 0); only a subnormal norm could overflow bound / norms, so those rows
    # divide first.
    factor = np.where(clip, (_SHRINK * bound) / np.where(clip, norms, 1.0), w) if clip.any() else w
    tiny = clip & (norms < 1e-300)
    exact = grad[tiny] / norms[tiny][:, None] * (_SHRINK * bound) if tiny.any() else None
    grad *= factor[:, None]
    if exact is not None:
        grad[tiny] = exact
    return grad

"""Online BPR split into a user-side step and an item-side update.

Why split: in the job the user vector lives in a user-keyed operator and item vectors in an
item-keyed one, so no single place may mutate both. The user stage reads (possibly stale) item
vectors, updates the user and emits per-item gradients; the item stage applies them later.
Everything here is a pure function of its arguments: no global RNG, no clock, inputs never mutated.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from operators.learner.frozen import FrozenMap
from state_schemas.errors import ConfigError, SchemaError
from state_schemas.events import EVENT_TYPE_WEIGHTS

Vec = NDArray[np.float32]
"""A user or item embedding: 1-d float32 of length `BPRParams.dim`."""

#: The event contract's table (`state_schemas.events_v1.EVENT_TYPE_WEIGHTS`) is the one source of event
#: weights: the profile stage weighs interest and the learner its BPR rows with the same numbers.
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = FrozenMap(dict(EVENT_TYPE_WEIGHTS))


@dataclass(frozen=True, slots=True)
class BPRParams:
    """Hyper-parameters of online BPR; event weights are data so new event types need no code."""

    dim: int = 64
    lr: float = 0.1
    reg: float = 0.01
    negatives: int = 8
    init_scale: float = 0.1
    max_norm: float = 4.0
    """Embedding norms are clipped to this after every update (keeps scores bounded online)."""
    max_bias: float = 5.0
    grad_clip: float = 4.0
    """Norm of a (weighted) gradient is clipped to this before it is applied."""
    event_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_EVENT_WEIGHTS)

    def __post_init__(self) -> None:
        positive = {"dim": self.dim, "lr": self.lr, "negatives": self.negatives, "max_norm": self.max_norm,
                    "max_bias": self.max_bias, "grad_clip": self.grad_clip}
        for name, value in positive.items():
            if not value > 0:
                msg = f"BPRParams.{name} must be > 0, got {value!r}; fix the learner settings."
                raise ConfigError(msg)
        if self.reg < 0 or self.init_scale < 0:
            msg = f"BPRParams.reg and init_scale must be >= 0, got {self.reg!r}, {self.init_scale!r}."
            raise ConfigError(msg)
        # Freeze the map so a shared params object cannot be changed under a running job.
        object.__setattr__(self, "event_weights", FrozenMap(self.event_weights))

    def weight_for(self, event_type: str) -> float:
        """Weight of one event type; an unknown type is a schema problem, not a silent 1.0."""
        try:
            return float(self.event_weights[event_type])
        except KeyError as exc:
            msg = (f"learner: unknown event type {event_type!r}; known: {sorted(self.event_weights)}. "
                   "Add it to BPRParams.event_weights.")
            raise SchemaError(msg) from exc


@dataclass(frozen=True, slots=True)
class ItemGrad:
    """Ascent direction of the BPR log-likelihood for one item (unweighted, unclipped, no reg)."""

    vec: Vec
    bias: float


@dataclass(frozen=True, slots=True)
class ItemGrads:
    """Item-side output of one user step: the positive item first, then one per sampled negative."""

    pos: ItemGrad
    neg: tuple[ItemGrad, ...]

    def per_item(self, pos_item: int, neg_items: NDArray[np.int64] | list[int]) -> list[tuple[int, ItemGrad]]:
        """(item, grad) messages in a fixed order, ready to route to the item-keyed stage."""
        return [(int(pos_item), self.pos), *((int(j), g) for j, g in zip(neg_items, self.neg, strict=True))]


def key_rng(seed: int, namespace: str, key: int | str) -> np.random.Generator:
    """A generator determined by (seed, namespace, key) alone.

    Why: a keyed operator must initialise a new key's vector identically on every run and on
    every parallel instance, whatever order keys arrive in; Python's `hash` is salted per process.
    """
    digest = hashlib.blake2b(f"{namespace}\x00{key}".encode(), digest_size=8).digest()
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, int.from_bytes(digest, "little")])


def init_vector(params: BPRParams, rng: np.random.Generator) -> Vec:
    """Small random vector: BPR needs asymmetry to get started, and small keeps early scores calm."""
    scale: float = params.init_scale / np.sqrt(params.dim)
    return (rng.standard_normal(params.dim) * scale).astype(np.float32)


# Clip to a hair under the bound so the float32 cast can never round the norm above it.
_SHRINK = 1.0 - 1e-6


def clip_norm(vec: NDArray[np.floating[Any]], max_norm: float) -> Vec:
    """Scale `vec` down so its L2 norm is at most `max_norm` (returns a new float32 array).

    The norm is taken in float64 after scaling by the largest magnitude, so huge finite inputs
    neither overflow nor turn into NaN.
    """
    return _project(vec, max_norm).astype(np.float32)


def _project(vec: NDArray[np.floating[Any]], max_norm: float) -> NDArray[np.float64]:
    out = np.array(vec, dtype=np.float64)
    sq = float(out @ out)  # BLAS dot: overflow gives inf silently, handled below
    if math.isfinite(sq):
        norm = math.sqrt(sq)
    else:  # overflowed: rescale by the largest magnitude first (slow path, huge inputs only)
        peak = float(np.max(np.abs(out)))
        norm = peak * float(np.linalg.norm(out / peak))
    if norm > max_norm:
        out *= _SHRINK * max_norm / norm
    return out


def _clip_scalar(x: float, bound: float) -> float:
    return -bound if x < -bound else (bound if x > bound else float(x))


def _project_rows(mat: NDArray[np.floating[Any]], max_norm: float) -> NDArray[np.float64]:
    out = np.array(np.atleast_2d(mat), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", out, out)
    if not math.isfinite(float(sq.sum())):  # overflow somewhere: careful path, row by row
        return np.stack([_project(row, max_norm) for row in out]) if out.shape[0] else out
    norms = np.maximum(np.sqrt(sq), 1e-300)
    out *= np.where(norms > max_norm, _SHRINK * max_norm / norms, 1.0)[:, None]
    return out


def sample_negatives(
    rng: np.random.Generator, n_known: int, n: int, exclude: int | None = None
) -> NDArray[np.int64]:
    """`n` item indices drawn uniformly from `[0, n_known)`, avoiding `exclude` (the positive).

    Items are dense indices in order of first appearance, so "known" is a prefix. Sampling is
    with replacement; the seen set is not excluded because the user stage only keeps a window.
    """
    pool = n_known - (1 if exclude is not None and 0 <= exclude < n_known else 0)
    if pool <= 0 or n <= 0:
        return np.empty(0, dtype=np.int64)
    draw = rng.integers(0, pool, size=n, dtype=np.int64)
    if exclude is not None and 0 <= exclude < n_known:
        draw[draw >= exclude] += 1  # skip the excluded index without rejection loops
    return draw


def bpr_loss(
    u: Vec, pos_vec: Vec, pos_bias: float, neg_vecs: NDArray[np.float32], neg_biases: NDArray[np.float32]
) -> float:
    """Mean of -log sigmoid(x_ui - x_uj) over the negatives (no regulariser)."""
    x = _margins(u, pos_vec, pos_bias, np.atleast_2d(neg_vecs), np.atleast_1d(neg_biases))
    return float(np.mean(np.logaddexp(0.0, -x)))


def bpr_user_step(
    params: BPRParams,
    u: Vec,
    pos_item_vec: Vec,
    pos_bias: float,
    neg_item_vecs: NDArray[np.float32],
    neg_biases: NDArray[np.float32],
    weight: float = 1.0,
) -> tuple[Vec, ItemGrads]:
    """One weighted BPR step on the user side; returns the new user vector and the item gradients.

    All gradients use the inputs as given (a simultaneous step), so the item side can apply its
    part later against its own, newer vectors: bounded staleness only perturbs the step.

    >>> import numpy as np
    >>> p = BPRParams(dim=4, negatives=1, lr=0.1)
    >>> u = np.full(4, 0.5, np.float32); vi = np.array([0.5, 0, 0, 0], np.float32)
    >>> vj = np.array([[0, 0.5, 0, 0]], np.float32); bj = np.zeros(1, np.float32)
    >>> new_u, g = bpr_user_step(p, u, vi, 0.0, vj, bj)
    >>> new_vi, new_bi = apply_item_update(p, vi, 0.0, g.pos)
    >>> new_vj, new_bj = apply_item_update(p, vj[0], 0.0, g.neg[0])
    >>> round(bpr_loss(u, vi, 0.0, vj, bj), 4)
    0.6931
    >>> bool(bpr_loss(new_u, new_vi, new_bi, new_vj[None], np.float32([new_bj])) < 0.6931)
    True
    """
    # Project inputs onto the norm ball first: state written under a looser config (or corrupted
    # upstream) cannot blow the step up, and all arithmetic below stays finite.
    u64 = _project(u, params.max_norm)
    vi = _project(pos_item_vec, params.max_norm)
    vj = _project_rows(neg_item_vecs, params.max_norm)
    bi = _clip_scalar(pos_bias, params.max_bias)
    bj = np.clip(np.atleast_1d(np.asarray(neg_biases, dtype=np.float64)), -params.max_bias, params.max_bias)
    x = _margins(u64, vi, bi, vj, bj)
    g = _sigmoid(-x)  # d log sigmoid(x) / dx, one per negative
    grad_u = (g[:, None] * (vi[None, :] - vj)).sum(axis=0)
    step = _project(weight * grad_u, params.grad_clip) - params.reg * u64
    new_u = clip_norm(u64 + params.lr * step, params.max_norm)
    g_sum = float(g.sum())
    neg_vecs = (-g[:, None] * u64[None, :]).astype(np.float32)
    pos = ItemGrad(vec=(g_sum * u64).astype(np.float32), bias=g_sum)
    neg = tuple(ItemGrad(vec=v, bias=-gj) for v, gj in zip(neg_vecs, g.tolist(), strict=True))
    return new_u, ItemGrads(pos=pos, neg=neg)


def apply_item_update(
    params: BPRParams, item_vec: Vec, bias: float, grad: ItemGrad, weight: float = 1.0
) -> tuple[Vec, float]:
    """Apply one item gradient from the user stage: weight, clip, regularise, step, clip the norm."""
    v = _project(item_vec, params.max_norm)
    gv = _project(weight * np.asarray(grad.vec, dtype=np.float64), params.grad_clip)
    gb = _clip_scalar(weight * grad.bias, params.grad_clip)
    b = _clip_scalar(bias, params.max_bias)
    vec = clip_norm(v + params.lr * (gv - params.reg * v), params.max_norm)
    new_bias = _clip_scalar(b + params.lr * (gb - params.reg * b), params.max_bias)
    return vec, new_bias


def apply_item_updates(
    params: BPRParams,
    item_vecs: NDArray[np.float32],
    biases: NDArray[np.floating[Any]],
    grad_vecs: NDArray[np.floating[Any]],
    grad_biases: NDArray[np.floating[Any]],
    weights: float | NDArray[np.floating[Any]] = 1.0,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Row-wise `apply_item_update` for several *distinct* items in one vectorised call.

    For an item stage that coalesces a batch of updates, and for fast replay. Rows must be distinct
    items: two gradients for one item must go through `apply_item_update` one after the other.
    """
    v = _project_rows(item_vecs, params.max_norm)
    n = v.shape[0]
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (n,))
    gv = _project_rows(w[:, None] * np.asarray(grad_vecs, dtype=np.float64).reshape(n, -1), params.grad_clip)
    gb = np.clip(w * np.asarray(grad_biases, dtype=np.float64), -params.grad_clip, params.grad_clip)
    b = np.clip(np.asarray(biases, dtype=np.float64), -params.max_bias, params.max_bias)
    vecs = _project_rows(v + params.lr * (gv - params.reg * v), params.max_norm).astype(np.float32)
    new_b = np.clip(b + params.lr * (gb - params.reg * b), -params.max_bias, params.max_bias).astype(np.float32)
    return vecs, new_b


def _margins(u: NDArray[np.floating[Any]], pos_vec: NDArray[np.floating[Any]], pos_bias: float,
             neg_vecs: NDArray[np.floating[Any]], neg_biases: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    pos = float(np.dot(u, pos_vec)) + float(pos_bias)
    neg = np.asarray(neg_vecs, np.float64) @ np.asarray(u, np.float64)
    return pos - neg - np.asarray(neg_biases, np.float64)


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # tanh form: one ufunc, no overflow for any finite x.
    t: NDArray[np.float64] = np.tanh(0.5 * x)
    return 0.5 * (1.0 + t)

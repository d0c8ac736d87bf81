"""The learner pieces wired together in one process, for offline replay.

The wiring mirrors the job's stages so replay measures what the job will do:
user stage (user vector, recent items, negative sampling, `bpr_user_step`) emits item gradients,
co-occurrence increments and a popularity bump; the item stage applies them. Item gradients can be
held back `item_staleness_events` events to simulate the user stage reading stale item vectors.
Items are dense indices in order of first appearance, so "known items" is the prefix `[0, n)`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from operators.learner.blend import Blend
from operators.learner.bpr import (
    BPRParams,
    ItemGrads,
    Vec,
    apply_item_update,
    apply_item_updates,
    bpr_user_step,
    init_vector,
    key_rng,
    sample_negatives,
)
from operators.learner.cooc import CoocParams, DenseCoOccurrence
from operators.learner.popularity import bump, log_popularity
from operators.learner.rank import top_k
from state_schemas.errors import ConfigError

if TYPE_CHECKING:
    from operators.index.logic import ShardParams

DAY_S = 86_400.0


class ReplayModel(Protocol):
    """What the replay harness needs from a model."""

    def rank(self, user: int, seen: NDArray[np.int64], n_known: int, k: int, now_ts: float) -> NDArray[np.int64]:
        """Top-`k` of items `[0, n_known)` not in `seen`, best first."""
        ...

    def learn(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        """Take one positive interaction into account (after it was tested)."""
        ...


@dataclass(frozen=True, slots=True)
class RecommenderParams:
    """Everything that shapes the blended recommender; the defaults are the tuned ones."""

    bpr: BPRParams = field(default_factory=BPRParams)
    cooc: CoocParams = field(default_factory=CoocParams)
    half_life_s: float = 7 * DAY_S
    blend: Blend = field(default_factory=Blend)
    item_staleness_events: int = 0
    """Item-vector updates reach the user stage this many events late (0 = immediately)."""

    def __post_init__(self) -> None:
        if self.item_staleness_events < 0 or not self.half_life_s > 0:
            msg = (f"RecommenderParams: need item_staleness_events >= 0 and half_life_s > 0, got "
                   f"{self.item_staleness_events!r}, {self.half_life_s!r}.")
            raise ConfigError(msg)


@dataclass(slots=True)
class _User:
    vec: Vec
    recent: list[int]


class OnlineRecommender:
    """Blend of online BPR, recent-item co-occurrence and decayed popularity."""

    def __init__(self, params: RecommenderParams | None = None, seed: int = 7) -> None:
        self.params = params or RecommenderParams()
        self.seed = seed
        p = self.params
        self._rng = np.random.default_rng([seed, 1])  # negative sampling (the user stage's generator)
        self._users: dict[int, _User] = {}
        self._n = 0
        cap = 1024
        self._vecs = np.zeros((cap, p.bpr.dim), dtype=np.float32)
        self._bias = np.zeros(cap, dtype=np.float32)
        self._pop = np.zeros(cap, dtype=np.float64)
        self._pop_ts = np.zeros(cap, dtype=np.float64)
        self._cooc = DenseCoOccurrence(p.cooc, cap)
        # (due event, positive, negatives, gradients, weight): the item stage's input queue
        self._pending: deque[tuple[int, int, NDArray[np.int64], ItemGrads, float]] = deque()
        self._events = 0
        self._keep = max(p.cooc.window, p.cooc.score_window)

    @property
    def n_items(self) -> int:
        """Number of items seen so far."""
        return self._n

    def _ensure_item(self, item: int) -> None:
        while item >= self._n:
            if self._n == self._vecs.shape[0]:
                cap = 2 * self._n
                self._vecs = np.resize(self._vecs, (cap, self.params.bpr.dim))
                self._bias, self._pop, self._pop_ts = (np.resize(self._bias, cap), np.resize(self._pop, cap),
                                                       np.resize(self._pop_ts, cap))
            # The item stage initialises from its key alone, so the user stage can reproduce it.
            self._vecs[self._n] = init_vector(self.params.bpr, key_rng(self.seed, "item", self._n))
            self._bias[self._n] = 0.0
            self._pop[self._n] = 0.0
            self._pop_ts[self._n] = 0.0
            self._n += 1

    def _user(self, user: int) -> _User:
        u = self._users.get(user)
        if u is None:
            u = _User(vec=init_vector(self.params.bpr, key_rng(self.seed, "user", user)), recent=[])
            self._users[user] = u
        return u

    def components(self, user: int, n_known: int, now_ts: float) -> dict[str, NDArray[np.float64]]:
        """Raw component scores for items `[0, n_known)` (before z-scoring)."""
        n = min(n_known, self._n)
        u = self._users.get(user)
        out: dict[str, NDArray[np.float64]] = {}
        if u is not None:
            out["bpr"] = (self._vecs[:n] @ u.vec + self._bias[:n]).astype(np.float64)
            out["cooc"] = self._cooc.scores(u.recent, n)
        out["pop"] = log_popularity(self._pop[:n], self._pop_ts[:n], now_ts, self.params.half_life_s)
        return out

    def rank(self, user: int, seen: NDArray[np.int64], n_known: int, k: int, now_ts: float) -> NDArray[np.int64]:
        """Top-`k` known items the user has not seen, by the blended z-scores."""
        comps = self.components(user, n_known, now_ts)
        n = min(n_known, self._n)
        mask = np.ones(n, dtype=bool)
        s = np.asarray(seen, dtype=np.int64)
        mask[s[s < n]] = False
        cand = np.flatnonzero(mask)
        blended = self.params.blend.score({name: c[cand] for name, c in comps.items()})
        return cand[top_k(blended, k)]

    def learn(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        """Test-then-learn step: user stage, then item stage (possibly delayed for vectors)."""
        p = self.params
        n_before = self._n
        self._ensure_item(item)
        u = self._user(user)
        # --- user stage ---
        neg = sample_negatives(self._rng, n_before, p.bpr.negatives, exclude=item)
        if neg.size:
            new_u, grads = bpr_user_step(p.bpr, u.vec, self._vecs[item], float(self._bias[item]),
                                         self._vecs[neg], self._bias[neg], weight)
            u.vec = new_u
            self._pending.append((self._events + p.item_staleness_events, item, neg, grads, weight))
        self._cooc.update(u.recent, item, weight)
        u.recent.append(item)
        if len(u.recent) > self._keep:
            del u.recent[: len(u.recent) - self._keep]
        # --- item stage ---
        self._pop[item], self._pop_ts[item] = bump(float(self._pop[item]), float(self._pop_ts[item]), ts,
                                                   p.half_life_s, weight)
        while self._pending and self._pending[0][0] <= self._events:
            _, pos, neg, grads, w = self._pending.popleft()
            self._apply_item_grads(pos, neg, grads, w)
        self._events += 1

    def _apply_item_grads(self, pos: int, neg: NDArray[np.int64], grads: ItemGrads, weight: float) -> None:
        """Item stage for one user step: one vectorised call when the items are distinct."""
        items = np.concatenate(([pos], neg))
        if np.unique(items).size == items.size:
            gv = np.stack([grads.pos.vec, *(g.vec for g in grads.neg)])
            gb = np.array([grads.pos.bias, *(g.bias for g in grads.neg)])
            self._vecs[items], self._bias[items] = apply_item_updates(
                self.params.bpr, self._vecs[items], self._bias[items], gv, gb, weight
            )
            return
        for j, g in grads.per_item(pos, neg):  # a repeated negative: apply its updates in order
            self._vecs[j], self._bias[j] = apply_item_update(self.params.bpr, self._vecs[j], float(self._bias[j]),
                                                             g, weight)


class MostPopular:
    """Baseline: items ranked by interaction count so far."""

    def __init__(self) -> None:
        self._counts = np.zeros(1024, dtype=np.float64)

    def rank(self, user: int, seen: NDArray[np.int64], n_known: int, k: int, now_ts: float) -> NDArray[np.int64]:
        """Top-`k` most interacted-with known items the user has not seen."""
        return top_k(self._counts[:n_known], k, exclude=seen)

    def learn(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        """Count one interaction (unweighted: this is the project's reference baseline)."""
        if item >= self._counts.size:
            grown = np.zeros(max(item + 1, 2 * self._counts.size), dtype=np.float64)
            grown[: self._counts.size] = self._counts
            self._counts = grown
        self._counts[item] += 1.0


class ServedRecommender(OnlineRecommender):
    """The same learner, ranked the way the job serves: through one `operators.index.logic.IndexShard`.

    Why: the job's online evaluation ranks with the index shard (HNSW candidates + the blend), not with
    the exhaustive blend; replaying this model offline gives the figure the pipeline must reproduce.
    The shard gets each interaction before the item stage's update, like the job's index operator.
    """

    def __init__(self, params: RecommenderParams | None = None, seed: int = 7,
                 shard_params: ShardParams | None = None, personalize_after: int = 1, recent_items: int = 20) -> None:
        from operators.index.logic import IndexShard, ShardParams

        super().__init__(params, seed)
        self.personalize_after = personalize_after
        self.recent_items = recent_items
        self._count: dict[int, int] = {}
        self._recent_all: dict[int, list[int]] = {}
        p = self.params
        sp = shard_params or ShardParams(
            bpr=p.bpr, cooc=p.cooc, half_life_ms=p.half_life_s, weights=p.blend, seed=seed
        )
        self.shard = IndexShard(0, 1, sp)
        self._touched: set[int] = set()

    def rank(self, user: int, seen: NDArray[np.int64], n_known: int, k: int, now_ts: float) -> NDArray[np.int64]:
        """Top-`k` unseen known items, as the index shard ranks them."""
        from state_schemas.item_vector import ItemVector
        from state_schemas.messages import QueryMsg

        for j in sorted(self._touched):
            self.shard.apply_vector(str(j), ItemVector.from_array(self._vecs[j], bias=float(self._bias[j]),
                                                                  seq=int(self.shard.seq[self.shard.pos[str(j)]]) + 1))
        self._touched.clear()
        u = self._users.get(user)
        vec = u.vec if u is not None else None
        if u is not None and self._count.get(user, 0) < self.personalize_after:
            # the job's session rung: unit mean of the recent items' vectors, as the user stage holds them
            mean = self._vecs[self._recent_all[user][-self.recent_items :]].astype(np.float64).mean(axis=0)
            norm = float(np.linalg.norm(mean))
            vec = (mean / norm).astype(np.float32) if norm > 1e-12 else None
        seeds = tuple(str(i) for i in u.recent) if u is not None else ()
        q = QueryMsg("q", str(user), "request", k, "personalized", int(now_ts), vec,
                     tuple(str(int(i)) for i in seen), None, seeds)
        return np.array([int(i) for i, _ in self.shard.rank(q).ranked], dtype=np.int64)

    def learn(self, user: int, item: int, ts: float, weight: float = 1.0) -> None:
        """Interaction share to the shard (popularity, pairs), then the learner's step."""
        from operators.learner.cooc import pair_messages
        from state_schemas.messages import InteractionMsg

        u = self._users.get(user)
        recent = u.recent if u is not None else []
        pairs = tuple((str(o), str(p), w) for o, p, w in pair_messages(recent, item, self.params.cooc.window, weight))
        self.shard.apply_interaction(InteractionMsg(str(item), int(ts), weight, None, pairs))
        self._count[user] = self._count.get(user, 0) + 1
        r = self._recent_all.setdefault(user, [])
        if item in r:
            r.remove(item)
        r.append(item)
        super().learn(user, item, ts, weight)

    def _apply_item_grads(self, pos: int, neg: NDArray[np.int64], grads: ItemGrads, weight: float) -> None:
        super()._apply_item_grads(pos, neg, grads, weight)
        self._touched.add(int(pos))
        self._touched.update(int(j) for j in neg)

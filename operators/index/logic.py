"""One shard of the serving index: live item vectors in HNSW, popularity, co-occurrence, and ranking.

Pure: no pyflink import. The Flink adapter (`operators.index.flink`) keys this by shard, feeds it the
user stage's interaction shares and queries and the item stage's vectors, persists every change in
keyed state (`state_schemas.index_entry` per item, co-occurrence cells as `state_schemas.cooc_log` blobs) and rebuilds a
shard from that state after a restore or a rescale (`IndexShard.restore`).

Ranking is the offline learner's blend (`operators.learner.recommender.OnlineRecommender.rank`):
z-scores over the candidates of BPR score ``u·v + b``, co-occurrence with the user's recent items and
log decayed popularity, weighted by `operators.learner.blend.DEFAULT_WEIGHTS`. The candidates are the
eligible items (known, not excluded, in the filter's category) when there are at most
``exact_below`` of them, otherwise the union of the HNSW top ``candidates`` by ``[u, 1]·[v, b]``, the
top ``candidates`` by co-occurrence and the top ``candidates`` by popularity. The HNSW index holds
``[v, b]`` so an inner-product search ranks by the BPR score itself, bias included.

Sharding: item ``i`` lives in shard ``shard_of(i, shards)`` (crc32, stable across processes and
Python versions). A co-occurrence pair ``(owner, partner)`` is stored by the owner's shard and indexed
by partner, so a shard scores its own items against any seed without seeing other shards.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from operators.ann.index import AnnIndex
from operators.items.logic import initial_item
from operators.learner.blend import DEFAULT_WEIGHTS, Blend
from operators.learner.bpr import BPRParams
from operators.learner.cooc import CoocParams, recency_weights
from operators.learner.popularity import decay, log_popularity
from operators.learner.rank import top_k
from state_schemas.errors import ConfigError
from state_schemas.index_entry import IndexEntry
from state_schemas.item_vector import ItemVector
from state_schemas.messages import InteractionMsg, PartialMsg, QueryMsg

WEEK_MS: Final = 7 * 86_400_000
_exp2: Final = math.exp2
# Rebuild the HNSW graph instead of moving vectors once more than 1 / REBUILD_SHARE of the items changed
# (hnswlib here: ~1,000 in-place moves/s against ~15,000 inserts/s into a fresh graph).
REBUILD_SHARE: Final = 10


def shard_of(item_id: str, shards: int) -> int:
    """The shard that owns ``item_id`` (stable: crc32 of its UTF-8 bytes).

    >>> shard_of("item-1", 1), shard_of("item-1", 4) == shard_of("item-1", 4)
    (0, True)
    """
    return zlib.crc32(item_id.encode()) % shards if shards > 1 else 0


@dataclass(frozen=True, slots=True)
class ShardParams:
    """Tuning of one shard; the defaults mirror the offline learner's tuned settings."""

    bpr: BPRParams = field(default_factory=BPRParams)
    cooc: CoocParams = field(default_factory=CoocParams)
    half_life_ms: float = float(WEEK_MS)
    weights: Blend = field(default_factory=lambda: Blend(DEFAULT_WEIGHTS))
    candidates: int = 200
    exact_below: int = 0  # rank every eligible item when there are at most this many (0: always use HNSW)
    seed: int = 7

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.exact_below < 0 or not self.half_life_ms > 0:
            msg = (f"ShardParams: need candidates >= 1, exact_below >= 0, half_life_ms > 0; got {self.candidates}, "
                   f"{self.exact_below}, {self.half_life_ms}. Fix the index settings.")
            raise ConfigError(msg)


class IndexShard:
    """Everything one shard serves from, in dense arrays (fast), mirrored to keyed state by the adapter."""

    def __init__(self, shard: int, shards: int, params: ShardParams | None = None) -> None:
        if not 0 <= shard < shards:
            msg = f"IndexShard: shard {shard} outside [0, {shards}); check the index_shards setting."
            raise ConfigError(msg)
        self.shard, self.shards = shard, shards
        self.params = p = params or ShardParams()
        self.dim = p.bpr.dim
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        cap = 1024
        self.vecs = np.zeros((cap, self.dim + 1), dtype=np.float32)  # [v, b]
        self.seq = np.zeros(cap, dtype=np.uint64)
        self.pop = np.zeros(cap, dtype=np.float64)
        self.pop_ts = np.zeros(cap, dtype=np.float64)
        self.count = np.zeros(cap, dtype=np.float64)
        self.weight = np.zeros(cap, dtype=np.float64)
        self.cats: list[str] = []
        self.by_partner: dict[str, dict[int, float]] = {}
        self.ann = AnnIndex(self.dim + 1, random_seed=p.seed)
        self._dirty: set[int] = set()
        self.mutations = 0

    # -- state -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def owns(self, item_id: str) -> bool:
        """True when ``item_id`` belongs to this shard."""
        return shard_of(item_id, self.shards) == self.shard

    @property
    def version(self) -> str:
        """Index version for answers: shard, number of items and mutations since this instance started."""
        return f"s{self.shard}/{self.shards}:n{len(self.ids)}:m{self.mutations}"

    def _slot(self, item_id: str) -> int:
        i = self.pos.get(item_id)
        if i is not None:
            return i
        i = len(self.ids)
        if i == self.vecs.shape[0]:
            cap = 2 * i
            self.vecs = np.resize(self.vecs, (cap, self.dim + 1))
            self.seq, self.pop, self.pop_ts, self.count, self.weight = (
                np.resize(self.seq, cap), np.resize(self.pop, cap), np.resize(self.pop_ts, cap),
                np.resize(self.count, cap), np.resize(self.weight, cap),
            )
        init = initial_item(self.params.bpr, item_id, self.params.seed)  # what the item stage starts from
        self.vecs[i, : self.dim] = init.as_array()
        self.vecs[i, self.dim] = init.bias
        self.seq[i] = 0
        self.pop[i] = self.pop_ts[i] = self.count[i] = self.weight[i] = 0.0
        self.ids.append(item_id)
        self.cats.append("")
        self.pos[item_id] = i
        self._dirty.add(i)
        return i

    def entry(self, item_id: str) -> IndexEntry:
        """The keyed-state value of an item this shard holds."""
        i = self.pos[item_id]
        return IndexEntry(
            vector=self.vecs[i, : self.dim].astype("<f4").tobytes(),
            bias=float(self.vecs[i, self.dim]),
            vector_seq=int(self.seq[i]),
            popularity=float(self.pop[i]),
            popularity_ts=int(self.pop_ts[i]),
            count=int(self.count[i]),
            weight=float(self.weight[i]),
            category=self.cats[i],
            ordinal=i,
        )

    def apply_interaction(self, m: InteractionMsg, cells: dict[tuple[str, str], float] | None = None) -> list[str]:
        """Take one interaction share; returns the items whose entry changed.

        ``cells`` receives the new value of every co-occurrence cell it changed, keyed (owner, partner):
        the caller collects a whole batch's cells in one dict and writes each cell once.
        """
        changed: list[str] = []
        if m.item_id is not None:
            i = self._slot(m.item_id)
            # `popularity.bump` on Python floats: numpy scalar arithmetic costs ~10x more per call
            value, last, now, w = float(self.pop[i]), float(self.pop_ts[i]), float(m.ts), m.weight
            hl = self.params.half_life_ms
            if now >= last:
                self.pop[i], self.pop_ts[i] = value * _exp2((last - now) / hl) + w, now
            else:
                self.pop[i] = value + w * _exp2((now - last) / hl)
            self.count[i] += 1.0
            self.weight[i] += w
            if m.category:
                self.cats[i] = m.category
            changed.append(m.item_id)
        mine = self.shards == 1
        pos, by_partner = self.pos, self.by_partner
        for owner, partner, w in m.pairs:
            if not mine and not self.owns(owner):
                continue
            o = pos.get(owner)
            if o is None:
                o = self._slot(owner)
                changed.append(owner)
            row = by_partner.get(partner)
            if row is None:
                row = by_partner[partner] = {}
            v = row[o] = row.get(o, 0.0) + w
            if cells is not None:
                cells[owner, partner] = v
        self.mutations += 1
        return changed

    def cooc_cells(self) -> list[tuple[str, str, float]]:
        """Every co-occurrence cell as (owner, partner, value): what `restore` takes back."""
        ids = self.ids
        return [(ids[o], partner, v) for partner, row in self.by_partner.items() for o, v in row.items()]

    def apply_vector(self, item_id: str, state: ItemVector) -> bool:
        """Take the item stage's vector of an item if it is newer than the one held; True if taken."""
        i = self.pos.get(item_id)
        if i is not None and int(self.seq[i]) >= state.seq:
            return False
        if i is None:
            i = self._slot(item_id)
        vec = state.as_array()
        if vec.shape[0] != self.dim:
            msg = (f"index shard {self.shard}: item {item_id!r} has a {vec.shape[0]}-d vector, the index is "
                   f"{self.dim}-d; embedding_dim differs between the item stage and the index settings.")
            raise ConfigError(msg)
        self.vecs[i, : self.dim] = vec
        self.vecs[i, self.dim] = state.bias
        self.seq[i] = state.seq
        self._dirty.add(i)
        self.mutations += 1
        return True

    @classmethod
    def restore(
        cls,
        shard: int,
        shards: int,
        params: ShardParams,
        entries: Iterable[tuple[str, IndexEntry]],
        cooc: Iterable[tuple[str, str, float]],
    ) -> IndexShard:
        """A shard rebuilt from keyed state, items in their original order (bit-identical scores).

        A rescale of the job moves whole shard keys, so this holds across rescales too. Changing
        ``index_shards`` is different: items would sit in shards that no longer own them; it needs a
        fresh index (docs/operations.md).
        """
        s = cls(shard, shards, params)
        for item_id, e in sorted(entries, key=lambda p: (p[1].ordinal, p[0])):
            i = s._slot(item_id)
            s.vecs[i, : s.dim] = e.as_array()
            s.vecs[i, s.dim] = e.bias
            s.seq[i] = e.vector_seq
            s.pop[i], s.pop_ts[i], s.count[i], s.weight[i] = e.popularity, e.popularity_ts, e.count, e.weight
            s.cats[i] = e.category
        for owner, partner, value in cooc:
            o = s.pos.get(owner)
            if o is None:
                o = s._slot(owner)
            s.by_partner.setdefault(partner, {})[o] = value
        s.sync_index()
        return s

    def sync_index(self) -> int:
        """Push changed vectors into HNSW in one batch (single inserts are slow); returns how many."""
        if not self._dirty:
            return 0
        idx = sorted(self._dirty)
        n = len(self.ids)
        if len(idx) * REBUILD_SHARE > n:  # moving this many vectors in place costs more than a fresh graph
            self.ann.replace_all(self.ids, self.vecs[:n])
        else:
            self.ann.upsert_many([self.ids[i] for i in idx], self.vecs[idx])
        self._dirty.clear()
        return len(idx)

    # -- ranking -----------------------------------------------------------------------------------

    def _cooc_scores(self, seeds: tuple[str, ...], n: int) -> NDArray[np.float64] | None:
        seeds = seeds[-self.params.cooc.score_window :]
        if not seeds:
            return None
        out = np.zeros(n, dtype=np.float64)
        for w, s in zip(recency_weights(len(seeds), self.params.cooc.recency), seeds, strict=True):
            row = self.by_partner.get(s)
            if row:
                idx = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
                out[idx] += float(w) * np.fromiter(row.values(), dtype=np.float64, count=len(row))
        if self.params.cooc.alpha:
            out /= np.maximum(self.weight[:n], 1.0) ** self.params.cooc.alpha
        return out

    def rank(self, q: QueryMsg) -> PartialMsg:
        """This shard's partial answer to ``q``: blended top-k, trending top-k and (eval) the baseline."""
        n = len(self.ids)
        known = self.count[:n] > 0
        eligible = known.copy()
        for item in q.exclude:
            i = self.pos.get(item)
            if i is not None:
                eligible[i] = False
        if q.category is not None:
            eligible &= np.array([c == q.category for c in self.cats], dtype=bool)
        target_known = q.target is not None and q.target in self.pos and bool(known[self.pos[q.target]])
        elig = np.flatnonzero(eligible)
        now = float(q.ts)
        ranked: list[tuple[str, float]] = []
        trending: list[tuple[str, float]] = []
        baseline: list[tuple[str, float]] = []
        if elig.size:
            pop_now = decay(self.pop[elig], self.pop_ts[elig], now, self.params.half_life_ms)
            t = top_k(np.where(pop_now > 0, pop_now, -np.inf), q.k)
            trending = [(self.ids[elig[j]], float(pop_now[j])) for j in t]
            if q.kind == "eval":
                b = top_k(self.count[elig], q.k)
                baseline = [(self.ids[elig[j]], float(self.count[elig[j]])) for j in b]
            ranked = self._blend(q, elig, eligible)
        return PartialMsg(
            q.qid, q.user_id, q.kind, q.k, q.source, q.ts, q.fresh, q.target, self.shard, self.shards,
            tuple(ranked), tuple(trending), tuple(baseline), target_known, self.version, "", q.digest,
        )

    def _blend(self, q: QueryMsg, elig: NDArray[np.int64], eligible: NDArray[np.bool_]) -> list[tuple[str, float]]:
        p = self.params
        n = len(self.ids)
        cooc = self._cooc_scores(q.seeds, n)
        if q.vector is None and cooc is None:
            return []  # nothing personal to rank by: the gather step falls back to trending
        if elig.size <= p.exact_below:
            cand = elig
        else:
            parts = []
            if q.vector is not None:
                # No exclusion set in the graph search (over-fetching by a user's whole history costs a
                # near-exhaustive search); ineligible hits are dropped here, co-occurrence and popularity
                # candidates make up the rest.
                self.sync_index()
                hits = self.ann.query(np.append(q.vector, np.float32(1.0)), p.candidates)
                found = np.fromiter((self.pos[i] for i, _ in hits), dtype=np.int64, count=len(hits))
                parts.append(found[eligible[found]])
            if cooc is not None:
                parts.append(elig[top_k(np.where(cooc[elig] > 0, cooc[elig], -np.inf), p.candidates)])
            pop_log = log_popularity(self.pop[elig], self.pop_ts[elig], float(q.ts), p.half_life_ms)
            parts.append(elig[top_k(pop_log, p.candidates)])
            cand = np.unique(np.concatenate(parts))
        comps: dict[str, NDArray[np.float64]] = {
            "pop": log_popularity(self.pop[cand], self.pop_ts[cand], float(q.ts), p.half_life_ms)
        }
        if q.vector is not None:
            qv = np.append(np.asarray(q.vector, dtype=np.float32), np.float32(1.0))
            comps["bpr"] = (self.vecs[cand] @ qv).astype(np.float64)
        if cooc is not None:
            comps["cooc"] = cooc[cand]
        scores = p.weights.score(comps)
        return [(self.ids[cand[j]], float(scores[j])) for j in top_k(scores, q.k)]


def interaction_shares(
    recent: tuple[str, ...], item_id: str, ts: int, weight: float, category: str | None, *, window: int, shards: int
) -> list[tuple[int, InteractionMsg]]:
    """What each shard must learn from one interaction: its item's popularity and the pairs it owns.

    ``recent`` is the user's recent items before this one, oldest first; the last ``window`` distinct
    ones pair with ``item_id`` in both directions (`operators.learner.cooc.pair_messages`, on ids).

    >>> [(s, m.item_id, m.pairs) for s, m in interaction_shares(("a", "b"), "c", 5, 1.0, None, window=1, shards=1)]
    [(0, 'c', (('c', 'b', 1.0), ('b', 'c', 1.0)))]
    """
    partners: dict[str, None] = {}
    for j in recent[-window:]:
        if j != item_id:
            partners.pop(j, None)
            partners[j] = None
    by_shard: dict[int, list[tuple[str, str, float]]] = {}
    for j in partners:
        by_shard.setdefault(shard_of(item_id, shards), []).append((item_id, j, weight))
        by_shard.setdefault(shard_of(j, shards), []).append((j, item_id, weight))
    own = shard_of(item_id, shards)
    by_shard.setdefault(own, [])
    return [
        (s, InteractionMsg(item_id if s == own else None, ts, weight, category, tuple(pairs)))
        for s, pairs in sorted(by_shard.items())
    ]


def split_vector_batch(data: bytes, shards: int) -> list[tuple[int, bytes]]:
    """A VectorBatch of the item stage as one VectorBatch per index shard that owns some of its items."""
    from state_schemas.messages import decode_vector_batch, decode_vector_msg, encode_vector_batch

    if shards == 1:
        return [(0, data)]
    by_shard: dict[int, list[bytes]] = {}
    for msg in decode_vector_batch(data):
        by_shard.setdefault(shard_of(decode_vector_msg(msg)[0], shards), []).append(msg)
    return [(s, encode_vector_batch(m)) for s, m in sorted(by_shard.items())]


@dataclass(slots=True)
class BatchOut:
    """What one batch did to a shard: partial answers in query order and the state entries to write."""

    partials: list[PartialMsg] = field(default_factory=list)
    items: set[str] = field(default_factory=set)  # items whose IndexEntry changed
    cells: dict[tuple[str, str], float] = field(default_factory=dict)  # co-occurrence cells, last value
    vectors: int = 0


def apply_batch(shard: IndexShard, records: list[bytes]) -> BatchOut:
    """Queries, interaction shares and item vectors of one batch, in order: rank, learn, take vectors."""
    from state_schemas.codec import TAGS
    from state_schemas.messages import decode_interaction, decode_query, decode_vector_msg

    query, interaction, vector = TAGS["query_msg"], TAGS["interaction_msg"], TAGS["item_vector_msg"]
    out = BatchOut()
    for record in records:
        tag = record[0]
        if tag == query:
            out.partials.append(shard.rank(decode_query(record)))
        elif tag == interaction:
            out.items.update(shard.apply_interaction(decode_interaction(record), out.cells))
        elif tag == vector:
            item_id, _ts, state = decode_vector_msg(record)
            if shard.apply_vector(item_id, state):
                out.vectors += 1
                out.items.add(item_id)
        else:
            msg = f"index shard {shard.shard}: record with tag {tag}: the job graph routes a foreign record here"
            raise ValueError(msg)
    return out

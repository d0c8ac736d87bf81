"""One shard of the serving index: live item vectors in HNSW, popularity, co-occurrence, and ranking.

Pure: no pyflink import. The Flink adapter (`operators.index.flink`) keys this by shard, feeds it the
user stage's batches (`state_schemas.shares`: the batch's queries, then its interaction shares as
arrays, learned in one vectorised step) and the item stage's vectors, persists what each batch changed
as one `state_schemas.index_log` blob (plus periodic snapshots) and rebuilds a shard from that state
after a restore or a rescale (`IndexShard.restore`).

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

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from operators.ann.index import AnnIndex
from operators.index.cells import Cells
from operators.items.logic import initial_item
from operators.learner.blend import DEFAULT_WEIGHTS, Blend
from operators.learner.bpr import BPRParams
from operators.learner.cooc import CoocParams, recency_weights
from operators.learner.popularity import bump_many, decay, log_popularity
from operators.learner.rank import top_k
from state_schemas.errors import ConfigError
from state_schemas.index_entry import IndexEntry
from state_schemas.index_log import IndexLog
from state_schemas.item_cols import ItemCols
from state_schemas.item_vector import ItemVector
from state_schemas.messages import InteractionMsg, PartialMsg, QueryMsg
from state_schemas.shares import ShareBatch, ShareBuilder, encode_builder
from state_schemas.shares import decode as decode_shares

WEEK_MS: Final = 7 * 86_400_000
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
    # BPR candidates by an exact scan of the eligible items (one matrix-vector product) when the shard holds
    # at most this many items, from the HNSW graph above it: at a few thousand items the scan costs tens of
    # microseconds where a graph search for `candidates` hits costs most of a millisecond.
    scan_below: int = 10_000
    seed: int = 7

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.exact_below < 0 or self.scan_below < 0 or not self.half_life_ms > 0:
            msg = (f"ShardParams: need candidates >= 1, exact_below >= 0, scan_below >= 0, half_life_ms > 0; got "
                   f"{self.candidates}, {self.exact_below}, {self.scan_below}, {self.half_life_ms}. Fix the index "
                   "settings.")
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
        self.cells = Cells()
        self.ann = AnnIndex(self.dim + 1, random_seed=p.seed)
        self._dirty: set[int] = set()
        self.mutations = 0
        # Whether `rank` pushes changed vectors into the graph first. The job's adapter turns this off and
        # refreshes the graph on a time budget instead (`sync_index`, every `index_refresh_ms`): a graph
        # rebuild costs tens of milliseconds, and candidates from a graph a second old are scored with the
        # current vectors anyway.
        self.auto_sync = True

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
        """An item's values as release 0.2's keyed-state entry (tools and tests)."""
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

    def apply_interaction(self, m: InteractionMsg) -> list[str]:
        """Take one interaction share (one event: the offline replay and tests); returns the items it changed.

        The job applies whole batches with `apply_shares`, through the same code.
        """
        b = ShareBuilder()
        if m.item_id is not None:
            b.add_pop(m.item_id, m.ts, m.weight, m.category)
        for owner, partner, w in m.pairs:
            if self.shards == 1 or self.owns(owner):
                b.add_pair(owner, partner, w)
        before = len(self.ids)
        items, _ = self.apply_shares(decode_shares(encode_builder(b)))
        return [self.ids[i] for i in sorted({*items.tolist(), *range(before, len(self.ids))})]

    def apply_shares(self, batch: ShareBatch) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Learn a batch's shares (`state_schemas.shares`); returns (changed item ordinals, changed cell slots)."""
        return self.learn(batch.strings, batch.pop_item, batch.pop_ts, batch.pop_w, batch.pop_cat,
                          batch.pair_a, batch.pair_b, batch.pair_w)

    def learn(self, strings: list[str], pop_item: NDArray[np.int32], pop_ts: NDArray[np.int64],
              pop_w: NDArray[np.float64], pop_cat: NDArray[np.int32], pair_a: NDArray[np.int32],
              pair_b: NDArray[np.int32], pair_w: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Popularity, counts, categories and co-occurrence of a batch, vectorised.

        Popularity is `popularity.bump_many` (order-independent, like the per-event rule); a pair (a, b)
        adds its weight to the cell (a, b) when this shard owns a and to (b, a) when it owns b. Returns the
        ordinals of the items whose values changed (new items included) and the changed cell slots.
        """
        ns = len(strings)
        before = len(self.ids)
        ordinal = np.full(ns, -1, dtype=np.int64)
        owned = np.zeros(ns, dtype=bool)
        owned[pop_item] = True  # the user stage sends an item's popularity to its owner only
        sides = np.unique(np.concatenate([pair_a, pair_b]))
        if self.shards == 1:
            owned[sides] = True
        else:
            for j in sides.tolist():
                owned[j] = owned[j] or self.owns(strings[j])
        idx = np.flatnonzero(owned)
        pos = self.pos
        ordinal[idx] = [pos.get(strings[j], -1) for j in idx.tolist()]
        for j in idx[ordinal[idx] < 0].tolist():
            ordinal[j] = self._slot(strings[j])
        changed = [np.arange(before, len(self.ids), dtype=np.int64)]
        if pop_item.size:
            it = ordinal[pop_item]
            changed.append(bump_many(self.pop, self.pop_ts, it, pop_ts.astype(np.float64), pop_w,
                                     self.params.half_life_ms))
            np.add.at(self.count, it, 1.0)
            np.add.at(self.weight, it, pop_w)
            has = np.flatnonzero(pop_cat >= 0)
            if has.size:  # the last category given for an item in the batch wins
                last_items, first = np.unique(it[has][::-1], return_index=True)
                cats = self.cats
                for o, c in zip(last_items.tolist(), pop_cat[has][::-1][first].tolist(), strict=True):
                    cats[o] = strings[c]
        slots = np.zeros(0, dtype=np.int64)
        if pair_a.size:
            own_a, own_b = owned[pair_a], owned[pair_b]
            if self.shards == 1:
                owners = np.concatenate([ordinal[pair_a], ordinal[pair_b]])
                partner_idx = np.concatenate([pair_b, pair_a])
                weights = np.concatenate([pair_w, pair_w])
            else:
                owners = np.concatenate([ordinal[pair_a[own_a]], ordinal[pair_b[own_b]]])
                partner_idx = np.concatenate([pair_b[own_a], pair_a[own_b]])
                weights = np.concatenate([pair_w[own_a], pair_w[own_b]])
            used = np.unique(partner_idx)
            pord = np.zeros(ns, dtype=np.int64)
            pord[used] = self.cells.partner_ordinals([strings[j] for j in used.tolist()])
            slots = self.cells.add(owners, pord[partner_idx], weights)
        self.mutations += int(pop_item.size + pair_a.size)
        return np.unique(np.concatenate(changed)), slots

    def cooc_cells(self) -> list[tuple[str, str, float]]:
        """Every co-occurrence cell as (owner, partner, value), in creation order (tools and tests)."""
        owners, partners, values = self.cells.triples()
        ids, pids = self.ids, self.cells.partners
        return [(ids[o], pids[p], v) for o, p, v in zip(owners.tolist(), partners.tolist(), values.tolist(),
                                                         strict=True)]

    def cooc_rows(self) -> dict[str, dict[int, float]]:
        """Partner -> {owner ordinal: value}, the cells as release 0.2 held them (tests compare with this)."""
        out: dict[str, dict[int, float]] = {}
        for owner, partner, value in self.cooc_cells():
            out.setdefault(partner, {})[self.pos[owner]] = value
        return out

    def apply_vector(self, item_id: str, state: ItemVector) -> bool:
        """Take the item stage's vector of an item if it is newer than the one held; True if taken."""
        vec = state.as_array()
        taken = self.apply_vectors([item_id], np.array([state.seq], dtype=np.uint64), vec[None, :],
                                   np.array([state.bias], dtype=np.float32))
        return bool(taken.size)

    def apply_vectors(self, item_ids: list[str], seq: NDArray[np.uint64], vecs: NDArray[np.float32],
                      bias: NDArray[np.float32]) -> NDArray[np.int64]:
        """Take the vectors that are newer (higher seq) than the ones held; returns the ordinals taken."""
        if vecs.ndim != 2 or (vecs.shape[0] and vecs.shape[1] != self.dim):
            msg = (f"index shard {self.shard}: item vectors of shape {vecs.shape}, the index is {self.dim}-d; "
                   "embedding_dim differs between the item stage and the index settings.")
            raise ConfigError(msg)
        pos = self.pos
        rows = np.fromiter((pos.get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))
        newer = (rows < 0) | (self.seq[np.maximum(rows, 0)] < seq)
        if not newer.any():
            return np.zeros(0, dtype=np.int64)
        take = np.flatnonzero(newer)
        for j in take[rows[take] < 0].tolist():
            rows[j] = self._slot(item_ids[j])
        r = rows[take]
        self.vecs[r, : self.dim] = vecs[take]
        self.vecs[r, self.dim] = bias[take]
        self.seq[r] = seq[take]
        self._dirty.update(r.tolist())
        self.mutations += int(take.size)
        return r

    # -- persistence ---------------------------------------------------------------------------------

    def delta(self, items: NDArray[np.int64], slots: NDArray[np.int64]) -> IndexLog:
        """The values of these items and cells as an `IndexLog` blob's content (what a batch changed).

        The string table holds the ids of the items and cell owners involved, then the partners, then the
        categories (an id can appear as an owner and as a partner); indices are found with numpy.
        """
        ids, cats = self.ids, self.cats
        items = np.asarray(items, dtype=np.int64)
        owners, partners, values = self.cells.triples(np.asarray(slots, dtype=np.int64))
        own = np.unique(np.concatenate([items, owners.astype(np.int64)]))
        par = np.unique(partners)
        item_cats = [cats[i] for i in items.tolist()]
        cat_pos = {c: j for j, c in enumerate(dict.fromkeys(c for c in item_cats if c))}
        pids = self.cells.partners
        strings = (*(ids[i] for i in own.tolist()), *(pids[p] for p in par.tolist()), *cat_pos)
        base = own.shape[0] + par.shape[0]
        return IndexLog(
            strings=strings, item=np.searchsorted(own, items).astype(np.int32), ordinal=items.astype(np.uint32),
            seq=self.seq[items], pop=self.pop[items], pop_ts=self.pop_ts[items], count=self.count[items],
            weight=self.weight[items], bias=self.vecs[items, self.dim],
            category=np.array([base + cat_pos[c] if c else -1 for c in item_cats], dtype=np.int32),
            vecs=self.vecs[items, : self.dim],
            cell_owner=np.searchsorted(own, owners).astype(np.int32),
            cell_partner=(own.shape[0] + np.searchsorted(par, partners)).astype(np.int32), cell_value=values,
        )

    def snapshot(self) -> IndexLog:
        """Every item and every cell, as one `IndexLog` (what a compaction writes)."""
        return self.delta(np.arange(len(self.ids), dtype=np.int64), np.arange(len(self.cells), dtype=np.int64))

    @classmethod
    def restore(
        cls,
        shard: int,
        shards: int,
        params: ShardParams,
        entries: Iterable[tuple[str, IndexEntry]] = (),
        cooc: Iterable[tuple[str, str, float]] = (),
        logs: Iterable[IndexLog] = (),
    ) -> IndexShard:
        """A shard rebuilt from keyed state, items in their original order (bit-identical scores).

        ``entries`` and ``cooc`` are the layouts of releases 0.1/0.2 ("index-items", "index-cooc",
        "index-cooc-log"), read first; then ``logs`` (`state_schemas.index_log` snapshot and batch blobs)
        in order, a later value of an item or a cell replacing an earlier one.

        A rescale of the job moves whole shard keys, so this holds across rescales too. Changing
        ``index_shards`` is different: items would sit in shards that no longer own them; it needs a
        fresh index (docs/operations.md).
        """
        s = cls(shard, shards, params)
        d = s.dim
        items: dict[str, tuple[int, int, float, float, float, float, float, str, NDArray[np.float32]]] = {}
        for item_id, e in entries:
            items[item_id] = (e.ordinal, e.vector_seq, e.popularity, float(e.popularity_ts), float(e.count),
                              e.weight, e.bias, e.category, e.as_array())
        cell_o: list[str] = []
        cell_p: list[str] = []
        cell_v: list[float] = []
        for owner, partner, value in cooc:
            cell_o.append(owner)
            cell_p.append(partner)
            cell_v.append(value)
        for log in logs:
            st = log.strings
            for j, (i, o) in enumerate(zip(log.item.tolist(), log.ordinal.tolist(), strict=True)):
                c = int(log.category[j])
                items[st[i]] = (o, int(log.seq[j]), float(log.pop[j]), float(log.pop_ts[j]), float(log.count[j]),
                                float(log.weight[j]), float(log.bias[j]), st[c] if c >= 0 else "", log.vecs[j])
            cell_o += [st[i] for i in log.cell_owner.tolist()]
            cell_p += [st[i] for i in log.cell_partner.tolist()]
            cell_v += log.cell_value.tolist()
        for item_id, (_o, seq, pop, pop_ts, count, weight, bias, cat, vec) in sorted(
                items.items(), key=lambda kv: (kv[1][0], kv[0])):
            i = s._slot(item_id)
            s.vecs[i, :d] = vec
            s.vecs[i, d] = bias
            s.seq[i] = seq
            s.pop[i], s.pop_ts[i], s.count[i], s.weight[i] = pop, pop_ts, count, weight
            s.cats[i] = cat
        if cell_o:
            owners = np.fromiter((s._slot(o) for o in cell_o), dtype=np.int64, count=len(cell_o))
            s.cells.set(owners, s.cells.partner_ordinals(cell_p), np.asarray(cell_v, dtype=np.float64))
        s.sync_index()
        return s

    def sync_index(self) -> int:
        """Push changed vectors into HNSW in one batch (single inserts are slow); returns how many.

        Nothing to do while the shard holds at most ``scan_below`` items: candidates then come from a
        scan, and the graph is built in one go once the shard grows past that.
        """
        if not self._dirty or len(self.ids) <= self.params.scan_below:
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
            row = self.cells.row(s)
            if row is not None:
                out[row[0]] += float(w) * row[1]  # a partner's row holds each owner once
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
            if q.vector is not None and n <= p.scan_below:
                qv = np.append(np.asarray(q.vector, dtype=np.float32), np.float32(1.0))
                parts.append(elig[top_k(self.vecs[elig] @ qv, p.candidates)])
            elif q.vector is not None:
                # No exclusion set in the graph search (over-fetching by a user's whole history costs a
                # near-exhaustive search); ineligible hits are dropped here, co-occurrence and popularity
                # candidates make up the rest.
                if self.auto_sync:
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


def route_event(builders: dict[int, ShareBuilder], recent: tuple[str, ...], item_id: str, ts: int, weight: float,
                category: str | None, *, window: int, shards: int) -> None:
    """Add one interaction's shares to the per-index-shard builders of a batch.

    The item's popularity goes to its owner; each pair of the item with one of the user's last ``window``
    recent items (``recent``: distinct, oldest first, before this item) goes, once, to the owner of each
    side (`ShareBuilder` pairs are unordered: a shard learns the side it owns).

    >>> b: dict[int, ShareBuilder] = {}
    >>> route_event(b, ("a", "b"), "c", 5, 1.0, None, window=1, shards=1)
    >>> b[0].pop_item, b[0].pair_a, b[0].pair_b
    (['c'], ['c'], ['b'])
    """
    partners = [j for j in recent[-window:] if j != item_id]
    if shards == 1:
        b = builders.get(0)
        if b is None:
            b = builders[0] = ShareBuilder()
        b.add_event(item_id, ts, weight, category, partners)
        return
    own = shard_of(item_id, shards)
    b = builders.get(own)
    if b is None:
        b = builders[own] = ShareBuilder()
    b.add_pop(item_id, ts, weight, category)
    for j in partners:
        b.add_pair(item_id, j, weight)
        other = shard_of(j, shards)
        if other != own:
            bo = builders.get(other)
            if bo is None:
                bo = builders[other] = ShareBuilder()
            bo.add_pair(item_id, j, weight)


def split_vector_batch(data: bytes, shards: int) -> list[tuple[int, bytes]]:
    """A VectorBatch of the item stage as one VectorBatch (v2) per index shard that owns some of its items."""
    from state_schemas.item_cols import decode_vector_batch, encode_vector_batch

    if shards == 1:
        return [(0, data)]
    cols = decode_vector_batch(data)
    owner = np.fromiter((shard_of(i, shards) for i in cols.ids), dtype=np.int64, count=len(cols))
    return [(int(s), encode_vector_batch(cols.take(np.flatnonzero(owner == s)))) for s in np.unique(owner)]


@dataclass(slots=True)
class BatchOut:
    """What one batch did to a shard: partial answers in query order and what to persist."""

    partials: list[PartialMsg] = field(default_factory=list)
    items: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # changed ordinals
    cells: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # changed cell slots
    vectors: int = 0


def apply_batch(shard: IndexShard, data: bytes) -> BatchOut:
    """One ShareBatch: rank its queries against the state before it, then learn its shares.

    Why queries first: a batch's shares are learned in one vectorised step, so a query in the middle of
    the batch cannot see exactly the shares before it. Ranking every query before the batch keeps the
    online evaluation test-then-learn (an evaluation query never sees its own interaction) at the cost of
    up to one batch of other interactions (~``batch_ms``) not yet in popularity and co-occurrence.
    """
    from state_schemas.messages import decode_query

    batch = decode_shares(data)
    out = BatchOut()
    out.partials = [shard.rank(decode_query(q)) for q in batch.queries]
    out.items, out.cells = shard.apply_shares(batch)
    return out


def apply_vector_batch(shard: IndexShard, cols: ItemCols) -> BatchOut:
    """Item vectors from the item stage (a decoded VectorBatch); those newer than the ones held are taken."""
    out = BatchOut()
    if len(cols):
        taken = shard.apply_vectors(list(cols.ids), cols.seq, cols.vecs, cols.bias.astype(np.float32))
        out.items, out.vectors = np.unique(taken), int(taken.size)
    return out

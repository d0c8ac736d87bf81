"""The user stage as one pure step over a batch: ``step(shard, records, watermark, table, rng, params)``.

No pyflink import, no clock. The Flink adapter (`operators.profile.flink`) keys the stage by *user
shard* (crc32 of the user id modulo ``user_shards``): each call brings one `RecordBatch` of that shard's
events and requests, in stream order, and the router's watermark. The per-user rules are those of
`operators.profile.logic` (sessions, late events, dedupe, interests), applied event by event; the
learning is vectorised over the batch:

- **Test, then learn.** For a sampled event (``eval_percent``, by event id) the evaluation query is
  built from the user's state just before that event (profile and history). Each index shard gets the
  batch as one `ShareBatch`: its queries (requests and evaluation queries, in stream order), ranked
  before the batch's interaction shares are learned, so an evaluation never sees its own interaction.
  Its user vector is the one from just before the event (the query is built after the batch's BPR
  rounds, from each user's vector path); the item vectors of the session rung are the replica's.
- **BPR over the batch.** Every applied event with weight > 0 is one row: the user's vector, the item,
  ``negatives`` items drawn uniformly from the local table. Rows go in rounds that hold each user at
  most once (`bpr_batch.rounds`), so a user's steps stay sequential; the item side is a simultaneous
  step against the table as it was at the start of the batch, its gradients summed per item
  (`CoalescedGrads`) and sent as one `GradBatch` per item shard.
- **A local item replica.** ``table`` is this subtask's copy of the item vectors: the batch's own
  coalesced gradients are applied to it at once (the item stage applies the same sums to its vectors),
  and the item stage's feedback refreshes it (`ItemTable.upsert` from the adapter).
- **Sessions close on the watermark.** After the records, every open session whose end
  (``last_ts + gap_ms``) is at or before the watermark closes, in end-time order, exactly as an
  event-time timer at that time would have: `logic.on_timer`. The shard keeps a heap of session ends;
  a stale entry (the session moved on) is skipped.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from operators.drift.features import user_features
from operators.index.logic import route_event
from operators.items.logic import initial_item
from operators.learner.bpr import BPRParams
from operators.learner.bpr_batch import CoalescedGrads, apply_coalesced, bpr_batch_user_step, coalesce, rounds
from operators.learner.cooc import CoocParams
from operators.profile import logic
from operators.profile.embedding import ItemTable, initial_user
from operators.serving.logic import ItemVectors, make_query, state_digest
from state_schemas import seen_items, user_profile
from state_schemas.batches import GradBatch
from state_schemas.codec import NO_TS, TAGS
from state_schemas.errors import ConfigError
from state_schemas.events import EVENT_TYPE_CODES, decode_event
from state_schemas.feature_batch import FeatureBatch
from state_schemas.messages import decode_request, encode_query
from state_schemas.requests_v1 import RequestV1
from state_schemas.shares import ShareBuilder, encode_builder
from state_schemas.user_profile import UserProfile

_REQUEST_TAG = TAGS["request_msg"]
ASKED_MAX = 200_000  # users remembered as asked for (found or not) before the memory is cleared


@dataclass(frozen=True, slots=True)
class UserParams:
    """Settings of the user stage, as plain values."""

    gap_ms: int = 30 * 60 * 1000
    bpr: BPRParams = field(default_factory=BPRParams)
    seed: int = 7
    seen_max: int = 1_000
    eval_percent: float = 1.0
    eval_k: int = 10
    index_shards: int = 1
    item_shards: int = 4
    session_weight: float = 0.0
    personalize_after: int = 3
    cooc_window: int = field(default_factory=lambda: CoocParams().window)
    # >0: a batch draws its negatives from one random pool of this many items (shared by its rows) instead of
    # from every item; the item side of a batch then touches its positives and the pool only.
    negative_pool: int = 0

    def __post_init__(self) -> None:
        """Reject settings the stage cannot work with, naming the setting."""
        if not 0.0 <= self.eval_percent <= 100.0 or self.index_shards < 1 or self.item_shards < 1:
            msg = (f"UserParams: need 0 <= eval_percent <= 100, index_shards >= 1, item_shards >= 1; got "
                   f"{self.eval_percent}, {self.index_shards}, {self.item_shards}. Fix the job settings.")
            raise ConfigError(msg)


def sampled(event_id: str, percent: float) -> bool:
    """Deterministic sampling of the online evaluation by event id (the same events on every replay).

    The crc32 of the id, in units of 1/100 of a percent, is below ``percent * 100``.

    >>> sampled("e1", 100), sampled("e1", 0)
    (True, False)
    """
    return percent >= 100 or (percent > 0 and zlib.crc32(event_id.encode()) % 10_000 < percent * 100)


@dataclass(slots=True)
class UserShard:
    """In-memory state of one user shard; the adapter mirrors changed users to keyed state."""

    profiles: dict[str, UserProfile] = field(default_factory=dict)
    seen: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seen_loader: Callable[[str], tuple[str, ...] | None] = lambda _u: None
    ends: list[tuple[int, str]] = field(default_factory=list)  # heap of (session end, user)
    watermark: int = NO_TS
    asked: set[str] = field(default_factory=set)  # users `step` asked `hydrate` for (found or not)

    @classmethod
    def restore(cls, profiles: dict[str, UserProfile], seen_loader: Callable[[str], tuple[str, ...] | None],
                gap_ms: int) -> UserShard:
        """A shard from its keyed state: every profile, and the session ends rebuilt from them."""
        ends = [(p.session.last_ts + gap_ms, u) for u, p in profiles.items() if p.session is not None]
        heapq.heapify(ends)
        return cls(profiles=profiles, seen_loader=seen_loader, ends=ends)

    def seen_of(self, user_id: str) -> tuple[str, ...] | None:
        """The user's history, loaded from keyed state on first use (None: no state at all)."""
        if user_id in self.seen:
            return self.seen[user_id]
        got = self.seen_loader(user_id)
        if got is not None:
            self.seen[user_id] = got
        return got


@dataclass(slots=True)
class StepOut:
    """What one batch did: outputs for the downstream stages and which users changed."""

    closed: list[logic.SessionSummary] = field(default_factory=list)
    index: dict[int, bytes] = field(default_factory=dict)  # index shard -> ShareBatch (queries, shares)
    grads: dict[int, GradBatch] = field(default_factory=dict)  # item shard -> coalesced gradients
    changed: set[str] = field(default_factory=set)  # users whose profile or history changed
    events: int = 0
    duplicates: int = 0
    late: int = 0
    requests: int = 0
    eval_queries: int = 0
    hydrated: int = 0  # users whose state came from `hydrate` in this batch
    drift: FeatureBatch = ()  # the batch's drift features (`operators.drift.features`)


def step(
    shard: UserShard,
    records: list[bytes],
    watermark: int,
    table: ItemTable,
    rng: np.random.Generator,
    params: UserParams,
    hydrate: Callable[[list[str]], Mapping[str, UserProfile]] | None = None,
) -> StepOut:
    """Apply one batch of a user shard's records, then its watermark.

    ``hydrate`` (the adapter's Cassandra read) is asked once per batch for the users of the batch that
    have no state here and were not asked for before; the profiles it returns become their state
    (`operators.profile.rows.profile_from_row`: a fresh or lost state is not amnesia).
    """
    out = StepOut()
    p = params
    builders: dict[int, ShareBuilder] = {}
    queries: list[bytes] = []  # every index shard ranks every query, before the batch's shares
    vec_of = _vector_lookup(table)
    rows_user: list[str] = []
    rows_item: list[int] = []
    rows_weight: list[float] = []
    rows_of: dict[str, int] = {}  # user -> BPR rows so far in this batch
    last_ts: dict[str, int] = {}
    evals: list[tuple[Any, UserProfile | None, tuple[str, ...], int, int]] = []
    max_ts = NO_TS
    applied: list[Any] = []  # events applied (not duplicates), in order: the batch's drift features
    decoded: list[tuple[bool, Any]] = [
        (True, decode_request(blob)) if blob[0] == _REQUEST_TAG else (False, decode_event(blob)) for blob in records
    ]
    if hydrate is not None:
        _hydrate(shard, {r.user_id for _, r in decoded}, hydrate, out)
    for is_request, ev in decoded:
        if is_request:
            queries.append(_request(shard, ev, vec_of, out, p))
            continue
        uid = ev.user_id
        prof = shard.profiles.get(uid)
        new, res = logic.on_event(prof, ev, gap_ms=p.gap_ms)
        if res.status is logic.Status.DUPLICATE:
            out.duplicates += 1
            continue
        out.events += 1
        applied.append(ev)
        if res.status is logic.Status.LATE:
            out.late += 1
        seen = shard.seen_of(uid) or ()
        if seen and sampled(ev.event_id, p.eval_percent) and ev.item_id not in seen:  # cheap test first
            # The query is built after learning (below), from the user's vector as it was just before this
            # event; its place among the batch's queries is kept here.
            out.eval_queries += 1
            evals.append((ev, prof, seen, rows_of.get(uid, 0), len(queries)))
            queries.append(b"")
        route_event(builders, prof.recent_items if prof is not None else (), ev.item_id, ev.ts, ev.weight,
                    ev.category, window=p.cooc_window, shards=p.index_shards)
        shard.seen[uid] = seen_items.add(seen, ev.item_id, p.seen_max)
        shard.profiles[uid] = new
        out.changed.add(uid)
        pos = table.index.get(ev.item_id)
        if pos is None:
            init = initial_item(p.bpr, ev.item_id, p.seed)
            pos = table.upsert(ev.item_id, init.as_array(), init.bias)
        if ev.weight > 0.0:
            rows_user.append(uid)
            rows_item.append(pos)
            rows_weight.append(ev.weight)
            rows_of[uid] = rows_of.get(uid, 0) + 1
        last_ts[uid] = ev.ts
        max_ts = max(max_ts, ev.ts)
        if res.closed is not None:
            out.closed.append(res.closed)
        if res.timer_ts is not None and (prof is None or logic.session_timer(prof, p.gap_ms) != res.timer_ts):
            heapq.heappush(shard.ends, (res.timer_ts, uid))
    if last_ts:
        paths = _learn(shard, rows_user, rows_item, rows_weight, last_ts, max_ts, table, rng, out, p)
        for ev, prof, seen, k, slot in evals:
            if prof is not None and (prof.embedding or k):
                path = paths[ev.user_id]  # shorter than k when the table was too small to learn
                prof = prof.with_embedding(path[min(k, len(path) - 1)], prof.embedding_ts)
            queries[slot] = encode_query(make_query(
                prof, seen, vec_of, qid=f"eval:{ev.event_id}", user_id=ev.user_id, kind="eval", k=p.eval_k,
                ts=ev.ts, target=ev.item_id, shards=p.index_shards, session_weight=p.session_weight,
                personalize_after=p.personalize_after,
            ))
    for s_ in range(p.index_shards):
        b = builders.get(s_)
        if queries or b is not None:
            out.index[s_] = encode_builder(b, queries)
    _close_sessions(shard, watermark, out, p)
    # the drift features of the batch: its events, the vector norms of the users it changed, its sessions
    norms = (np.linalg.norm(np.stack([shard.profiles[u].embedding_vector() for u in last_ts]), axis=1)
             if last_ts else np.zeros(0))
    out.drift = user_features(
        types=[EVENT_TYPE_CODES[e.type] for e in applied], ts=[e.ts for e in applied],
        dwell_ms=[e.dwell_ms for e in applied], categories=[e.category for e in applied],
        norms=norms, sessions=[(c.event_count, c.start_ts, c.end_ts) for c in out.closed],
    )
    return out


def _hydrate(shard: UserShard, users: set[str], hydrate: Callable[[list[str]], Mapping[str, UserProfile]],
             out: StepOut) -> None:
    """Ask once for users without state; a user found nowhere is not asked again (bounded memory)."""
    ask = sorted(u for u in users if u not in shard.profiles and u not in shard.asked)
    if not ask:
        return
    if len(shard.asked) > ASKED_MAX:
        shard.asked.clear()
    shard.asked.update(ask)
    found = hydrate(ask)
    for uid, prof in found.items():
        if uid in users and uid not in shard.profiles:
            shard.profiles[uid] = prof
            if prof.recent_items and shard.seen_of(uid) is None:
                shard.seen[uid] = prof.recent_items
            out.changed.add(uid)
            out.hydrated += 1


def _vector_lookup(table: ItemTable) -> ItemVectors:
    def vec(item_id: str) -> NDArray[np.float32] | None:
        i = table.index.get(item_id)
        if i is None:
            return None
        row: NDArray[np.float32] = table.vecs[i]
        return row

    return vec


def _request(shard: UserShard, req: RequestV1, vec_of: ItemVectors, out: StepOut, p: UserParams) -> bytes:
    """The query of a request (every index shard gets it); the request changes no state."""
    out.requests += 1
    uid = req.user_id
    prof = shard.profiles.get(uid)
    seen = shard.seen_of(uid)
    digest = state_digest(None if prof is None else user_profile.encode(prof),
                          None if seen is None else seen_items.encode(seen))
    return encode_query(make_query(
        prof, seen or (), vec_of, qid=req.request_id, user_id=uid, kind="request",
        k=req.k, ts=req.ts, exclude_seen=req.exclude_seen, category=req.category,
        shards=p.index_shards, session_weight=p.session_weight, personalize_after=p.personalize_after,
        digest=digest,
    ))


def draw_negatives(rng: np.random.Generator, pos: NDArray[np.int64], n_items: int, k: int,
                   pool: int = 0) -> NDArray[np.int64]:
    """``k`` negative rows of an item table of ``n_items`` for each positive row in ``pos``, never the positive.

    ``pool`` = 0: uniform over the other items. ``pool`` > 0 (and below ``n_items - 1``): uniform over one
    random pool of ``pool`` items shared by all rows, a row's own positive replaced by a spare pool item,
    so the batch's item side touches its positives and ``pool + 1`` other items at most.

    >>> negs = draw_negatives(np.random.default_rng(1), np.array([0, 1]), 5, 3)
    >>> negs.shape, bool((negs != np.array([[0], [1]])).all())
    ((2, 3), True)
    """
    if 0 < pool < n_items - 1:
        chosen = rng.choice(n_items, size=pool + 1, replace=False)
        negs: NDArray[np.int64] = chosen[rng.integers(0, pool, size=(pos.shape[0], k))]
        negs[negs == pos[:, None]] = chosen[pool]  # the spare is never drawn, so never a row's positive
        return negs
    draw = rng.integers(0, n_items - 1, size=(pos.shape[0], k))
    out: NDArray[np.int64] = draw + (draw >= pos[:, None])  # skip the positive without a rejection loop
    return out


def _learn(
    shard: UserShard, users: list[str], items: list[int], weights: list[float], last_ts: dict[str, int],
    max_ts: int, table: ItemTable, rng: np.random.Generator, out: StepOut, p: UserParams,
) -> dict[str, list[NDArray[np.float32]]]:
    """BPR rows in rounds (each user once per round), item gradients coalesced and applied locally.

    Returns each user's vector path: the vector before its first row of the batch, then after each row.
    """
    bpr = p.bpr
    vecs: dict[str, NDArray[np.float32]] = {}
    for uid in last_ts:
        prof = shard.profiles[uid]
        emb = prof.embedding_vector() if prof.embedding else None
        vecs[uid] = emb if emb is not None and emb.shape[0] == bpr.dim else initial_user(bpr, uid, p.seed)
    paths = {u: [v] for u, v in vecs.items()}
    n_items = len(table)
    parts: list[CoalescedGrads] = []
    if users and n_items > 1:
        pos = np.asarray(items, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float64)
        negs = draw_negatives(rng, pos, n_items, bpr.negatives, p.negative_pool)
        item_vecs, item_biases = table.vecs[:n_items], table.biases[:n_items]
        for r in rounds(users):
            who = [users[i] for i in r]
            new_u, grads = bpr_batch_user_step(bpr, np.stack([vecs[u] for u in who]), pos[r], negs[r], w[r],
                                               item_vecs, item_biases)
            for u, v in zip(who, new_u, strict=True):
                vecs[u] = v
                paths[u].append(v)
            parts.append(grads)
    for uid, ts in last_ts.items():
        shard.profiles[uid] = shard.profiles[uid].with_embedding(vecs[uid], ts)
    if not parts:
        return paths
    grads = coalesce(*parts)
    if not len(grads):
        return paths
    ids = table.ids
    shard_of_row = table.shards_of(grads.items, p.item_shards)
    order = np.argsort(shard_of_row, kind="stable")
    bounds = np.flatnonzero(np.diff(shard_of_row[order])) + 1
    for sel in np.split(order, bounds):
        rows = grads.items[sel]
        out.grads[int(shard_of_row[sel[0]])] = GradBatch(max_ts, [ids[i] for i in rows.tolist()], grads.vec[sel],
                                                          grads.bias[sel], grads.count[sel].astype(np.uint32))
    apply_coalesced(bpr, table.vecs, table.biases, grads)
    return paths


def _close_sessions(shard: UserShard, watermark: int, out: StepOut, p: UserParams) -> None:
    if watermark <= shard.watermark:
        return
    shard.watermark = watermark
    ends = shard.ends
    while ends and ends[0][0] <= watermark:
        end, uid = heapq.heappop(ends)
        prof = shard.profiles.get(uid)
        if prof is None or logic.session_timer(prof, p.gap_ms) != end:
            continue  # stale: the session moved on (a newer end is in the heap) or closed already
        new, closed = logic.on_timer(prof, end, p.gap_ms)
        if closed is not None and new is not None:
            shard.profiles[uid] = new
            out.changed.add(uid)
            out.closed.append(closed)

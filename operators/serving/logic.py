"""Answering a recommendation request in-stream: query, re-rank, fall back, and merge index shards.

Pure: no pyflink import, the clock is the ``now_ms`` parameter. In the job, the user stage calls
`make_query` (on `build_query`) with the user's keyed state and scatters the `QueryMsg` to the index
shards (`operators.index.logic.IndexShard.rank` ranks there); the gather step merges the shards'
partials with `Pending` / `merge_partials` and `finish` applies the ladder.

The ladder (see `state_schemas.requests_v1` for the ``source`` values): a user with an embedding gets
``personalized``; recent items but no embedding yet gets ``session``; nobody known gets ``cold_start``
(trending items). If the index gives nothing usable, the answer falls back to ``trending``; an empty
answer (``cold_start``) happens only when no item at all is eligible.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from operators.learner.popularity import decay
from state_schemas.codec import NO_TS
from state_schemas.errors import ConfigError
from state_schemas.messages import PartialMsg, QueryMsg
from state_schemas.requests_v1 import Answer, Source
from state_schemas.user_profile import UserProfile

Scored = tuple[str, float]
ItemVectors = Callable[[str], NDArray[np.floating[Any]] | None]
CategoryOf = Callable[[str], str | None]


@dataclass(frozen=True, slots=True, eq=False)
class Query:
    """What to ask the index for one request, and what to leave out of the answer.

    ``eq=False``: it holds a numpy array, whose ``==`` is elementwise; compare fields explicitly.
    """

    user_id: str | None
    source: Source  # planned rung: PERSONALIZED, SESSION or COLD_START
    vector: NDArray[np.float32] | None  # None: nothing to ask the index (cold user, or no vector known)
    exclude: frozenset[str] = frozenset()
    category: str | None = None
    seeds: tuple[str, ...] = ()  # the user's recent items, oldest first (co-occurrence seeds)
    freshest_event_ts: int | None = None


def freshest_event_ts(profile: UserProfile) -> int | None:
    """Event time of the newest event ``profile`` reflects (None when it reflects none)."""
    s = profile.session
    times = [
        profile.last_closed_end_ts,
        profile.engagement_ts,
        profile.embedding_ts,
        s.last_ts if s is not None else NO_TS,
        *(ts for _, ts in profile.interests.values()),
    ]
    newest = max(times)
    return None if newest == NO_TS else newest


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64] | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 and math.isfinite(n) else None


def build_query(
    profile: UserProfile | None,
    item_vectors: ItemVectors,
    *,
    session_weight: float,
    now_ms: int,
    exclude_seen: bool = True,
    category: str | None = None,
    session_half_life_ms: float | None = None,
) -> Query:
    """The query of one user: vector, exclusions, filter, freshness and planned source.

    The vector is ``(1 - w) * unit(embedding) + w * unit(mean of recent item vectors)``: both parts are
    normalised first so ``session_weight`` means the same whatever the norms the learner produced. With
    ``session_half_life_ms``, ``w`` decays with the time since the user's last event, because recent
    items say what a user wants now, and hours later the long-term embedding is the better guide.
    Recent items without a known vector (or of another dimension than the embedding) are skipped.

    >>> vecs = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    >>> p = UserProfile("u1", recent_items=("a", "b"))
    >>> q = build_query(p, vecs.get, session_weight=0.5, now_ms=0)
    >>> q.source.value, [round(float(x), 3) for x in q.vector], sorted(q.exclude)
    ('session', [0.707, 0.707], ['a', 'b'])
    >>> build_query(None, vecs.get, session_weight=0.5, now_ms=0).source.value
    'cold_start'
    """
    if not 0.0 <= session_weight <= 1.0:
        msg = f"serving: session_weight must be in [0, 1], got {session_weight!r}; fix the serving settings."
        raise ConfigError(msg)
    if profile is None:
        return Query(None, Source.COLD_START, None, category=category)
    fresh = freshest_event_ts(profile)
    recent = profile.recent_items
    exclude = frozenset(recent) if exclude_seen else frozenset()
    emb = profile.embedding_vector().astype(np.float64) if profile.embedding else None
    if emb is not None and not np.all(np.isfinite(emb)):
        emb = None  # a corrupt embedding must not poison every score; serve from the session instead
    dim = emb.size if emb is not None else None
    found = []
    for item in recent:
        v = item_vectors(item)
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64).ravel()
        if dim is None:
            dim = a.size
        if a.size == dim and a.size and np.all(np.isfinite(a)):
            found.append(a)
    session = _unit(np.mean(found, axis=0)) if found else None
    user = _unit(emb) if emb is not None else None
    if user is not None:
        source = Source.PERSONALIZED
    elif recent:
        source = Source.SESSION
    else:
        return Query(profile.user_id, Source.COLD_START, None, exclude, category, recent, fresh)
    w = session_weight
    if session_half_life_ms is not None and fresh is not None:
        w = float(decay(w, fresh, now_ms, session_half_life_ms)) if now_ms > fresh else w
    if user is not None and session is not None:
        vector: NDArray[np.float64] | None = (1.0 - w) * user + w * session
    else:
        vector = user if user is not None else session
    out = None if vector is None else vector.astype(np.float32)
    return Query(profile.user_id, source, out, exclude, category, recent, fresh)


def merge_partials(partials: Iterable[Iterable[Scored]], k: int) -> list[Scored]:
    """Top ``k`` of the union of the shards' partial lists; an item in several keeps its best score.

    Best first, ties to the smaller item id, non-finite scores dropped: the result depends only on the
    union, never on the shards' arrival order.

    >>> merge_partials([[("a", 0.5), ("b", 0.9)], [("a", 0.7), ("c", 0.1)]], 2)
    [('b', 0.9), ('a', 0.7)]
    """
    best: dict[str, float] = {}
    for part in partials:
        for item, s in part:
            s = float(s)
            if math.isfinite(s) and s > best.get(item, -math.inf):
                best[item] = s
    if k <= 0:
        return []
    return heapq.nsmallest(k, best.items(), key=lambda p: (-p[1], p[0]))


@dataclass(slots=True)
class _Gather:
    deadline: int
    k: int
    parts: dict[int, list[Scored]]


class Pending:
    """Gathers the shards' partial lists per request id until all arrived or the deadline passed.

    Mutable bookkeeping (one per operator instance, not keyed state): a request that waits for a dead
    shard must not wait forever, so it is answered at ``first partial + timeout_ms`` with what arrived.
    Ids already answered are remembered for another ``timeout_ms`` so a straggling partial cannot open
    a second gather (and a second answer) for the same request.

    >>> p = Pending(shards=2, timeout_ms=50)
    >>> p.add("r1", 0, [("a", 1.0)], now_ms=0)
    True
    >>> p.due(now_ms=10)
    []
    >>> p.add("r1", 1, [("b", 2.0)], now_ms=20)
    True
    >>> p.due(now_ms=20)
    [('r1', [('b', 2.0), ('a', 1.0)])]
    >>> p.add("r1", 1, [("c", 3.0)], now_ms=30)  # late duplicate: ignored
    False
    """

    def __init__(self, shards: int, timeout_ms: int, k: int = 100) -> None:
        """``shards`` partials complete a request; ``k`` is the merged length unless `add` gives one."""
        if shards < 1 or timeout_ms < 0 or k < 1:
            msg = f"Pending: need shards >= 1, timeout_ms >= 0, k >= 1; got {shards}, {timeout_ms}, {k}."
            raise ConfigError(msg)
        self.shards = shards
        self.timeout_ms = timeout_ms
        self.k = k
        self._open: dict[str, _Gather] = {}
        self._done: dict[str, int] = {}  # request id -> until when a late partial is ignored

    def __len__(self) -> int:
        """Requests still gathering."""
        return len(self._open)

    def add(self, request_id: str, shard: int, partial: Iterable[Scored], now_ms: int, k: int | None = None) -> bool:
        """Record one shard's partial list; False when ignored (already answered, or shard seen)."""
        if not 0 <= shard < self.shards:
            msg = f"Pending.add: shard {shard!r} of request {request_id!r} is outside [0, {self.shards})."
            raise ValueError(msg)
        if request_id in self._done:
            return False
        g = self._open.get(request_id)
        if g is None:
            g = self._open[request_id] = _Gather(now_ms + self.timeout_ms, k or self.k, {})
        if shard in g.parts:
            return False  # redelivered partial: the first one counts
        g.parts[shard] = list(partial)
        return True

    def next_deadline(self) -> int | None:
        """Earliest deadline of an open request (for the adapter's timer), None when none is open."""
        return min((g.deadline for g in self._open.values()), default=None)

    def due(self, now_ms: int) -> list[tuple[str, list[Scored]]]:
        """Complete or timed-out requests with their merged lists, removed from the gather.

        Ordered by deadline, then request id, so replays emit in the same order.
        """
        self._done = {r: t for r, t in self._done.items() if t > now_ms}
        ready = sorted(
            (g.deadline, r) for r, g in self._open.items() if len(g.parts) == self.shards or g.deadline <= now_ms
        )
        out = []
        for _, r in ready:
            g = self._open.pop(r)
            self._done[r] = now_ms + self.timeout_ms
            out.append((r, merge_partials(g.parts.values(), g.k)))
        return out


@dataclass(frozen=True, slots=True)
class EvalOutcome:
    """Online evaluation of one interaction: would the answer served just before it have contained it?"""

    qid: str
    user_id: str
    item_id: str
    event_ts: int
    evaluated: bool  # the item was known to the index and unseen by the user (the offline protocol)
    hit: bool
    baseline_hit: bool  # most-popular (raw counts) on the same eligible items
    source: Source

    def to_json(self) -> bytes:
        """The evaluations-topic record."""
        import json

        return json.dumps(
            {"event_id": self.qid.removeprefix("eval:"), "user_id": self.user_id, "item_id": self.item_id,
             "event_ts": self.event_ts, "evaluated": self.evaluated, "hit": self.hit,
             "baseline_hit": self.baseline_hit, "source": str(self.source)},
            separators=(",", ":"),
        ).encode()


def finish(
    partials: Iterable[PartialMsg], *, now_ms: int, model_version: str, fill_with_trending: bool = True
) -> tuple[Answer, EvalOutcome | None]:
    """The one answer to a query from its shards' partials (a missing shard only makes it shorter).

    The ladder: the planned rung (personalized / session) when the shards ranked anything, padded with
    trending items; otherwise trending (``trending``, or ``cold_start`` for a user with no history).
    An eval query also gets its outcome, judged on exactly the answer a request would have received.

    >>> from state_schemas.messages import PartialMsg, QueryMsg
    >>> p = PartialMsg("r", "u", "request", 2, "personalized", 0, None, None, 0, 1, (("a", 1.0),),
    ...                (("b", 5.0), ("a", 4.0)), (), False, "s0", "")
    >>> a, _ = finish([p], now_ms=1, model_version="m")
    >>> [i for i, _ in a.items], a.source.value
    (['a', 'b'], 'personalized')
    """
    parts = sorted(partials, key=lambda p: p.shard)
    if not parts:
        msg = "finish: a query needs at least one shard's partial answer"
        raise ValueError(msg)
    first = parts[0]
    k = first.k
    planned = Source(first.source)
    ranked = merge_partials((p.ranked for p in parts), k) if planned is not Source.COLD_START else []
    trend = merge_partials((p.trending for p in parts), k)
    if ranked:
        items, source = list(ranked), planned
        if fill_with_trending and len(items) < k:
            taken = {i for i, _ in items}
            items += [(i, s) for i, s in trend if i not in taken][: k - len(items)]
    else:
        items = list(trend)
        source = Source.COLD_START if planned is Source.COLD_START or not items else Source.TRENDING
    answer = Answer(
        request_id=first.qid,
        user_id=first.user_id,
        items=tuple(items),
        source=source,
        model_version=model_version,
        index_version=",".join(p.index_version for p in parts),
        freshest_event_ts=first.fresh,
        served_at=now_ms,
        state_digest=first.digest,
    )
    if first.kind != "eval" or first.target is None:
        return answer, None
    base = merge_partials((p.baseline for p in parts), k)
    outcome = EvalOutcome(
        qid=first.qid, user_id=first.user_id, item_id=first.target, event_ts=first.ts,
        evaluated=any(p.target_known for p in parts),
        hit=any(i == first.target for i, _ in items),
        baseline_hit=any(i == first.target for i, _ in base),
        source=source,
    )
    return answer, outcome


def model_version(dim: int, negatives: int, seed: int) -> str:
    """What produced the vectors of an answer: learner, dimension, negatives, seed."""
    return f"bpr-d{dim}-n{negatives}-s{seed}"


def state_digest(profile: bytes | None, seen: bytes | None) -> str | None:
    """16 hex digits of SHA-256 over a user's keyed state bytes (profile, seen items); None without state.

    Why: an SRE (and the rescale test) compares it for the same user before and after a restore or a
    rescale; equal digests mean the restored state is byte for byte what was saved. Each part is length
    prefixed, so moving bytes from one part to the other changes the digest.

    >>> state_digest(None, None) is None
    True
    >>> state_digest(b"p", None) == state_digest(b"p", b"")
    False
    """
    if profile is None and seen is None:
        return None
    h = hashlib.sha256()
    for part in (profile, seen):
        h.update(b"-" if part is None else len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:16]


def make_query(
    profile: UserProfile | None,
    seen: tuple[str, ...],
    item_vectors: ItemVectors,
    *,
    qid: str,
    user_id: str,
    kind: str,
    k: int,
    ts: int,
    exclude_seen: bool = True,
    category: str | None = None,
    target: str | None = None,
    shards: int = 1,
    session_weight: float = 0.0,
    personalize_after: int = 1,
    digest: str | None = None,
) -> QueryMsg:
    """The index query of a request (or of an online evaluation) from the user's state.

    The rung is `build_query`'s, except that a user with fewer than ``personalize_after`` events is
    served from the session: a vector that has taken one or two steps from its random start says
    little. The vector of a personalized query keeps the embedding's norm (``session_weight = 0``:
    the embedding itself), so the index's inner product with ``[v, b]`` is the BPR score the learner
    optimises; exclusions are every item the user interacted with (``seen``), not only recent ones.
    """
    p = profile
    if p is not None and p.embedding and p.total_events < personalize_after:
        p = p._replace(embedding=b"")
    query = build_query(p, item_vectors, session_weight=session_weight, now_ms=ts, exclude_seen=exclude_seen,
                        category=category)
    vec = query.vector
    if query.source is Source.PERSONALIZED and vec is not None and p is not None:
        emb = p.embedding_vector().astype(np.float32)
        vec = emb if session_weight == 0.0 else (vec * np.float32(np.linalg.norm(emb))).astype(np.float32)
    exclude = tuple(sorted(query.exclude | frozenset(seen))) if exclude_seen else ()
    return QueryMsg(qid, user_id, kind, k, query.source.value, ts, vec, exclude, category, query.seeds,
                    query.freshest_event_ts, target, shards, digest)

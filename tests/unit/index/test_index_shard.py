"""The index shard: ranking equals the exhaustive blend, state round trips, exclusions, filters, vectors."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.index.logic import IndexShard, ShardParams, interaction_shares, shard_of
from operators.learner.blend import Blend
from operators.learner.bpr import BPRParams
from operators.learner.popularity import log_popularity
from operators.learner.rank import top_k
from state_schemas.item_vector import ItemVector
from state_schemas.messages import InteractionMsg, QueryMsg
from tests.contracts.strategies import FEW

DIM = 8
T0 = 1_764_000_000_000


def params(**kw: object) -> ShardParams:
    return ShardParams(bpr=BPRParams(dim=DIM), **kw)  # type: ignore[arg-type]


def fed(n_items: int = 60, n_events: int = 600, seed: int = 1, shards: int = 1, shard: int = 0,
        **kw: object) -> IndexShard:
    """A shard fed a random stream of interactions and vectors (what the job sends it)."""
    rng = np.random.default_rng(seed)
    stream = [(int(rng.integers(0, 20)), f"i{int(rng.zipf(1.5)) % n_items}") for _ in range(n_events)]
    s = IndexShard(shard, shards, params(**kw))
    recent: dict[int, tuple[str, ...]] = {}
    for t, (u, item) in enumerate(stream):
        for sh, share in interaction_shares(recent.get(u, ()), item, T0 + 1000 * t, 1.0, f"c{hash(item) % 3}",
                                            window=10, shards=shards):
            if sh == shard:
                s.apply_interaction(share)
        recent[u] = (*tuple(x for x in recent.get(u, ()) if x != item), item)[-20:]
        if t % 50 == 0:
            for j in list(s.pos):  # the item's vector depends on (seed, t, item) only, whatever the shard
                r = np.random.default_rng([seed, t, zlib.crc32(j.encode())])
                v = r.standard_normal(DIM).astype(np.float32)
                s.apply_vector(j, ItemVector.from_array(v, bias=float(r.normal()), seq=t + 1))
    return s


def query(vec: np.ndarray | None, k: int = 10, **kw: object) -> QueryMsg:
    base = {"qid": "q", "user_id": "u", "kind": "request", "k": k, "source": "personalized",
            "ts": T0 + 600_000, "vector": vec}
    return QueryMsg(**{**base, **kw})  # type: ignore[arg-type]


def exhaustive(s: IndexShard, q: QueryMsg) -> list[str]:
    """The offline blend over every eligible item, computed independently of the shard's candidate logic."""
    n = len(s.ids)
    elig = [i for i in range(n) if s.count[i] > 0 and s.ids[i] not in q.exclude]
    idx = np.array(elig)
    comps = {"pop": log_popularity(s.pop[idx], s.pop_ts[idx], float(q.ts), s.params.half_life_ms)}
    if q.vector is not None:
        comps["bpr"] = (s.vecs[idx] @ np.append(q.vector, 1.0).astype(np.float32)).astype(np.float64)
    if q.seeds:
        seeds = q.seeds[-5:]
        w = 0.8 ** np.arange(len(seeds) - 1, -1, -1)
        c = np.zeros(len(idx))
        for wi, seed in zip(w, seeds, strict=True):
            row = s.by_partner.get(seed, {})
            c += wi * np.array([row.get(int(i), 0.0) for i in idx])
        comps["cooc"] = c / np.maximum(s.weight[idx], 1.0) ** 0.5
    scores = Blend().score(comps)
    return [s.ids[idx[j]] for j in top_k(scores, q.k)]


def test_exact_ranking_is_the_offline_blend() -> None:
    s = fed(exact_below=10_000)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = query(rng.standard_normal(DIM).astype(np.float32), seeds=("i1", "i2"), exclude=("i0", "i3"))
        assert [i for i, _ in s.rank(q).ranked] == exhaustive(s, q)


def test_candidates_cover_the_whole_catalogue_gives_the_same_answer_as_exact() -> None:
    exact = fed(exact_below=10_000)
    ann = fed(candidates=500)
    q = query(np.ones(DIM, np.float32), seeds=("i4",))
    assert [i for i, _ in ann.rank(q).ranked] == [i for i, _ in exact.rank(q).ranked]


def test_excluded_and_unknown_items_never_appear_and_category_filters() -> None:
    s = fed()
    ids = [i for i in s.ids if s.count[s.pos[i]] > 0]
    excl = tuple(ids[:5])
    part = s.rank(query(np.ones(DIM, np.float32), k=50, exclude=excl, category="c1"))
    got = [i for i, _ in part.ranked] + [i for i, _ in part.trending]
    assert got and not set(got) & set(excl)
    assert all(s.cats[s.pos[i]] == "c1" for i in got)


def test_a_vector_change_moves_the_item_to_the_top() -> None:
    s = fed()
    q = query(np.full(DIM, 0.5, np.float32))
    before = [i for i, _ in s.rank(q).ranked]
    mover = [i for i in s.ids if s.count[s.pos[i]] > 0 and i not in before][0]
    seq = int(s.seq[s.pos[mover]]) + 1
    assert s.apply_vector(mover, ItemVector.from_array(np.full(DIM, 5.0), bias=5.0, seq=seq))
    assert [i for i, _ in s.rank(q).ranked][0] == mover
    assert not s.apply_vector(mover, ItemVector.from_array(np.zeros(DIM), seq=seq)), "an older vector must lose"


def test_restore_from_entries_and_cells_gives_identical_answers() -> None:
    s = fed()
    cells = [(s.ids[o], partner, v) for partner, row in s.by_partner.items() for o, v in row.items()]
    again = IndexShard.restore(0, 1, s.params, [(i, s.entry(i)) for i in s.ids], cells)
    rng = np.random.default_rng(9)
    for _ in range(10):
        q = query(rng.standard_normal(DIM).astype(np.float32), seeds=("i1", "i7"))
        assert again.rank(q).ranked == s.rank(q).ranked
        assert again.rank(q).trending == s.rank(q).trending


def test_cold_query_ranks_nothing_but_trending_and_eval_fields() -> None:
    s = fed()
    part = s.rank(query(None, kind="eval", target="i1", source="cold_start"))
    assert part.ranked == () and len(part.trending) == 10 and len(part.baseline) == 10
    assert part.target_known
    assert not s.rank(query(None, kind="eval", target="nope")).target_known
    assert [c for _, c in part.baseline] == sorted((c for _, c in part.baseline), reverse=True)


@FEW
@given(st.integers(2, 5), st.integers(0, 1000))
def test_sharded_shards_hold_disjoint_items_and_their_union_is_one_shard(shards: int, seed: int) -> None:
    one = fed(n_events=200, seed=seed)
    parts = [fed(n_events=200, seed=seed, shards=shards, shard=k) for k in range(shards)]
    owned = [set(p.ids) for p in parts]
    assert set().union(*owned) == set(one.ids)
    assert sum(len(o) for o in owned) == len(one.ids)
    for k, o in enumerate(owned):
        assert all(shard_of(i, shards) == k for i in o)
    for p in parts:  # popularity and counts are the single shard's, item by item
        for i in p.ids:
            assert p.count[p.pos[i]] == one.count[one.pos[i]]


def test_interaction_shares_route_pairs_to_the_owner() -> None:
    shares = interaction_shares(("a", "b", "c"), "d", 5, 2.0, "x", window=10, shards=3)
    for shard, m in shares:
        assert all(shard_of(owner, 3) == shard for owner, _, _ in m.pairs)
        assert (m.item_id == "d") == (shard == shard_of("d", 3))
    pairs = {(o, p) for _, m in shares for o, p, _ in m.pairs}
    assert pairs == {(x, y) for a in "abc" for x, y in ((a, "d"), ("d", a))}


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(Exception, match="candidates"):
        ShardParams(candidates=0)
    with pytest.raises(Exception, match="index_shards"):
        IndexShard(3, 2)
    s = fed()
    with pytest.raises(Exception, match="embedding_dim"):
        s.apply_vector("i1", ItemVector.from_array(np.ones(DIM + 1), seq=10**6))
    _ = InteractionMsg


def test_cells_logged_per_batch_and_compacted_restore_the_same_shard() -> None:
    # What the adapter persists: blobs of each batch's changed cells, folded into a snapshot; replayed in
    # order (later values win) they give back every cell, so the restored shard ranks identically.
    from operators.index.logic import apply_batch
    from state_schemas import cooc_log
    from state_schemas.messages import encode_interaction

    s = IndexShard(0, 1, params())
    rng = np.random.default_rng(4)
    recent: list[str] = []
    blobs = []
    for b in range(20):
        recs = []
        for t in range(30):
            item = f"i{rng.integers(40)}"
            for _, share in interaction_shares(tuple(recent), item, 1_000 * (30 * b + t), 1.0, None,
                                               window=5, shards=1):
                recs.append(encode_interaction(share))
            recent = (recent + [item])[-5:]
        out = apply_batch(s, recs)
        blob = cooc_log.encode_map(out.cells)  # what the adapter writes
        assert blob == cooc_log.encode([(o, p, v) for (o, p), v in out.cells.items()])
        blobs.append(blob)
    snapshot = cooc_log.encode(s.cooc_cells()[: len(s.cooc_cells()) // 2])  # an older snapshot: deltas complete it
    cells = [c for blob in [snapshot, *blobs] for c in cooc_log.decode(blob)]
    again = IndexShard.restore(0, 1, s.params, [(i, s.entry(i)) for i in s.ids], cells)
    assert again.by_partner == s.by_partner
    q = query(rng.standard_normal(DIM).astype(np.float32), seeds=("i1", "i7"))
    assert again.rank(q).ranked == s.rank(q).ranked

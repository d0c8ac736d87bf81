"""The index shard: ranking equals the exhaustive blend, state round trips, exclusions, filters, vectors."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.index.logic import IndexShard, ShardParams, apply_batch, route_event, shard_of
from operators.learner.blend import Blend
from operators.learner.bpr import BPRParams
from operators.learner.popularity import log_popularity
from operators.learner.rank import top_k
from state_schemas import index_log
from state_schemas.item_vector import ItemVector
from state_schemas.messages import QueryMsg, encode_query
from state_schemas.shares import ShareBuilder, encode_builder
from tests.contracts.strategies import FEW

DIM = 8
T0 = 1_764_000_000_000


def params(**kw: object) -> ShardParams:
    return ShardParams(bpr=BPRParams(dim=DIM), **kw)  # type: ignore[arg-type]


def fed(n_items: int = 60, n_events: int = 600, seed: int = 1, shards: int = 1, shard: int = 0, batch: int = 7,
        **kw: object) -> IndexShard:
    """A shard fed a random stream of interactions (in batches of ``batch`` events) and vectors."""
    rng = np.random.default_rng(seed)
    stream = [(int(rng.integers(0, 20)), f"i{int(rng.zipf(1.5)) % n_items}") for _ in range(n_events)]
    s = IndexShard(shard, shards, params(**kw))
    recent: dict[int, tuple[str, ...]] = {}
    builders: dict[int, ShareBuilder] = {}
    for t, (u, item) in enumerate(stream):
        category = f"c{zlib.crc32(item.encode()) % 3}"
        route_event(builders, recent.get(u, ()), item, T0 + 1000 * t, 1.0 + (t % 3) / 2, category, window=10,
                    shards=shards)
        recent[u] = (*tuple(x for x in recent.get(u, ()) if x != item), item)[-20:]
        if t % batch == batch - 1 or t == len(stream) - 1:
            if shard in builders:
                apply_batch(s, encode_builder(builders[shard]))
            builders = {}
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
            row = s.cooc_rows().get(seed, {})
            c += wi * np.array([row.get(int(i), 0.0) for i in idx])
        comps["cooc"] = c / np.maximum(s.weight[idx], 1.0) ** 0.5
    scores = Blend().score(comps)
    return [s.ids[idx[j]] for j in top_k(scores, q.k)]


def test_scanned_bpr_candidates_are_the_exact_top_of_the_eligible_items() -> None:
    s = fed(candidates=5)
    q = query(np.linspace(-1, 1, DIM).astype(np.float32), exclude=("i0", "i1"))
    n = len(s.ids)
    elig = [i for i in range(n) if s.count[i] > 0 and s.ids[i] not in q.exclude]
    qv = np.append(q.vector, 1.0).astype(np.float32)
    best = {s.ids[i] for i in sorted(elig, key=lambda i: -float(s.vecs[i] @ qv))[:5]}
    ranked = {i for i, _ in s.rank(q._replace(k=50)).ranked}
    assert best <= ranked  # the blend ranks the union of the candidate lists; the scan's top 5 are in it


def test_exact_ranking_is_the_offline_blend() -> None:
    s = fed(exact_below=10_000)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = query(rng.standard_normal(DIM).astype(np.float32), seeds=("i1", "i2"), exclude=("i0", "i3"))
        assert [i for i, _ in s.rank(q).ranked] == exhaustive(s, q)


@pytest.mark.parametrize("scan_below", [0, 10_000])  # candidates from the HNSW graph / from a scan
def test_candidates_cover_the_whole_catalogue_gives_the_same_answer_as_exact(scan_below: int) -> None:
    exact = fed(exact_below=10_000)
    ann = fed(candidates=500, scan_below=scan_below)
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
    # release 0.2's layout (one entry per item, cells as triples), and this release's snapshot
    legacy = IndexShard.restore(0, 1, s.params, [(i, s.entry(i)) for i in s.ids], s.cooc_cells())
    again = IndexShard.restore(0, 1, s.params, logs=[index_log.decode(index_log.encode(s.snapshot()))])
    assert legacy.cooc_rows() == again.cooc_rows() == s.cooc_rows()
    assert again.ids == s.ids
    n = len(s.ids)
    for name in ("pop", "pop_ts", "count", "weight", "seq"):
        assert np.array_equal(getattr(again, name)[:n], getattr(s, name)[:n]), name
    assert np.array_equal(again.vecs[:n], s.vecs[:n]) and again.cats == s.cats
    rng = np.random.default_rng(9)
    for _ in range(10):
        q = query(rng.standard_normal(DIM).astype(np.float32), seeds=("i1", "i7"))
        assert legacy.rank(q).ranked == s.rank(q).ranked
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


def test_shares_route_popularity_to_the_owner_and_each_pair_to_both_owners() -> None:
    builders: dict[int, ShareBuilder] = {}
    route_event(builders, ("a", "b", "c"), "d", 5, 2.0, "x", window=10, shards=3)
    for shard, b in builders.items():
        assert b.pop_item == (["d"] if shard == shard_of("d", 3) else [])
        for a, p in zip(b.pair_a, b.pair_b, strict=True):  # a shard gets a pair only when it owns a side
            assert shard in (shard_of(a, 3), shard_of(p, 3))
    learned = set()
    for shard in range(3):
        s = IndexShard(shard, 3, params())
        if shard in builders:
            apply_batch(s, encode_builder(builders[shard]))
        learned |= {(o, p) for o, p, _ in s.cooc_cells()}
    assert learned == {(x, y) for a in "abc" for x, y in ((a, "d"), ("d", a))}


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(Exception, match="candidates"):
        ShardParams(candidates=0)
    with pytest.raises(Exception, match="index_shards"):
        IndexShard(3, 2)
    s = fed()
    with pytest.raises(Exception, match="embedding_dim"):
        s.apply_vector("i1", ItemVector.from_array(np.ones(DIM + 1), seq=10**6))


def test_batches_logged_and_compacted_restore_the_same_shard() -> None:
    # What the adapter persists: one IndexLog blob per batch with what the batch changed, and now and then a
    # snapshot that replaces the blobs before it; replayed in order (later values win) they rebuild the shard.
    s = IndexShard(0, 1, params())
    rng = np.random.default_rng(4)
    recent: tuple[str, ...] = ()
    blobs = []
    snapshot_at = 10
    for b in range(20):
        builders: dict[int, ShareBuilder] = {}
        for t in range(30):
            item = f"i{rng.integers(40)}"
            route_event(builders, recent, item, 1_000 * (30 * b + t), 1.0, f"c{t % 2}" if t % 3 else None,
                        window=5, shards=1)
            recent = (*(x for x in recent if x != item), item)[-5:]
        q = encode_query(query(rng.standard_normal(DIM).astype(np.float32), seeds=recent[-2:]))
        out = apply_batch(s, encode_builder(builders[0], [q]))
        assert len(out.partials) == 1
        blobs.append(index_log.encode(s.delta(out.items, out.cells)))
        if b == snapshot_at:
            snapshot = index_log.encode(s.snapshot())
    from_log = IndexShard.restore(0, 1, s.params, logs=[index_log.decode(x) for x in blobs])
    compacted = IndexShard.restore(0, 1, s.params,
                                   logs=[index_log.decode(x) for x in [snapshot, *blobs[snapshot_at + 1 :]]])
    q = query(rng.standard_normal(DIM).astype(np.float32), seeds=("i1", "i7"))
    for again in (from_log, compacted):
        assert again.cooc_rows() == s.cooc_rows()
        assert again.ids == s.ids and again.cats == s.cats
        assert again.rank(q).ranked == s.rank(q).ranked


def test_queries_rank_against_the_state_before_their_batch() -> None:
    # test-then-learn: an evaluation query never sees its own batch's interactions
    s = IndexShard(0, 1, params())
    b = ShareBuilder()
    b.add_event("a", T0, 1.0, None, ())
    apply_batch(s, encode_builder(b))
    b = ShareBuilder()
    b.add_event("target", T0 + 1, 1.0, None, ("a",))
    q = encode_query(query(None, kind="eval", target="target", source="cold_start"))
    out = apply_batch(s, encode_builder(b, [q]))
    assert not out.partials[0].target_known
    assert [i for i, _ in out.partials[0].trending] == ["a"]
    assert s.count[s.pos["target"]] == 1 and s.cooc_rows()["a"] == {s.pos["target"]: 1.0}


@FEW
@given(st.integers(0, 10_000), st.sampled_from([1, 3, 50]), st.sampled_from([1, 2]))
def test_batched_learning_equals_event_by_event(seed: int, batch: int, shards: int) -> None:
    # counts, categories and cells exactly; popularity up to float rounding (the batch formula is exact
    # in real numbers: decayed sums do not depend on order)
    one = fed(n_events=300, seed=seed, batch=1, shards=shards)
    many = fed(n_events=300, seed=seed, batch=batch, shards=shards)
    n = len(one.ids)
    assert sorted(one.ids) == sorted(many.ids)
    order = [many.pos[i] for i in one.ids]
    assert np.array_equal(one.count[:n], many.count[order]) and [many.cats[i] for i in order] == one.cats
    assert np.allclose(one.pop[:n], many.pop[order], rtol=1e-12) and np.array_equal(one.pop_ts[:n],
                                                                                     many.pop_ts[order])
    rows = {p: {one.ids[o]: v for o, v in r.items()} for p, r in one.cooc_rows().items()}
    assert rows == {p: {many.ids[o]: v for o, v in r.items()} for p, r in many.cooc_rows().items()}

"""AnnIndex against exact numpy brute force (recall@10 >= 0.95), across save -> load, tombstones and rebuilds."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from operators.ann import AnnIndex
from operators.ann.index import FORMAT_VERSION, TAG
from pipeline.errors import SchemaError, StateVersionError

DIM = 64
RECALL_MIN = 0.95


def clustered(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries drawn around the same 100 Gaussian centres (unnormalised, like learned embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, DIM)).astype(np.float32)
    items = centres[rng.integers(0, 100, n)] + 0.5 * rng.normal(size=(n, DIM))
    queries = centres[rng.integers(0, 100, n_queries)] + 0.5 * rng.normal(size=(n_queries, DIM))
    return items.astype(np.float32), queries.astype(np.float32)


def build(items: np.ndarray, **kw: int) -> tuple[AnnIndex, list[str]]:
    ids = [f"item-{i}" for i in range(len(items))]
    ix = AnnIndex(DIM, **kw)
    ix.upsert_many(ids, items, num_threads=2)
    return ix, ids


def brute_top(items: np.ndarray, ids: list[str], q: np.ndarray, k: int, live: np.ndarray | None = None) -> set[str]:
    scores = items @ q
    if live is not None:
        scores = np.where(live, scores, -np.inf)
    return {ids[i] for i in np.argsort(-scores)[:k]}


def recall_at_10(ix: AnnIndex, items: np.ndarray, ids: list[str], queries: np.ndarray, live=None) -> float:
    hits = [len({i for i, _ in ix.query(q, 10)} & brute_top(items, ids, q, 10, live)) for q in queries]
    return sum(hits) / (10 * len(queries))


@pytest.fixture(scope="module")
def data_10k() -> tuple[np.ndarray, np.ndarray]:
    return clustered(10_000, 200)


def test_recall_10k(data_10k) -> None:
    items, queries = data_10k
    ix, ids = build(items)
    assert len(ix) == 10_000
    assert recall_at_10(ix, items, ids, queries) >= RECALL_MIN
    # the exact path is the brute force itself, scores are float32 inner products
    q = queries[0]
    exact = ix.query_exact(q, 10)
    assert {i for i, _ in exact} == brute_top(items, ids, q, 10)
    assert exact[0][1] == pytest.approx(float(np.max(items @ q)), rel=1e-5)


def test_recall_100k() -> None:
    items, queries = clustered(100_000, 200, seed=1)
    ix, ids = build(items)  # defaults: M=16, ef_construction=100, ef_search=50
    assert len(ix) == 100_000
    assert ix.capacity >= 100_000
    assert recall_at_10(ix, items, ids, queries) >= RECALL_MIN


def test_save_load_gives_identical_answers(data_10k) -> None:
    items, queries = data_10k
    ix, ids = build(items[:3000])
    ix.remove(ids[:200])
    ix.upsert_many(ids[100:150], items[3000:3050])  # 50 removed ids come back, under new labels
    ix.upsert_many(ids[500:510], items[3050:3060])  # 10 live ids move
    blob = ix.to_bytes()
    assert blob[0] == TAG and struct.unpack_from("<H", blob, 1)[0] == FORMAT_VERSION
    back = AnnIndex.from_bytes(blob)
    assert back.version == ix.version
    assert len(back) == len(ix) and back.deleted_fraction == ix.deleted_fraction
    assert set(back.live_ids()) == set(ix.live_ids())
    np.testing.assert_array_equal(back.vector(ids[505]), items[3055])
    for q in queries[:50]:
        assert back.query(q, 10) == ix.query(q, 10)
        assert back.query(q, 10, exclude=set(ids[:300])) == ix.query(q, 10, exclude=set(ids[:300]))
    assert back.to_bytes() == blob
    # the restored index keeps working
    back.upsert_many(["new"], queries[:1] * 100)
    assert back.query(queries[0], 1)[0][0] == "new"
    back.rebuild()
    assert back.query(queries[0], 1)[0][0] == "new"


def test_bytes_of_an_empty_index_round_trip() -> None:
    ix = AnnIndex(8)
    back = AnnIndex.from_bytes(ix.to_bytes())
    assert len(back) == 0 and back.query(np.ones(8), 5) == []


def test_unknown_version_wrong_tag_and_corruption_are_refused() -> None:
    ix = AnnIndex(4)
    ix.upsert_many(["a", "b"], np.eye(4, dtype=np.float32)[:2])
    blob = ix.to_bytes()
    newer = blob[:1] + struct.pack("<H", FORMAT_VERSION + 1) + blob[3:]
    with pytest.raises(StateVersionError, match="version 2"):
        AnnIndex.from_bytes(newer)
    with pytest.raises(SchemaError, match="format tag"):
        AnnIndex.from_bytes(b"U" + blob[1:])
    with pytest.raises(SchemaError, match="corrupt"):
        AnnIndex.from_bytes(blob[:-10])
    with pytest.raises(SchemaError):
        AnnIndex.from_bytes(b"A")


def test_tombstones_never_come_back_and_rebuild_keeps_recall(data_10k) -> None:
    items, queries = data_10k
    ix, ids = build(items)
    rng = np.random.default_rng(3)
    gone = rng.choice(len(ids), size=3000, replace=False)
    removed = {ids[i] for i in gone}
    v0 = ix.version
    assert ix.tombstones == 0 and ix.rebuilds == 0
    assert ix.remove(sorted(removed) + ["never-there"]) == 3000
    assert ix.version == v0 + 1
    assert ix.tombstones == 3000 and ix.rebuilds == 0
    assert ix.deleted_fraction == pytest.approx(0.3)
    assert ix.needs_rebuild() and not ix.needs_rebuild(threshold=0.5)
    live = np.ones(len(ids), dtype=bool)
    live[gone] = False
    for q in queries:
        assert not {i for i, _ in ix.query(q, 10)} & removed
    ix.rebuild()
    assert ix.version == v0 + 2
    assert ix.tombstones == 0 and ix.rebuilds == 1  # the metrics of the index stage (docs/operations.md)
    assert ix.deleted_fraction == 0.0 and not ix.needs_rebuild()
    assert len(ix) == 7000
    assert recall_at_10(ix, items, ids, queries, live) >= RECALL_MIN
    for q in queries:
        assert not {i for i, _ in ix.query(q, 50)} & removed
    assert all(r not in ix for r in removed)
    ix.replace_all(ids[:10], items[:10])
    assert ix.rebuilds == 2 and ix.tombstones == 0 and len(ix) == 10


def test_updating_a_vector_moves_the_item(data_10k) -> None:
    items, queries = data_10k
    ix, ids = build(items[:2000])
    q = queries[0]
    far = min(range(2000), key=lambda i: float(items[i] @ q))
    assert ids[far] not in {i for i, _ in ix.query(q, 10)}
    ix.upsert_many([ids[far]], (q * 3.0)[None, :])
    top = ix.query(q, 10)
    assert top[0][0] == ids[far]
    assert top[0][1] == pytest.approx(3.0 * float(q @ q), rel=1e-5)
    assert len(ix) == 2000 and ix.deleted_fraction == 0.0


def test_exclusion_still_returns_k(data_10k) -> None:
    items, queries = data_10k
    ix, ids = build(items[:5000])
    q = queries[1]
    exclude = {i for i, _ in ix.query_exact(q, 40)} | {"unknown-1", "unknown-2"}
    res = ix.query(q, 10, exclude=exclude)
    assert len(res) == 10
    assert not {i for i, _ in res} & exclude
    # k larger than what is left outside the exclusion: everything that is left
    small, small_ids = build(items[:30])
    res = small.query(q, 10, exclude=set(small_ids[:25]))
    assert sorted(i for i, _ in res) == sorted(small_ids[25:])


def test_empty_index_and_k_beyond_live_count() -> None:
    ix = AnnIndex(4, initial_capacity=2)
    q = np.ones(4, dtype=np.float32)
    assert ix.query(q, 10) == [] and ix.query_exact(q, 10) == []
    ix.upsert_many(["a", "b", "c"], np.eye(4, dtype=np.float32)[:3])
    assert ix.capacity == 4  # grew geometrically from 2
    assert len(ix.query(q, 10)) == 3
    ix.remove(["a", "b", "c"])
    assert ix.query(q, 10) == [] and len(ix) == 0
    assert ix.query(q, 0) == []


def test_batch_semantics_and_version_counter() -> None:
    ix = AnnIndex(4, initial_capacity=1)
    e = np.eye(4, dtype=np.float32)
    ix.upsert_many(["a", "b", "a"], e[:3])  # repeated id: the last vector wins
    assert ix.version == 1 and len(ix) == 2
    np.testing.assert_array_equal(ix.vector("a"), e[2])
    ix.upsert_many([], np.zeros((0, 4)))
    assert ix.version == 1
    assert ix.remove(["zzz"]) == 0 and ix.version == 1
    ix.upsert("c", e[3])
    assert ix.version == 2 and ix.capacity == 4
    with pytest.raises(ValueError, match="shape"):
        ix.upsert_many(["d"], np.zeros((1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        ix.upsert_many(["d"], np.full((1, 4), np.nan))
    assert ix.version == 2 and "d" not in ix


def test_same_calls_give_the_same_bytes(data_10k) -> None:
    items, _ = data_10k
    blobs = []
    for _ in range(2):
        ix = AnnIndex(DIM)
        ix.upsert_many([f"i{i}" for i in range(1000)], items[:1000])
        ix.remove([f"i{i}" for i in range(0, 1000, 7)])
        blobs.append(ix.to_bytes())
    assert blobs[0] == blobs[1]

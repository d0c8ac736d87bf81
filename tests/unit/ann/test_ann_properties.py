"""Property: on small random indexes, answers are live, distinct, at most k, best first, never excluded."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.ann import AnnIndex

DIM = 6
ids_st = st.sampled_from([f"i{n}" for n in range(40)])
vec_st = st.lists(st.floats(-10, 10, width=32), min_size=DIM, max_size=DIM)
op_st = st.one_of(
    st.tuples(st.just("upsert"), st.lists(st.tuples(ids_st, vec_st), min_size=1, max_size=12)),
    st.tuples(st.just("remove"), st.lists(ids_st, max_size=6)),
    st.tuples(st.just("rebuild"), st.none()),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(op_st, max_size=8),
    query=vec_st,
    k=st.integers(0, 15),
    exclude=st.sets(ids_st, max_size=10),
    round_trip=st.booleans(),
)
def test_answers_are_live_distinct_bounded_sorted(ops, query, k, exclude, round_trip) -> None:
    ix = AnnIndex(DIM, initial_capacity=4, M=4, ef_construction=20, ef_search=10)
    live: dict[str, np.ndarray] = {}
    for kind, arg in ops:
        if kind == "upsert":
            ix.upsert_many([i for i, _ in arg], np.array([v for _, v in arg], dtype=np.float32))
            live.update((i, np.array(v, dtype=np.float32)) for i, v in arg)
        elif kind == "remove":
            ix.remove(arg)
            for i in arg:
                live.pop(i, None)
        else:
            ix.rebuild()
    if round_trip:
        ix = AnnIndex.from_bytes(ix.to_bytes())
    assert set(ix.live_ids()) == set(live)
    q = np.array(query, dtype=np.float32)
    for ex in (None, exclude):
        res = ix.query(q, k, exclude=ex)
        got = [i for i, _ in res]
        scores = [s for _, s in res]
        allowed = set(live) - (ex or set())
        assert len(got) == len(set(got)) == min(k, len(allowed))
        assert set(got) <= allowed
        assert scores == sorted(scores, reverse=True)
        for i, s in res:
            assert s == float(live[i] @ q) or abs(s - float(live[i] @ q)) <= 1e-4 * (1 + abs(s))

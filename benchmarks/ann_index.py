"""AnnIndex figures on clustered 64-d data: build, batch upserts, query QPS and recall@10 vs brute force.

    python benchmarks/ann_index.py [--sizes 10000 100000] [--json benchmarks/results/ann_index.json]

Build uses 2 threads (bulk load); upserts and queries use 1 thread, as in the job. Upserts move existing
items (a small step from the current vector, like an SGD update), so they take hnswlib's update path.
Brute force is numpy matmul + argpartition per query over the same vectors, measured in the same run.
Absolute figures are noisy on shared 2-core machines; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.ann import AnnIndex  # noqa: E402

DIM = 64
N_QUERIES = 1000
K = 10
EF = 50
UPDATE_PLAN = {1: 300, 100: 10, 1000: 3}  # batch size -> number of batches


def clustered(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, DIM)).astype(np.float32)
    items = centres[rng.integers(0, 100, n)] + 0.5 * rng.normal(size=(n, DIM))
    queries = centres[rng.integers(0, 100, n_queries)] + 0.5 * rng.normal(size=(n_queries, DIM))
    return items.astype(np.float32), queries.astype(np.float32)


def brute(items: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = items @ q
    top = np.argpartition(-s, k - 1)[:k]
    return top[np.argsort(-s[top])]


def run(n: int) -> dict:
    items, queries = clustered(n, N_QUERIES)
    ids = [f"item-{i}" for i in range(n)]
    ix = AnnIndex(DIM, M=16, ef_construction=100, ef_search=EF)
    t0 = time.perf_counter()
    ix.upsert_many(ids, items, num_threads=2)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    answers = [ix.query(q, K) for q in queries]
    qps = N_QUERIES / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    exact = [brute(items, q, K) for q in queries]
    brute_qps = N_QUERIES / (time.perf_counter() - t0)
    recall = sum(len({a for a, _ in got} & {ids[i] for i in ex}) for got, ex in zip(answers, exact, strict=True))
    recall /= K * N_QUERIES

    rng = np.random.default_rng(1)
    upserts = {}
    for threads in (1, 2):
        for batch, reps in UPDATE_PLAN.items():
            if threads == 2 and batch == 1:
                continue
            done, secs = 0, 0.0
            for _ in range(reps):
                rows = rng.choice(n, size=batch, replace=False)
                vecs = items[rows] + 0.05 * rng.normal(size=(batch, DIM)).astype(np.float32)
                t0 = time.perf_counter()
                ix.upsert_many([ids[r] for r in rows], vecs, num_threads=threads)
                secs += time.perf_counter() - t0
                done += batch
            upserts[f"batch_{batch}_threads_{threads}"] = done / secs

    t0 = time.perf_counter()
    blob = ix.to_bytes()
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    AnnIndex.from_bytes(blob)
    load_s = time.perf_counter() - t0
    return {
        "items": n,
        "build_s_2threads": build_s,
        "query_qps_k10_ef50": qps,
        "recall_at_10": recall,
        "brute_force_qps": brute_qps,
        "upserts_per_s": upserts,
        "bytes": len(blob),
        "to_bytes_s": save_s,
        "from_bytes_s": load_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results/ann_index.json")
    args = ap.parse_args()
    machine = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "hnswlib": version("hnswlib"),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    print(f"nproc {machine['nproc']}  python {machine['python']}  hnswlib {machine['hnswlib']}  numpy {np.__version__}")
    rows = [run(n) for n in args.sizes]
    keys = list(rows[0]["upserts_per_s"])
    head = f"{'items':>7} {'build s':>8} {'QPS':>8} {'R@10':>6} {'brute QPS':>9} " + " ".join(f"{k:>20}" for k in keys)
    print(head)
    for r in rows:
        ups = " ".join(f"{r['upserts_per_s'][k]:>20,.0f}" for k in keys)
        print(
            f"{r['items']:>7} {r['build_s_2threads']:>8.2f} {r['query_qps_k10_ef50']:>8,.0f} {r['recall_at_10']:>6.3f} "
            f"{r['brute_force_qps']:>9,.0f} {ups}"
        )
    for r in rows:
        print(f"{r['items']:>7} items: {r['bytes'] / 1e6:.1f} MB, to_bytes {r['to_bytes_s']:.2f} s, "
              f"from_bytes {r['from_bytes_s']:.2f} s")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine, "dim": DIM, "queries": N_QUERIES, "runs": rows}
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

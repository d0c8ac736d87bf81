"""Batched user-side BPR step against the per-row loop over ``bpr_user_step``, in one process.

Run: ``python benchmarks/bpr_batch.py`` (from the repository root). Prints a table and writes
``benchmarks/results/bpr_batch.json``. Single thread, plain CPython, no Flink. For each batch size n:
one call of ``bpr_batch_user_step`` over n rows with distinct users (one round), the same rows
through ``bpr_user_step`` one by one, ``apply_coalesced`` of the batch's gradients to a copy of the
item table, and ``rounds`` over n string user ids. Figures are µs of CPU time of this process per
row, the best of ``--repeat`` runs (noise on shared 2-core machines is large; the best run is the
least disturbed one). The item table defaults to the MovieLens-100K size (1,682 items), positives
drawn with a popularity skew and negatives uniformly, as ``sample_negatives`` does; so most items
of a batch repeat and the per-item sums are exercised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from operators.learner.bpr import BPRParams, bpr_user_step  # noqa: E402
from operators.learner.bpr_batch import CoalescedGrads, apply_coalesced, bpr_batch_user_step, rounds  # noqa: E402

SIZES = (50, 200, 1000, 5000)


def best_cpu(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Best CPU seconds per call over `repeat` runs of `calls` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t0) / calls)
    return best


def make_batch(rng: np.random.Generator, params: BPRParams, n: int, n_items: int) -> dict[str, np.ndarray]:
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 0.8
    weights_by_type = np.array(list(params.event_weights.values()))
    return {
        "users": (rng.standard_normal((n, params.dim)) * 0.3).astype(np.float32),
        "pos": rng.choice(n_items, size=n, p=popularity / popularity.sum()).astype(np.int64),
        "negs": rng.integers(0, n_items, size=(n, params.negatives), dtype=np.int64),
        "weights": rng.choice(weights_by_type, size=n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--negatives", type=int, default=8)
    ap.add_argument("--items", type=int, default=1682, help="item-table rows (default: MovieLens-100K)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bpr_batch.json")
    args = ap.parse_args()

    params = BPRParams(dim=args.dim, negatives=args.negatives)
    rng = np.random.default_rng(args.seed)
    item_vecs = (rng.standard_normal((args.items, args.dim)) * 0.3).astype(np.float32)
    item_biases = (rng.standard_normal(args.items) * 0.1).astype(np.float32)

    load_before = os.getloadavg()[0]
    results = []
    for n in SIZES:
        b = make_batch(rng, params, n, args.items)
        users, pos, negs, w = b["users"], b["pos"], b["negs"], b["weights"]
        ids = [f"user-{i}" for i in rng.integers(0, max(1, n // 3), size=n)]  # ~3 events per user

        def batch(users: np.ndarray = users, pos: np.ndarray = pos, negs: np.ndarray = negs,
                  w: np.ndarray = w) -> tuple[np.ndarray, CoalescedGrads]:
            return bpr_batch_user_step(params, users, pos, negs, w, item_vecs, item_biases)

        def loop(users: np.ndarray = users, pos: np.ndarray = pos, negs: np.ndarray = negs,
                 w: np.ndarray = w) -> list[np.ndarray]:
            return [
                bpr_user_step(params, users[i], item_vecs[pos[i]], float(item_biases[pos[i]]),
                              item_vecs[negs[i]], item_biases[negs[i]], float(w[i]))[0]
                for i in range(users.shape[0])
            ]

        new_users, grads = batch()
        max_diff = float(np.max(np.abs(new_users - np.stack(loop()))))
        table_v, table_b = item_vecs.copy(), item_biases.copy()

        def apply(grads: CoalescedGrads = grads, table_v: np.ndarray = table_v,
                  table_b: np.ndarray = table_b) -> None:
            apply_coalesced(params, table_v, table_b, grads)  # repeated on the copy: the cost, not the values

        def split(ids: list[str] = ids) -> list[np.ndarray]:
            return rounds(ids)

        reps = max(1, 20_000 // n)  # about 20k rows per timed run
        t_batch = best_cpu(batch, reps, args.repeat)
        t_apply = best_cpu(apply, reps, args.repeat)
        t_rounds = best_cpu(split, reps, args.repeat)
        t_loop = best_cpu(loop, max(1, 2_000 // n), max(3, args.repeat // 2))
        results.append({
            "n": n,
            "distinct_items": len(grads),
            "batch_us_per_row": round(t_batch / n * 1e6, 3),
            "loop_us_per_row": round(t_loop / n * 1e6, 3),
            "speedup": round(t_loop / t_batch, 1),
            "apply_coalesced_us_per_row": round(t_apply / n * 1e6, 3),
            "rounds_us_per_row": round(t_rounds / n * 1e6, 3),
            "max_abs_diff_vs_loop": max_diff,
        })
    load_after = os.getloadavg()[0]

    header = f"{'n':>6}  {'items':>6}  {'batch µs/row':>12}  {'loop µs/row':>11}  {'speedup':>7}  " \
             f"{'apply µs/row':>12}  {'rounds µs/row':>13}  {'max |Δu|':>9}"
    print(f"d={args.dim} K={args.negatives} item table {args.items} rows; CPU time, best of {args.repeat}")
    print(header)
    for r in results:
        print(f"{r['n']:>6}  {r['distinct_items']:>6}  {r['batch_us_per_row']:>12.2f}  {r['loop_us_per_row']:>11.2f}  "
              f"{r['speedup']:>6.1f}x  {r['apply_coalesced_us_per_row']:>12.2f}  {r['rounds_us_per_row']:>13.2f}  "
              f"{r['max_abs_diff_vs_loop']:>9.1e}")
    print(f"1-min load average {load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} CPUs "
          "(others' work slows this)")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "bpr_batch",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "dim": args.dim,
        "negatives": args.negatives,
        "items": args.items,
        "repeat": args.repeat,
        "timer": "time.process_time, best run",
        "results": results,
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")


if __name__ == "__main__":
    main()

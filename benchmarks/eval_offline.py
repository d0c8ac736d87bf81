"""Replay MovieLens-100K with several seeds and item-vector staleness levels, in one pass per variant.

    python benchmarks/eval_offline.py --data ../shared/data/movielens-100k --seeds 7 8 --staleness 0 2000 10000

Why staleness: in the job the user stage sees item vectors only through a feedback loop that lags
by up to a checkpoint interval; this shows what that lag costs in recall. Prints one line per variant
and, with --json, writes all figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators.learner.recommender import MostPopular, OnlineRecommender  # noqa: E402
from pipeline.eval_offline import BASELINE, default_params, load_events, replay  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/movielens-100k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[7])
    ap.add_argument("--staleness", type=int, nargs="+", default=[0])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    events = load_events(args.data).head(args.limit)
    base = default_params()
    models = {BASELINE: MostPopular()}
    for seed in args.seeds:
        for st in args.staleness:
            models[f"blend seed={seed} staleness={st}"] = OnlineRecommender(
                replace(base, item_staleness_events=st), seed=seed
            )
    t0 = time.perf_counter()
    res = replay(events, models, k=10)
    pop = res.models[BASELINE]
    rows = {}
    for name, r in res.models.items():
        ratios = {"ratio": r.recall / pop.recall, "ratio_last_half": r.recall_last_half / pop.recall_last_half}
        rows[name] = {**r.to_dict(), **ratios}
        print(f"{name:36s} R@10 {r.recall:.4f}  last50% {r.recall_last_half:.4f}  x pop {rows[name]['ratio']:.2f}"
              f"  {r.seconds:6.1f} s", flush=True)
    print(f"{len(events)} events, wall {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"events": len(events), "models": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

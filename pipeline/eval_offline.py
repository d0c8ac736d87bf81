"""Offline prequential replay: the project's one definition of recommendation quality.

Protocol (test-then-learn, timestamp order, stable sort; every rating is a positive interaction):
an event (u, i) is evaluated when u has history, i was seen before in the stream and u has not
interacted with i; each model ranks the known items u has not interacted with and scores a hit if
i is in its top k. recall@k = hits / evaluated events, over all events and over events in the
last 50% of the stream. Every model sees exactly the same evaluated events (cold users are skipped
for the popularity baseline too, so the ratio compares like with like).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from operators.learner.recommender import MostPopular, OnlineRecommender, RecommenderParams, ReplayModel
from pipeline.errors import ConfigError
from pipeline.interactions import ReadOptions

BASELINE = "most-popular"
MODEL = "blend"
SERVED = "served"


@dataclass(frozen=True, slots=True)
class Events:
    """Interactions in replay order; users and items are dense indices in order of first appearance."""

    users: NDArray[np.int64]
    items: NDArray[np.int64]
    ts: NDArray[np.int64]
    source: str = ""

    def __len__(self) -> int:
        return int(self.users.size)

    def head(self, n: int) -> Events:
        """The first `n` events (all when n <= 0); dense indices stay valid for a prefix."""
        if n <= 0 or n >= len(self):
            return self
        return Events(self.users[:n], self.items[:n], self.ts[:n], self.source)


@dataclass(slots=True)
class ModelResult:
    """Counts and recall of one model over one replay."""

    hits: int = 0
    evaluated: int = 0
    hits_last_half: int = 0
    evaluated_last_half: int = 0
    seconds: float = 0.0

    @property
    def recall(self) -> float:
        """recall@k over all evaluated events."""
        return self.hits / self.evaluated if self.evaluated else 0.0

    @property
    def recall_last_half(self) -> float:
        """recall@k over evaluated events in the last 50% of the stream."""
        return self.hits_last_half / self.evaluated_last_half if self.evaluated_last_half else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-able figures."""
        return {**asdict(self), "recall": self.recall, "recall_last_half": self.recall_last_half}


@dataclass(slots=True)
class ReplayResult:
    """Per-model figures of one replay, plus the shared event counts."""

    k: int
    events: int
    models: dict[str, ModelResult] = field(default_factory=dict)
    seconds: float = 0.0


def resolve_data_path(data: Path) -> Path:
    """Accept the `u.data` file or the folder holding it."""
    path = Path(data).expanduser()
    if path.is_dir():
        path = path / "u.data"
    if not path.is_file():
        msg = (f"eval-offline: no MovieLens ratings file at {path}. Pass --data with the path of "
               "u.data (tab-separated user, item, rating, unix time) or of the folder holding it; "
               "download ml-100k from grouplens.org, outside the repository (the licence forbids copying it in).")
        raise ConfigError(msg)
    return path


def load_events(data: Path, options: ReadOptions | None = None) -> Events:
    """Read u.data, sort by timestamp (stable) and map ids to dense first-appearance indices.

    With ``options`` any file `pipeline.interactions` reads (`load_mapped_events`).
    """
    if options is not None:
        return load_mapped_events(Path(data), options)
    path = resolve_data_path(data)
    try:
        raw = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    except (ValueError, OSError) as exc:
        msg = (f"eval-offline: cannot parse {path} as MovieLens u.data (tab-separated integers: "
               f"user, item, rating, unix time): {exc}. Check the file is the unmodified ml-100k u.data.")
        raise ConfigError(msg) from exc
    if raw.shape[0] == 0 or raw.shape[1] != 4:
        msg = (f"eval-offline: {path} has shape {raw.shape}; expected rows of 4 tab-separated columns "
               "(user, item, rating, unix time).")
        raise ConfigError(msg)
    order = np.argsort(raw[:, 3], kind="stable")
    raw = raw[order]
    return Events(_dense(raw[:, 0]), _dense(raw[:, 1]), raw[:, 3].copy(), str(path))


def load_mapped_events(path: Path, options: ReadOptions) -> Events:
    """Every interaction of a mapped file (CSV/TSV/JSON lines, `pipeline.interactions`) as replay events.

    Every row is a positive interaction, whatever its type (the protocol of this evaluator); string ids
    become dense indices in order of first appearance, times become unix seconds. Rows the reader
    rejects are reported with their reasons, never dropped silently; a file with none left is an error.
    """
    from pipeline.interactions import read_interactions

    reader = read_interactions(path, options)
    rows = [(str(e["user_id"]), str(e["item_id"]), int(e["ts"])) for e in reader]
    report = reader.report
    if report.rejected_total:
        shown = [str(p) for probs in report.examples.values() for p in probs][:5]
        print(f"eval: {report.rejected_total} rows of {path} rejected ({dict(report.rejected)}): " + "; ".join(shown))
    if not rows:
        msg = f"eval: no interaction could be read from {path} ({reader.layout.describe()}); check --map and --format"
        raise ConfigError(msg)
    order = sorted(range(len(rows)), key=lambda j: rows[j][2])  # stable: file order within one timestamp
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u = np.fromiter((users.setdefault(rows[j][0], len(users)) for j in order), dtype=np.int64, count=len(rows))
    i = np.fromiter((items.setdefault(rows[j][1], len(items)) for j in order), dtype=np.int64, count=len(rows))
    ts = np.fromiter((rows[j][2] // 1000 for j in order), dtype=np.int64, count=len(rows))
    return Events(u, i, ts, str(path))


def _dense(ids: NDArray[np.int64]) -> NDArray[np.int64]:
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse].astype(np.int64)


def replay(
    events: Events,
    models: Mapping[str, ReplayModel],
    k: int = 10,
    progress: Callable[[int, int], None] | None = None,
    every: int = 1000,
) -> ReplayResult:
    """Test-then-learn over `events` for every model at once (same evaluated events for all)."""
    n = len(events)
    half = n // 2  # events with index >= half form the "last 50%"
    result = ReplayResult(k=k, events=n, models={name: ModelResult() for name in models})
    seen: dict[int, set[int]] = {}  # per user; non-empty = the user has history
    n_known = 0
    start = time.perf_counter()
    users, items, ts = events.users.tolist(), events.items.tolist(), events.ts.tolist()
    for t in range(n):
        u, i, now = users[t], items[t], float(ts[t])
        useen = seen.setdefault(u, set())
        if useen and i < n_known and i not in useen:
            seen_arr = np.fromiter(useen, dtype=np.int64, count=len(useen))
            for name, model in models.items():
                t0 = time.perf_counter()
                top = model.rank(u, seen_arr, n_known, k, now)
                r = result.models[name]
                r.seconds += time.perf_counter() - t0
                hit = bool(np.any(top == i))
                r.evaluated += 1
                r.hits += hit
                if t >= half:
                    r.evaluated_last_half += 1
                    r.hits_last_half += hit
        for name, model in models.items():
            t0 = time.perf_counter()
            model.learn(u, i, now)
            result.models[name].seconds += time.perf_counter() - t0
        useen.add(i)
        n_known = max(n_known, i + 1)  # dense first-appearance indices: known items are a prefix
        if progress is not None and ((t + 1) % every == 0 or t + 1 == n):
            progress(t + 1, n)
    result.seconds = time.perf_counter() - start
    return result


def default_params(dim: int = 64, negatives: int = 8) -> RecommenderParams:
    """The tuned recommender settings with the CLI's dimension and negatives applied."""
    base = RecommenderParams()
    return replace(base, bpr=replace(base.bpr, dim=dim, negatives=negatives))


def main(
    data: Path,
    dim: int = 64,
    negatives: int = 8,
    seed: int = 7,
    k: int = 10,
    limit: int = 0,
    json_out: Path | None = None,
    served: bool = False,
    options: ReadOptions | None = None,
) -> ReplayResult:
    """Load, replay popularity and the blend in one run, print a table, optionally write JSON.

    ``served`` adds the same learner ranked the way the job serves it (`ServedRecommender`: one index
    shard, HNSW candidates, the session rung for new users, with the job's settings): the offline figure
    that `liverec eval-pipeline` must reproduce.
    """
    import typer
    from rich import box
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    try:
        params = default_params(dim=dim, negatives=negatives)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dim / --negatives") from exc
    if k < 1:
        msg = f"recall@k needs k >= 1, got {k}."
        raise typer.BadParameter(msg, param_hint="--k")
    try:
        events = load_events(data, options).head(limit)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc
    models: dict[str, ReplayModel] = {BASELINE: MostPopular(), MODEL: OnlineRecommender(params, seed=seed)}
    if served:
        models[SERVED] = served_model(params, seed)
    console = Console()
    if console.is_terminal:
        with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("replay", total=len(events))
            result = replay(events, models, k=k, progress=lambda done, _n: bar.update(task, completed=done))
    else:  # a log file: a plain line every 10% instead of a redrawn bar
        every = max(1000, len(events) // 10)
        result = replay(events, models, k=k, every=every,
                        progress=lambda done, n: console.print(f"replay {done}/{n} events", highlight=False))

    base = result.models[BASELINE]
    table = Table(title=f"prequential recall@{k} (l50 = last 50% of events), {result.events} events",
                  caption=events.source, box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", f"R@{k}", f"R@{k} l50", "x pop", "x pop l50", "evaluated", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for name, r in result.models.items():
        table.add_row(name, f"{r.recall:.4f}", f"{r.recall_last_half:.4f}", f"{_ratio(r.recall, base.recall):.2f}",
                      f"{_ratio(r.recall_last_half, base.recall_last_half):.2f}", str(r.evaluated), f"{r.seconds:.1f}")
    console.print(table)
    console.print(f"wall {result.seconds:.1f} s; seed {seed}, dim {dim}, negatives {negatives}; evaluated = "
                  f"events of warm users on known, unseen items ({base.evaluated_last_half} in the last 50%)",
                  highlight=False)

    if json_out is not None:
        payload = {
            "protocol": "prequential test-then-learn, timestamp order (stable), warm users, known unseen items",
            "data": events.source,
            "events": result.events,
            "k": k,
            "seed": seed,
            "params": _params_dict(params),
            "wall_seconds": result.seconds,
            "models": {name: r.to_dict() for name, r in result.models.items()},
            "ratio_to_popularity": {
                "all": _json_ratio(result.models[MODEL].recall, base.recall),
                "last_half": _json_ratio(result.models[MODEL].recall_last_half, base.recall_last_half),
            },
        }
        Path(json_out).write_text(json.dumps(payload, indent=2) + "\n")
    return result


def served_model(params: RecommenderParams, seed: int) -> ReplayModel:
    """`ServedRecommender` with the job's serving settings (LIVEREC_* / defaults)."""
    from operators.index.logic import ShardParams
    from operators.learner.recommender import ServedRecommender
    from pipeline.settings import load_settings

    s = load_settings()
    shard = ShardParams(bpr=params.bpr, cooc=params.cooc, half_life_ms=params.half_life_s, weights=params.blend,
                        candidates=s.index_candidates, exact_below=s.index_exact_below, seed=seed)
    return ServedRecommender(params, seed, shard, personalize_after=s.personalize_after_events)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _json_ratio(a: float, b: float) -> float | None:
    return a / b if b else None  # JSON has no NaN


def _params_dict(params: RecommenderParams) -> dict[str, object]:
    return {
        "bpr": {k: v for k, v in asdict(params.bpr).items() if k != "event_weights"}
        | {"event_weights": dict(params.bpr.event_weights)},
        "cooc": asdict(params.cooc),
        "half_life_s": params.half_life_s,
        "blend_weights": dict(params.blend.weights),
        "item_staleness_events": params.item_staleness_events,
    }

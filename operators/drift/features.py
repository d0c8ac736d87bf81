"""The drift features of a batch: pure functions from what a stage has per batch to one `FeatureBatch`.

The user stage calls `user_features` once per batch with plain lists (or arrays); the gather step calls
`served_features` per answer or per batch of answers (`ScoreBuffer` collects answers between calls).
Each returns a `FeatureBatch` (`state_schemas.feature_batch`): per feature, the batch's samples as
float32 and the event-time span they came from. Features without samples in the batch are left out; an
empty tuple means "nothing to send".

Representations (the drift monitor compares two windows of each feature with a two-sample
Kolmogorov–Smirnov test, `operators.drift.logic`):

- ``event_type``: one sample per applied event, its wire code (`EVENT_TYPE_CODES`: view 0, click 1, ...).
  Per-event codes rather than per-batch shares: the test then compares the two windows' type mixes
  directly, and every event counts once however the batches were cut. The KS distance between two
  mixes of codes lies between half the largest change of one type's share and the total variation
  distance, so a share that moves by ``d`` gives a statistic of at least ``d / 2`` whatever the order of
  the codes.
- ``category``: one sample per applied event, a stable code of its category: crc32 of the UTF-8 name
  scaled to [0, 1) (`category_code`), and -1 for an event without a category. The order of the codes
  means nothing, but the bound above holds for any order: a category whose share of events moves by
  ``d`` (a new one appearing included) moves the statistic by at least ``d / 2``. This is the
  per-category share, without one feature per category (the set of categories is open).
- ``dwell_ms``: one sample per applied event that has a dwell time.
- ``session_events``, ``session_ms``: per session closed in the batch, its event count and its length
  in event time (last event − first event); the span is that of the sessions' last events.
- ``user_norm``: per user whose embedding the batch changed, the L2 norm of the embedding after the
  batch; the span is the batch's events'. It moves while the learner warms up (vectors grow from their
  small initial values), so a job started from empty state shows drift here until the norms settle.
- ``served_score``: per item of a served answer, its score. Scores of different rungs are not on one
  scale (`state_schemas.requests_v1`): pass the scores of ranked answers (``personalized`` and
  ``session``) only. The span is the queries' event times.

Discrete data and KS: the p-value of `scipy.stats.ks_2samp` assumes continuous distributions. With ties
(codes, event counts) the test is conservative: its real false-alarm rate is below the nominal one, so
it needs a somewhat larger shift to fire. That errs on the side of fewer false alarms.

>>> fb = user_features(types=[0, 0, 4], ts=[10, 20, 30], dwell_ms=[100, None, 300], categories=["a", None, "a"])
>>> [(f.name, f.start_ts, f.end_ts, f.size) for f in fb]
[('event_type', 10, 30, 3), ('dwell_ms', 10, 30, 2), ('category', 10, 30, 3)]
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from state_schemas.feature_batch import FeatureBatch, FeatureSamples

EVENT_TYPE: Final = "event_type"
DWELL: Final = "dwell_ms"
CATEGORY: Final = "category"
SESSION_EVENTS: Final = "session_events"
SESSION_MS: Final = "session_ms"
USER_NORM: Final = "user_norm"
SERVED_SCORE: Final = "served_score"
#: Every feature the stages produce, in a fixed order (the default of the drift settings).
FEATURES: Final = (EVENT_TYPE, DWELL, CATEGORY, SESSION_EVENTS, SESSION_MS, USER_NORM, SERVED_SCORE)

NO_CATEGORY: Final = -1.0
_SCALE: Final = 1.0 / 2**32


@lru_cache(maxsize=4096)
def category_code(category: str | None) -> float:
    """The sample of an event's category: crc32 of its UTF-8 bytes in [0, 1), -1 without one.

    Stable across processes and builds (crc32, like the job's shard keys), so a window taken before a
    restart compares with one taken after it.

    >>> category_code(None), category_code("books") == category_code("books"), 0 <= category_code("x") < 1
    (-1.0, True, True)
    """
    if category is None:
        return NO_CATEGORY
    return zlib.crc32(category.encode()) * _SCALE


def _samples(name: str, ts: NDArray[np.int64], values: ArrayLike) -> FeatureSamples | None:
    """Samples of ``name`` whose sources have event times ``ts``; None when there are none."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.size == 0 or ts.size == 0:
        return None
    return FeatureSamples(name, int(ts.min()), int(ts.max()), arr.astype("<f4", copy=False).tobytes())


def user_features(
    *,
    types: Sequence[int] | NDArray[np.integer[Any]],
    ts: Sequence[int] | NDArray[np.integer[Any]],
    dwell_ms: Sequence[int | None],
    categories: Sequence[str | None],
    norms: Sequence[float] | NDArray[np.floating[Any]] = (),
    sessions: Iterable[tuple[int, int, int]] = (),
) -> FeatureBatch:
    """The user stage's features of one batch.

    The first four are parallel, one entry per applied event (not duplicates) in stream order:
    ``types`` its `EVENT_TYPE_CODES` code, ``ts`` its event time, ``dwell_ms`` its dwell (None when the
    event has none), ``categories`` its category (None when it has none). ``norms``: the L2 norm of each
    user's embedding after the batch, for the users the batch's events changed. ``sessions``: per session
    closed in the batch, (event count, start_ts, end_ts) as in `operators.profile.logic.SessionSummary`.
    """
    n = len(types)
    if not len(ts) == len(dwell_ms) == len(categories) == n:
        msg = (f"user_features: one entry per event in types, ts, dwell_ms and categories; got {n}, {len(ts)}, "
               f"{len(dwell_ms)}, {len(categories)}")
        raise ValueError(msg)
    times = np.asarray(ts, dtype=np.int64)
    out: list[FeatureSamples | None] = [_samples(EVENT_TYPE, times, types)]
    has_dwell = [i for i, d in enumerate(dwell_ms) if d is not None]
    out.append(_samples(DWELL, times[has_dwell], [float(dwell_ms[i] or 0) for i in has_dwell]))
    out.append(_samples(CATEGORY, times, [category_code(c) for c in categories]))
    closed = list(sessions)
    if closed:
        s = np.asarray(closed, dtype=np.int64).reshape(-1, 3)
        out.append(_samples(SESSION_EVENTS, s[:, 2], s[:, 0]))
        out.append(_samples(SESSION_MS, s[:, 2], s[:, 2] - s[:, 1]))
    out.append(_samples(USER_NORM, times, _finite(norms)))
    return tuple(f for f in out if f is not None)


def served_features(ts: Sequence[int], scores: Sequence[Sequence[float]]) -> FeatureBatch:
    """The served side's feature: the scores of the items of answers, one list per answer.

    ``ts[i]`` is the event time of answer ``i``'s query (its ``ts``), ``scores[i]`` the scores of its items
    in any order. Non-finite scores are left out, as the answer JSON leaves them out (it writes null): they
    are a bug upstream, not a distribution.
    """
    if len(ts) != len(scores):
        msg = f"served_features: one ts per answer; got {len(ts)} ts for {len(scores)} answers"
        raise ValueError(msg)
    times = np.asarray([t for t, s in zip(ts, scores, strict=True) if len(s)], dtype=np.int64)
    flat = _finite([x for s in scores for x in s])
    got = _samples(SERVED_SCORE, times, flat)
    return () if got is None else (got,)


def _finite(values: Sequence[float] | NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    finite: NDArray[np.float32] = arr[np.isfinite(arr)]
    return finite


class ScoreBuffer:
    """Scores of answers collected between two sends, for a stage that answers one query per call.

    Why: the drift monitor should get one record per batch, and the gather step is called once per
    query. ``add`` each ranked answer, and ``take`` returns a `FeatureBatch` once ``min_samples`` scores
    are in (then starts over), else an empty tuple. Not state: scores in the buffer at a failure are lost,
    which only delays the next window a little.

    >>> buf = ScoreBuffer(min_samples=3)
    >>> buf.add(5, [1.0, 0.5]); buf.take()
    ()
    >>> buf.add(7, [0.25]); [(f.name, f.start_ts, f.end_ts, f.size) for f in buf.take()]
    [('served_score', 5, 7, 3)]
    """

    __slots__ = ("_min", "_scores", "_ts")

    def __init__(self, min_samples: int = 200) -> None:
        """Send once at least ``min_samples`` scores are buffered."""
        self._min = min_samples
        self._ts: list[int] = []
        self._scores: list[Sequence[float]] = []

    def __len__(self) -> int:
        """Scores buffered."""
        return sum(len(s) for s in self._scores)

    def add(self, ts: int, scores: Sequence[float]) -> None:
        """Buffer one answer's scores (the query's event time ``ts``)."""
        self._ts.append(ts)
        self._scores.append(scores)

    def take(self, force: bool = False) -> FeatureBatch:
        """The buffered scores as a batch when there are enough (or any, with ``force``), else ()."""
        if len(self) < (1 if force else self._min):
            return ()
        out = served_features(self._ts, self._scores)
        self._ts, self._scores = [], []
        return out

"""Drift detection as one pure step: ``step(state, feature_batch, params, now_ms) -> (state, out)``.

No pyflink import, no clock (``now_ms`` only stamps ``detected_at``). Per monitored feature
(`operators.drift.features`) the state holds two windows of samples (`state_schemas.drift_state`):

- **Reference.** Filled first, from the feature's first samples, until it is *complete*: it has been
  offered at least ``min_samples`` samples and its event-time span is at least ``span_ms``
  (`WindowSpec`). Then it is frozen: later samples go to the current window.
- **Current.** Filled the same way (its own `WindowSpec`); when complete, the two windows are compared
  with `scipy.stats.ks_2samp` (two-sided) and the current window starts over, empty (tumbling windows).
- **Bounded.** A window keeps at most ``samples`` samples: beyond that it keeps a uniform random sample
  of everything offered to it (reservoir sampling, Algorithm R, with a deterministic hash of the
  feature, the window and the sample's position instead of a generator, so the same batches give the
  same state and a replay the same alerts). A window of ten minutes of events therefore represents all
  ten minutes, at any rate, in a state of fixed size.

**Warm-up.** Samples of a batch that starts less than ``warmup_ms`` of event time after the start of
the feature's first batch are not used (counted in `DriftOut.held`). Why: a job that starts from empty
state first sees biased samples. Sessions that closed early are the short ones (a long one cannot have
closed yet), and the learner's vectors grow from their small initial values. A reference taken then
would make the first windows after it alert.

**Breach rule.** A test breaches when its p-value is below ``alpha / len(features)`` *and* its statistic
is at least ``min_statistic``:

- ``alpha`` is the false-alarm probability of one round of tests (one window of every feature) on a
  stationary stream; divided among the features (Bonferroni), the round's false-alarm probability is at
  most ``alpha`` whatever the dependence between features. Over ``W`` rounds at most ``W × alpha`` false
  alarms are expected (union bound); `benchmarks/drift_false_alarms.py` measures the real figure, which is
  lower (discrete features make KS conservative, and the statistic floor below).
- ``min_statistic`` is an effect size: with thousands of samples KS finds differences far too small to
  matter (or caused by samples that are not independent: events of one user cluster in time), and the
  floor keeps those from alerting. A distance of 0.1 means some threshold splits the two windows'
  samples in proportions 10 points apart.

**Debouncing.** A breach opens an *episode* and emits one alert; further breaches in the same episode
emit nothing. What ends it depends on ``rebaseline``:

- ``rebaseline=True`` (default): the alert empties the reference window; it refills from the samples that
  follow, and the episode ends when it is complete. Testing then resumes against the new normal, so a
  lasting shift alerts once, and a second shift later alerts again. The current window of the alert is
  not used as the new reference: it may straddle the shift. Nor is a batch that starts before that
  window's end (counted in `DriftOut.held`): several user shards send batches over the same stretch of
  event time, and while the job catches up a batch can span minutes, so the batches that arrive right
  after the alert can still hold samples from before the shift.
- ``rebaseline=False``: the reference is kept; windows keep being tested against it, and the episode
  ends after ``quiet_windows`` tests in a row without a breach. A lasting shift alerts once and the
  feature stays in its episode until it returns to the reference.

>>> import numpy as np
>>> from state_schemas.feature_batch import FeatureSamples
>>> p = DriftParams(features=("dwell_ms",), reference=WindowSpec(500, 0, 500), current=WindowSpec(500, 0, 500))
>>> rng = np.random.default_rng(1)
>>> s, out = step(initial_state(p), (FeatureSamples.from_array("dwell_ms", 0, 9, rng.normal(0, 1, 500)),), p, 0)
>>> s, out = step(s, (FeatureSamples.from_array("dwell_ms", 10, 19, rng.normal(2, 1, 500)),), p, 0)
>>> [(a.feature, a.statistic > 0.5, a.reference.end_ts, a.current.start_ts) for a in out.alerts]
[('dwell_ms', True, 9, 10)]
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.stats import ks_2samp

from operators.drift.features import FEATURES
from state_schemas.alerts_v1 import Alert, WindowSpan
from state_schemas.codec import NO_TS
from state_schemas.drift_state import DriftState, FeatureState, Window
from state_schemas.errors import ConfigError
from state_schemas.feature_batch import FeatureBatch

_GOLDEN: Final = 0x9E3779B97F4A7C15
_M1: Final = 0xBF58476D1CE4E5B9
_M2: Final = 0x94D049BB133111EB
_MASK: Final = 2**64 - 1
_REFERENCE, _CURRENT = 1, 2


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """When a window is complete, and how many samples it keeps.

    Complete once it has been offered at least ``min_samples`` samples *and* spans at least ``span_ms``
    of event time (``span_ms`` 0: by count alone). It keeps at most ``samples`` of them (a uniform
    sample beyond that).
    """

    samples: int
    span_ms: int = 0
    min_samples: int = 1

    def __post_init__(self) -> None:
        """Reject a window that could never be tested or never hold a sample."""
        if self.samples < 1 or self.min_samples < 1 or self.span_ms < 0:
            msg = (f"drift window: need samples >= 1, min_samples >= 1 and span_ms >= 0; got {self.samples}, "
                   f"{self.min_samples}, {self.span_ms}. Fix the LIVEREC_DRIFT_* settings.")
            raise ConfigError(msg)

    def complete(self, w: Window) -> bool:
        """Is ``w`` ready to be used (reference) or tested (current)?"""
        return w.seen >= self.min_samples and w.seen > 0 and w.end_ts - w.start_ts >= self.span_ms


@dataclass(frozen=True, slots=True)
class DriftParams:
    """Settings of the drift monitor, as plain values (see the module docstring)."""

    features: tuple[str, ...] = FEATURES
    reference: WindowSpec = field(default_factory=lambda: WindowSpec(2_000, 600_000, 200))
    current: WindowSpec = field(default_factory=lambda: WindowSpec(1_000, 300_000, 200))
    alpha: float = 0.001
    min_statistic: float = 0.1
    rebaseline: bool = True
    quiet_windows: int = 2
    warmup_ms: int = 0
    seed: int = 7
    job_name: str = "liverec"
    model_version: str = ""

    def __post_init__(self) -> None:
        """Reject settings the monitor cannot work with, naming them."""
        if (not self.features or len(set(self.features)) != len(self.features) or not 0.0 < self.alpha < 1.0
                or not 0.0 <= self.min_statistic <= 1.0 or self.quiet_windows < 1 or self.warmup_ms < 0):
            msg = (f"DriftParams: need distinct features (at least one), 0 < alpha < 1, 0 <= min_statistic <= 1, "
                   f"quiet_windows >= 1, warmup_ms >= 0; got {self.features}, {self.alpha}, {self.min_statistic}, "
                   f"{self.quiet_windows}, {self.warmup_ms}. Fix the LIVEREC_DRIFT_* settings.")
            raise ConfigError(msg)

    @property
    def test_alpha(self) -> float:
        """The p-value threshold of one test: ``alpha`` divided among the features."""
        return self.alpha / len(self.features)


class Tested(NamedTuple):
    """One window compared with its reference."""

    feature: str
    statistic: float
    p_value: float
    breach: bool


@dataclass(slots=True)
class DriftOut:
    """What one step did: alerts to emit, the tests it ran, and the samples it could not use."""

    alerts: list[Alert] = field(default_factory=list)
    tests: list[Tested] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # feature not monitored -> samples
    nonfinite: int = 0  # NaN / infinite samples left out (counted, never tested)
    held: int = 0  # samples of batches that start before a feature's hold time: warm-up, or the last alert


def initial_state(params: DriftParams) -> DriftState:
    """Empty windows for every monitored feature."""
    return DriftState(tuple(FeatureState(name) for name in params.features))


def reconcile(state: DriftState, params: DriftParams) -> DriftState:
    """``state`` for the monitored features of ``params``: new ones empty, dropped ones gone.

    Why: after a restore with other settings. A window holding more samples than its new capacity
    starts over (a smaller window is a new window).
    """
    held = {f.name: f for f in state.features}
    out = []
    for name in params.features:
        f = held.get(name, FeatureState(name))
        if f.reference.kept > params.reference.samples:
            f = f._replace(reference=Window(f.reference.serial + 1), episode=False, quiet=0)
        if f.current.kept > params.current.samples:
            f = f._replace(current=Window(f.current.serial + 1))
        out.append(f)
    return DriftState(tuple(out))


def step(state: DriftState, batch: FeatureBatch, params: DriftParams, now_ms: int) -> tuple[DriftState, DriftOut]:
    """Offer one batch's samples to the windows; test every current window that became complete."""
    out = DriftOut()
    pos = {f.name: i for i, f in enumerate(state.features)}
    features = list(state.features)
    for part in batch:
        i = pos.get(part.name)
        if i is None:
            out.ignored[part.name] = out.ignored.get(part.name, 0) + part.size
            continue
        f = features[i]
        if f.hold_ts == NO_TS:
            f = features[i] = f._replace(hold_ts=part.start_ts + params.warmup_ms)
        if part.start_ts < f.hold_ts:
            out.held += part.size
            continue
        values = part.values()
        finite = np.isfinite(values)
        if not finite.all():
            out.nonfinite += int(values.size - finite.sum())
            values = values[finite]
        if values.size:
            features[i] = _offer_feature(f, values, part.start_ts, part.end_ts, params, now_ms, out)
    return DriftState(tuple(features)), out


def _offer_feature(f: FeatureState, values: NDArray[np.float32], start: int, end: int, p: DriftParams,
                   now_ms: int, out: DriftOut) -> FeatureState:
    if not p.reference.complete(f.reference):
        ref = _offer(f.reference, values, start, end, p.reference.samples, _salt(p.seed, f.name, _REFERENCE))
        # With rebaseline, an episode lasts until the new reference is complete.
        done = p.reference.complete(ref)
        return f._replace(reference=ref, episode=f.episode and not done, quiet=0 if done else f.quiet)
    cur = _offer(f.current, values, start, end, p.current.samples, _salt(p.seed, f.name, _CURRENT))
    if not p.current.complete(cur):
        return f._replace(current=cur)
    return _test(f, cur, p, now_ms, out)


def _test(f: FeatureState, cur: Window, p: DriftParams, now_ms: int, out: DriftOut) -> FeatureState:
    ref = f.reference
    with warnings.catch_warnings():
        # "Exact calculation unsuccessful. Switching to method=asymp": expected for some window sizes
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ks_2samp(ref.values(), cur.values())
    statistic, p_value = float(res.statistic), float(res.pvalue)
    breach = p_value < p.test_alpha and statistic >= p.min_statistic
    out.tests.append(Tested(f.name, statistic, p_value, breach))
    f = f._replace(current=Window(cur.serial + 1), statistic=statistic, p_value=p_value)
    if f.episode:  # only without rebaseline: the reference stayed, and so did the episode
        quiet = 0 if breach else f.quiet + 1
        return f._replace(quiet=quiet, episode=quiet < p.quiet_windows)
    if not breach:
        return f
    out.alerts.append(Alert(
        feature=f.name, statistic=statistic, p_value=p_value, location=float(res.statistic_location),
        reference=WindowSpan(ref.start_ts, ref.end_ts, ref.kept, ref.seen),
        current=WindowSpan(cur.start_ts, cur.end_ts, cur.kept, cur.seen),
        alpha=p.test_alpha, min_statistic=p.min_statistic, detected_at=now_ms, job_name=p.job_name,
        model_version=p.model_version,
    ))
    if p.rebaseline:
        return f._replace(reference=Window(ref.serial + 1), episode=True, quiet=0,
                          hold_ts=max(f.hold_ts, cur.end_ts + 1))
    return f._replace(episode=True, quiet=0)


def _offer(w: Window, values: NDArray[np.float32], start: int, end: int, capacity: int, salt: int) -> Window:
    """``w`` after it was offered ``values`` (event times ``start``..``end``): reservoir sampling, Algorithm R.

    The first ``capacity`` samples are kept as they come; the sample at position ``k`` after them replaces
    slot ``h(k) mod (k + 1)`` when that is below ``capacity``, ``h`` a 64-bit hash of ``k`` and the window.
    """
    kept = w.values()
    room = max(0, capacity - kept.size)
    head, rest = values[:room], values[room:]
    buf = np.concatenate((kept, head)).astype("<f4") if head.size else kept.copy()
    if rest.size:
        k = np.arange(w.seen + head.size, w.seen + values.size, dtype=np.uint64)
        slot = _mix(k ^ np.uint64((salt ^ (w.serial * _GOLDEN)) & _MASK)) % (k + np.uint64(1))
        take = slot < capacity
        if take.any():
            # Algorithm R in order: a later sample replacing the same slot wins.
            rev_slots, rev_vals = slot[take][::-1], rest[take][::-1]
            slots, first = np.unique(rev_slots, return_index=True)
            buf[slots.astype(np.int64)] = rev_vals[first]
    return Window(
        serial=w.serial,
        start_ts=start if w.seen == 0 or w.start_ts == NO_TS else min(w.start_ts, start),
        end_ts=end if w.seen == 0 else max(w.end_ts, end),
        seen=w.seen + int(values.size),
        data=buf.tobytes(),
    )


@lru_cache(maxsize=1024)
def _salt(seed: int, name: str, role: int) -> int:
    """A 64-bit constant per (seed, feature, window role), so two windows never share a reservoir stream."""
    x = np.asarray([((seed & 0xFFFFFFFF) << 32 | zlib.crc32(name.encode())) ^ (role << 62)], dtype=np.uint64)
    return int(_mix(x)[0])


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser over an array (wrapping uint64 arithmetic)."""
    z = x + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


#: What a feature's state costs at most, beyond its samples (name of up to 255 bytes included).
FEATURE_OVERHEAD_BYTES: Final = 1 + 255 + 21 + 2 * 32


def max_state_bytes(params: DriftParams) -> int:
    """Upper bound of the encoded state for ``params``, whatever the stream."""
    per = FEATURE_OVERHEAD_BYTES + 4 * (params.reference.samples + params.current.samples)
    return 5 + len(params.features) * per


"""What the job does after a drift alert: a temporary adjustment of one knob, decided by a pure policy.

The policy (`ActionParams`) names an action, the features whose alerts trigger it, a factor and a
duration. `plan` turns one alert into at most one `Adjustment` (`state_schemas.adjustment`): multiply a
knob by ``factor`` for ``duration_ms`` of event time from the end of the alert's current window. A stage
that applies adjustments keeps the ones it received (`hold`) and asks `factor_at` for the factor at an
event's or a query's time.

Actions:

- ``none`` (default): alerts are only reported.
- ``popularity_boost``: multiply the popularity weight of the ranking blend (`DEFAULT_WEIGHTS["pop"]`,
  0.2) by ``factor`` (default 2). Why: after the category mix or the served scores shift, users'
  embeddings and co-occurrences describe the old mix, while popularity (decayed in event time) follows
  the new one within its half-life; leaning on it for a while bridges the gap until the learner catches
  up.
- ``learning_rate``: multiply the BPR learning rate by ``factor`` (above 1 to adapt faster after a
  shift, below 1 to protect what was learned from a burst that is expected to pass).

Event time, not wall-clock time: a replay of the same stream applies the same adjustment to the same
events and queries. Overlapping adjustments of one target do not compound: the one that started last
applies.

>>> from state_schemas.alerts_v1 import Alert, WindowSpan
>>> a = Alert("category", 0.4, 1e-20, 0.5, WindowSpan(0, 9, 10, 10), WindowSpan(10, 60_000, 10, 10), 1e-4, 0.1,
...           0, "liverec", "m")
>>> adj = plan(a, ActionParams("popularity_boost", duration_ms=1_000))
>>> adj
Adjustment(target='popularity_weight', factor=2.0, start_ts=60000, until_ts=61000, feature='category')
>>> factor_at((adj,), "popularity_weight", 60_500), factor_at((adj,), "popularity_weight", 61_000)
(2.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from operators.drift.features import CATEGORY, SERVED_SCORE
from state_schemas.adjustment import LEARNING_RATE, POPULARITY_WEIGHT, Adjustment
from state_schemas.alerts_v1 import Alert, parse_alert
from state_schemas.errors import ConfigError

NONE: Final = "none"
POPULARITY_BOOST: Final = "popularity_boost"
LEARNING_RATE_ACTION: Final = "learning_rate"
ACTIONS: Final = (NONE, POPULARITY_BOOST, LEARNING_RATE_ACTION)
_TARGET: Final = {POPULARITY_BOOST: POPULARITY_WEIGHT, LEARNING_RATE_ACTION: LEARNING_RATE}
#: Adjustments a stage keeps at most (the latest); more would only be alerts of one long episode.
MAX_HELD: Final = 16


@dataclass(frozen=True, slots=True)
class ActionParams:
    """The action policy (see the module docstring)."""

    action: str = NONE
    features: tuple[str, ...] = (CATEGORY, SERVED_SCORE)
    factor: float = 2.0
    duration_ms: int = 15 * 60 * 1000

    def __post_init__(self) -> None:
        """Reject a policy that names an unknown action or a factor that is not a positive number."""
        if self.action not in ACTIONS or not (math.isfinite(self.factor) and self.factor > 0) or self.duration_ms < 0:
            msg = (f"drift action: need action in {ACTIONS}, a finite factor > 0 and duration_ms >= 0; got "
                   f"{self.action!r}, {self.factor}, {self.duration_ms}. Fix LIVEREC_DRIFT_ACTION*.")
            raise ConfigError(msg)


def plan(alert: Alert, params: ActionParams) -> Adjustment | None:
    """The adjustment ``alert`` calls for under ``params``; None when it calls for none."""
    target = _TARGET.get(params.action)
    if target is None or alert.feature not in params.features:
        return None
    start = alert.current.end_ts
    return Adjustment(target, params.factor, start, start + params.duration_ms, alert.feature)


def plan_record(record: bytes, params: ActionParams) -> Adjustment | None:
    """`plan` for a record of the `alerts` topic; a record that is not a v1 drift alert raises SchemaError.

    Why it raises: a stage that reads the topic back must count such records, not skip them unseen.
    """
    return plan(parse_alert(record), params)


def hold(held: Sequence[Adjustment], new: Adjustment) -> tuple[Adjustment, ...]:
    """``held`` with ``new`` added: the ones expired by ``new.start_ts`` and repeats of ``new`` dropped.

    Ordered by start time and cut to the latest `MAX_HELD`, so a stage's list stays small.
    """
    keep = [a for a in held if a.until_ts > new.start_ts and a != new]
    keep.append(new)
    keep.sort(key=lambda a: (a.start_ts, a.until_ts))
    return tuple(keep[-MAX_HELD:])


def factor_at(held: Sequence[Adjustment], target: str, ts: int) -> float:
    """Factor of ``target`` at event time ``ts``: that of the latest-starting active adjustment, else 1."""
    best: Adjustment | None = None
    for a in held:
        if a.target == target and a.active(ts) and (best is None or a.start_ts >= best.start_ts):
            best = a
    return 1.0 if best is None else best.factor

"""The wait every recovery test ends with: per-user event counts in Cassandra until they equal the input."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.cassandra_io import event_counts
from pipeline.infra.procs import wait_until


def await_counts(settings, expected: Mapping[str, int], timeout_s: float) -> tuple[bool, dict[str, int]]:  # noqa: ANN001
    """Poll `user_profiles` until every user's `event_count` equals `expected`; return (equal, users that differ).

    The second item maps each differing user to (counted, expected), for the assertion message.
    """
    users = sorted(expected)
    got: dict[str, int] = {}
    ok = wait_until(lambda: got.update(event_counts(settings, users)) or got == dict(expected), timeout_s,
                    interval_s=2)
    return ok, {u: (got.get(u), n) for u, n in expected.items() if got.get(u) != n}

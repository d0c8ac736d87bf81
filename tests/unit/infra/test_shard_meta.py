"""Which Cassandra rows a stage starting with empty state may hydrate from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from state_schemas.shard_meta import decode_ms, encode_ms, written_before

CUTOFF = int(datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp() * 1000)


@given(st.integers(min_value=0, max_value=2**62))
def test_blank_start_round_trips(ms: int) -> None:
    assert decode_ms(encode_ms(ms)) == ms


def test_a_corrupt_entry_names_the_state() -> None:
    with pytest.raises(ValueError, match="shard-meta state is corrupt"):
        decode_ms(b"yesterday")


@pytest.mark.parametrize(("written", "usable"), [
    (None, True),  # a row of a release before written_at existed
    (datetime(2026, 12, 3, 11, 59, 59), True),  # naive, as the driver returns: UTC
    (datetime(2026, 12, 3, 12, 0, 0), False),  # at the start: this lineage's own write
    (datetime(2026, 12, 3, 12, 0, 1, tzinfo=UTC), False),
    ("2026-12-03", False),  # not a timestamp: never trusted
])
def test_only_rows_written_before_the_empty_start_hydrate(written: object, usable: bool) -> None:
    assert written_before(written, CUTOFF) is usable


def test_blank_start_is_recorded_once_and_kept_and_unknown_for_old_state() -> None:
    from state_schemas.shard_meta import blank_start

    meta: dict[str, bytes] = {}
    assert blank_start(meta.get, meta.__setitem__, has_state=False, now_ms=100) == 100
    # the same key later (its state is no longer empty), or after a restore: the recorded start stays
    assert blank_start(meta.get, meta.__setitem__, has_state=True, now_ms=999) == 100
    # state from a release without the entry: never hydrate
    assert blank_start({}.get, meta.__setitem__, has_state=True, now_ms=5) is None

"""The ``*-shard-meta`` keyed state: when a shard key's state started empty, for rehydration.

A stage keyed by shard (``user-shards``, ``item-shards``) that starts a key with empty state may take
users' or items' state from their Cassandra rows instead of starting cold (a ``--fresh`` start, lost
state; docs/operations.md "Restart choices"). Only rows written *before* that empty start may be used:
a row written afterwards came from this state's own lineage, and a restore to an earlier checkpoint
replays the events behind it, so hydrating from it would count them twice. The start time is keyed state
(``BLANK_START`` → epoch ms as ASCII digits, in the stage's MapState of this name), so a restore keeps
it. A key with state but no entry comes from a release before 0.3: it never hydrates, since which rows
predate its lineage is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

USER_META_STATE = "user-shard-meta"  # MapState STRING → PICKLED_BYTE_ARRAY under the user-shard key
ITEM_META_STATE = "item-shard-meta"  # the same under the item-shard key
BLANK_START = "blank_start_ms"  # the one map key


def encode_ms(ms: int) -> bytes:
    """ASCII digits: readable in a state dump, and the entry is written once per key.

    >>> decode_ms(encode_ms(1_700_000_000_123))
    1700000000123
    """
    return str(int(ms)).encode()


def decode_ms(blob: bytes) -> int:
    """Epoch ms of an entry; a malformed entry names itself (state written by something else)."""
    text = bytes(blob).decode("ascii", "replace")
    if not text.isdigit():
        msg = f"{BLANK_START!r} entry {text[:40]!r} is not epoch milliseconds: the shard-meta state is corrupt"
        raise ValueError(msg)
    return int(text)


def blank_start(get: Callable[[str], object], put: Callable[[str, bytes], None], *, has_state: bool,
                now_ms: int) -> int | None:
    """The shard key's blank start from its meta MapState (``get``/``put``), recorded now if it starts empty.

    None: the key has state but no entry (an older release), so it never hydrates.
    """
    blob = get(BLANK_START)
    if blob is not None:
        return decode_ms(bytes(blob))  # type: ignore[call-overload]
    if has_state:
        return None
    put(BLANK_START, encode_ms(now_ms))
    return now_ms


def written_before(written_at: object, cutoff_ms: int) -> bool:
    """Whether a row's ``written_at`` (driver datetime, naive = UTC; None = an older release's row) predates it.

    >>> written_before(None, 5), written_before(datetime(2026, 1, 1), 0)
    (True, False)
    """
    if written_at is None:
        return True
    if not isinstance(written_at, datetime):
        return False
    if written_at.tzinfo is None:
        written_at = written_at.replace(tzinfo=UTC)
    return written_at.timestamp() * 1000 < cutoff_ms

"""Every versioned codec of the project, by name: what `tests/contracts` checks, one by one.

A new state type or record format is added here, or the contract tests do not cover it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from state_schemas import (
    adjustment,
    cooc_log,
    drift_state,
    events,
    feature_batch,
    index_entry,
    index_log,
    item_cols,
    item_vector,
    seen_items,
    user_profile,
)
from state_schemas.codec import VersionedCodec

CODECS: Final[Mapping[str, VersionedCodec[Any]]] = MappingProxyType(
    {c.name: c for c in (events.CODEC, user_profile.CODEC, item_vector.CODEC, index_entry.CODEC, seen_items.CODEC,
                         cooc_log.CODEC, index_log.CODEC, item_cols.CODEC, feature_batch.CODEC, drift_state.CODEC,
                         adjustment.CODEC)}
)

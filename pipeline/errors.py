"""The error hierarchy lives in the bottom layer (`state_schemas.errors`); re-exported for `pipeline/` code."""

from __future__ import annotations

from state_schemas.errors import (
    ConfigError,
    InfraError,
    LiverecError,
    SchemaError,
    StateKeyError,
    StateVersionError,
)

__all__ = ["ConfigError", "InfraError", "LiverecError", "SchemaError", "StateKeyError", "StateVersionError"]

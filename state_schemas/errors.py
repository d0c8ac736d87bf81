"""One small exception hierarchy: every message names the thing that is wrong and what to do."""

from __future__ import annotations


class LiverecError(Exception):
    """Base of every error liverec raises on purpose."""


class ConfigError(LiverecError):
    """A setting is missing or inconsistent."""


class InfraError(LiverecError):
    """A local server could not be fetched, started, reached or stopped."""


class SchemaError(LiverecError):
    """A record or a state value does not match its declared schema."""


class StateVersionError(SchemaError):
    """A state value or record carries a format version this build cannot read."""


class StateKeyError(SchemaError):
    """A keyed state value met an input for another key: the stream is keyed wrongly."""

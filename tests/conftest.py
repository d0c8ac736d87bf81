"""Shared fixtures: the real local stack (Kafka KRaft + Cassandra), started once per test session.

The session fixture reuses a stack that is already up (e.g. from `liverec infra up`) and leaves it
running; a stack it started itself is stopped at the end, by pid.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from pipeline.settings import Settings, load_settings


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Iterator[Settings]:
    """Kafka and Cassandra answering on loopback for the whole session."""
    from pipeline.infra import stack as infra

    already_up = all(s.up for s in infra.status(base_settings))
    if not already_up:
        infra.up(base_settings, log=lambda m: print(f"[stack] {m}"))
    yield base_settings
    if not already_up and os.environ.get("LIVEREC_KEEP_STACK") != "1":
        infra.down(base_settings, log=lambda m: print(f"[stack] {m}"))


@pytest.fixture
def isolated(stack: Settings) -> Settings:
    """Settings with a unique topic prefix (topics created), so tests never see each other's records."""
    from pipeline.kafka_io import ensure_topics

    s = stack.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}-"})
    ensure_topics(s)
    return s


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long variants (`soak`) run only when asked for with ``-m soak``; CI runs their short variants."""
    if "soak" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long variant: run with `bin/test -m soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)

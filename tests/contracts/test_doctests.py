"""The examples in the docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "state_schemas.cassandra_rows",
    "state_schemas.codec",
    "state_schemas.events",
    "state_schemas.events_v1",
    "state_schemas.user_profile",
    "state_schemas.user_profile_v1",
    "state_schemas.item_vector",
    "state_schemas.item_vector_v1",
    "operators.events.logic",
    "operators.profile.logic",
    "pipeline.credentials",
    "pipeline.infra.servers",
    "state_schemas.feature_batch",
    "state_schemas.drift_state",
    "state_schemas.adjustment",
    "state_schemas.alerts_v1",
    "operators.drift.features",
    "operators.drift.logic",
    "operators.drift.actions",
    "operators.metrics",
    "pipeline.eval_pipeline",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

"""Serving contract v1: request validation (never an exception) and the answer's JSON."""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.serving.requests import Reason, Rejection, validate
from state_schemas import requests_v1
from state_schemas.requests_v1 import Answer, RequestV1, Source, answer_json
from tests.contracts.strategies import PROPS

BASE: dict[str, Any] = {"request_id": "r-1", "user_id": "u-1", "ts": 1_764_000_000_000}


def run(doc: Any) -> RequestV1 | Rejection:
    return validate(json.dumps(doc).encode())


def rejected(doc: Any, reason: Reason, field: str | None = None) -> Rejection:
    got = run(doc)
    assert isinstance(got, Rejection), got
    assert got.reason is reason, got
    if field is not None:
        assert f"'{field}'" in got.detail, got.detail
    return got


def test_minimal_request_gets_defaults() -> None:
    assert run(BASE) == RequestV1("r-1", "u-1", BASE["ts"], k=10, exclude_seen=True, category=None)


def test_full_request() -> None:
    doc = {**BASE, "k": 25, "exclude_seen": False, "filters": {"category": "Books"}, "schema_version": 1}
    assert run(doc) == RequestV1("r-1", "u-1", BASE["ts"], 25, False, "Books", 0)


def test_nulls_mean_absent_and_unknown_fields_are_counted() -> None:
    doc = {**BASE, "k": None, "exclude_seen": None, "filters": {"category": None, "x": 1}, "y": 2, "z": 3}
    assert run(doc) == RequestV1("r-1", "u-1", BASE["ts"], 10, True, None, ignored_fields=3)
    assert run({**BASE, "filters": None}) == run(BASE)


@pytest.mark.parametrize("name", ["request_id", "user_id"])
def test_integer_ids_become_decimal_strings(name: str) -> None:
    got = run({**BASE, name: 7})
    assert isinstance(got, RequestV1)
    assert getattr(got, name) == "7"


@pytest.mark.parametrize("name", ["request_id", "user_id", "ts"])
def test_required_fields(name: str) -> None:
    rejected({k: v for k, v in BASE.items() if k != name}, Reason.MISSING_FIELD, name)


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"k": 0}, Reason.BAD_VALUE, "k"),
        ({"k": 101}, Reason.BAD_VALUE, "k"),
        ({"k": 1.0}, Reason.WRONG_TYPE, "k"),
        ({"k": True}, Reason.WRONG_TYPE, "k"),
        ({"k": "10"}, Reason.WRONG_TYPE, "k"),
        ({"exclude_seen": 1}, Reason.WRONG_TYPE, "exclude_seen"),
        ({"exclude_seen": "true"}, Reason.WRONG_TYPE, "exclude_seen"),
        ({"filters": "Books"}, Reason.WRONG_TYPE, "filters"),
        ({"filters": {"category": 3}}, Reason.WRONG_TYPE, "filters.category"),
        ({"filters": {"category": ""}}, Reason.BAD_VALUE, "filters.category"),
        ({"filters": {"category": "a\nb"}}, Reason.BAD_VALUE, "filters.category"),
        ({"user_id": 1.5}, Reason.WRONG_TYPE, "user_id"),
        ({"user_id": -1}, Reason.BAD_VALUE, "user_id"),
        ({"user_id": None}, Reason.WRONG_TYPE, "user_id"),
        ({"request_id": "x" * 129}, Reason.BAD_VALUE, "request_id"),
        ({"ts": -1}, Reason.BAD_VALUE, "ts"),
        ({"ts": "1764000000000"}, Reason.WRONG_TYPE, "ts"),
        ({"schema_version": 2}, Reason.UNSUPPORTED_VERSION, None),
    ],
)
def test_bad_fields(changes: dict[str, Any], reason: Reason, field: str | None) -> None:
    rejected({**BASE, **changes}, reason, field)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, Reason.EMPTY),
        (b"", Reason.EMPTY),
        (b"\xff\xfe", Reason.NOT_UTF8),
        (b"{", Reason.BAD_JSON),
        (b"[]", Reason.NOT_OBJECT),
        (b"7", Reason.NOT_OBJECT),
        (b" " * 20_000, Reason.OVERSIZE),
    ],
)
def test_bad_records(raw: bytes | None, reason: Reason) -> None:
    got = validate(raw)
    assert isinstance(got, Rejection) and got.reason is reason, got


def test_memoryview_is_accepted() -> None:
    assert validate(memoryview(json.dumps(BASE).encode())) == run(BASE)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
fields = st.sampled_from(["request_id", "user_id", "ts", "k", "exclude_seen", "filters", "schema_version", "x"])


@PROPS
@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert isinstance(validate(raw), RequestV1 | Rejection)


@PROPS
@given(st.dictionaries(fields, json_values | st.dictionaries(st.just("category"), json_values), max_size=8))
def test_never_raises_on_arbitrary_objects(doc: dict[str, Any]) -> None:
    got = run(doc)
    assert isinstance(got, RequestV1 | Rejection)
    if isinstance(got, RequestV1):
        assert 1 <= got.k <= 100 and isinstance(got.user_id, str) and isinstance(got.exclude_seen, bool)
    else:
        assert got.reason is not Reason.INTERNAL_ERROR, got


def test_committed_schema_is_generated_from_the_model() -> None:
    committed = json.loads(Path(requests_v1.__file__).with_name("request.v1.schema.json").read_text())
    assert committed == requests_v1.json_schema(), (
        "regenerate: python -m state_schemas.requests_v1 > state_schemas/request.v1.schema.json"
    )


ANSWER = Answer("r-1", "u-1", (("i2", 2.5), ("i1", -0.1234567891)), Source.PERSONALIZED, "bpr-3", "ix-9", 100, 250)


def test_answer_json_key_order_and_compactness() -> None:
    raw = answer_json(ANSWER)
    doc = json.loads(raw)
    assert list(doc) == [
        "request_id",
        "user_id",
        "items",
        "source",
        "model_version",
        "index_version",
        "freshest_event_ts",
        "served_at",
        "state_digest",
    ]
    assert doc["items"] == [{"item_id": "i2", "score": 2.5}, {"item_id": "i1", "score": -0.123457}]
    assert doc["source"] == "personalized"
    assert b" " not in raw
    assert answer_json(ANSWER) == raw


def test_answer_json_empty_and_null_freshness() -> None:
    doc = json.loads(answer_json(ANSWER._replace(items=(), source=Source.COLD_START, freshest_event_ts=None)))
    assert doc["items"] == [] and doc["source"] == "cold_start" and doc["freshest_event_ts"] is None


def test_answer_json_never_writes_invalid_json() -> None:
    raw = answer_json(ANSWER._replace(items=(("i", float("nan")), ("j", float("inf")))))
    assert json.loads(raw)["items"] == [{"item_id": "i", "score": None}, {"item_id": "j", "score": None}]


@pytest.mark.parametrize("name", ["state_schemas.requests_v1", "operators.serving.requests", "operators.serving.logic"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

"""The wire contract: the committed JSON Schema, the validator and the codec agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given

from operators.events.logic import Rejection, validate
from state_schemas import events_v1
from state_schemas.events import EVENT_TYPE_NAMES, EVENT_TYPE_WEIGHTS, Event, decode_event, encode_event
from tests.contracts.strategies import FEW, PROPS, event_json, events

SCHEMA_FILE = Path(events_v1.__file__).with_name("event.v1.schema.json")
NOW = 2_000_000_000_000


def test_committed_schema_is_generated_from_the_model() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == events_v1.json_schema(), (
        "regenerate: python -m state_schemas.events_v1 > state_schemas/event.v1.schema.json"
    )


def test_type_table_is_append_only() -> None:
    # Wire codes are positions in this table: reordering or removing breaks stored events and state.
    assert EVENT_TYPE_NAMES[:6] == ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "rate")
    table = events_v1.json_schema()["x-liverec-event-types"]
    assert [(r["code"], r["type"], r["weight"]) for r in table] == [
        (i, n, EVENT_TYPE_WEIGHTS[n]) for i, n in enumerate(EVENT_TYPE_NAMES)
    ]


@PROPS
@given(events())
def test_producer_json_of_any_event_validates_back_to_it(e: Event) -> None:
    got = validate(event_json(e), now_ms=NOW)
    assert got == e._replace(ignored_fields=0)
    assert decode_event(encode_event(got)) == got


@FEW
@given(events())
def test_json_schema_accepts_what_the_validator_accepts(e: Event) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(event_json(e))
    jsonschema.Draft202012Validator(events_v1.json_schema()).validate(doc)


@pytest.mark.parametrize(
    "doc",
    [
        {"event_id": "", "user_id": "u", "item_id": "i", "type": "view", "ts": NOW},
        {"event_id": "e", "user_id": True, "item_id": "i", "type": "view", "ts": NOW},
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "like", "ts": NOW},
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": "1"},
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": NOW, "price": -1},
        {"event_id": "e", "user_id": "u", "item_id": "i\n", "type": "view", "ts": NOW},
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": NOW, "schema_version": 2},
        {"user_id": "u", "item_id": "i", "type": "view", "ts": NOW},
    ],
)
def test_json_schema_and_validator_both_reject(doc: dict[str, object]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert isinstance(validate(json.dumps(doc).encode(), now_ms=NOW), Rejection)
    assert not jsonschema.Draft202012Validator(events_v1.json_schema()).is_valid(doc)

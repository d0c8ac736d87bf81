"""Serving contract v1: the recommendation request a client writes, and the answer the job writes back.

Wire format: one UTF-8 JSON object per Kafka record value (like events, `state_schemas.events_v1`).
`request.v1.schema.json` beside this module is generated from `RequestWireV1`
(``python -m state_schemas.requests_v1 > state_schemas/request.v1.schema.json``) and a unit test keeps
the two equal. Parsing bytes into a `RequestV1` or a `Rejection` is `operators.serving.requests.validate`.

Request rules of v1:

- ``request_id``, ``user_id``: the id rule of the event contract (a string of 1..128 characters without
  control characters, or an integer in [0, 2**63) normalised to its decimal string), so a request for
  user ``7`` reads the profile built from events of user ``"7"``.
- ``k``: integer in [1, 100], default 10. ``exclude_seen``: boolean, default true (no item the user
  interacted with, up to the last ``seen_items_max``, is recommended). ``filters``: object, optional;
  ``filters.category`` keeps only items of that category (case-sensitive, like event categories).
- ``ts``: request time, integer epoch milliseconds >= 0 (required: it orders requests in event time).
- Absent and ``null`` mean the same; unknown fields (top level or in ``filters``) are ignored and
  counted; ``schema_version`` is absent or ``1``.

Answer (`Answer`, `answer_json`): ``{request_id, user_id, items: [{item_id, score}], source,
model_version, index_version, freshest_event_ts, served_at, state_digest}`` in that key order, compact
JSON.
``items`` is best first: the list order is the ranking; a score is comparable only with scores of the
same source. ``source`` says which rung of the ladder answered:

- ``personalized``: the user's embedding (blended with their recent items when ``session_weight`` > 0)
  queried the index, re-ranked with co-occurrence and popularity;
- ``session``: fewer than ``personalize_after_events`` events so far: the mean vector of the user's
  recent items queried the index, re-ranked with their co-occurrence neighbours and popularity;
- ``trending``: the user has history but the index gave nothing usable (empty or rebuilding), so the
  currently most popular items were served;
- ``cold_start``: nothing known about the user, trending items were served; with an empty ``items``
  list it means no item at all is eligible (nothing known, or everything excluded or filtered out).

``freshest_event_ts`` is the event time of the newest event the user's profile reflects (null without a
profile): ``served_at - freshest_event_ts`` bounds how stale the personalisation can be.

``state_digest`` (added in place, v1 readers ignore it) is 16 hex digits of SHA-256 over the user's
keyed state as the request read it (profile and seen-items bytes; null for a user without state). The
same user answered before and after a restore or a rescale shows the same digest if no event of theirs
came in between: the restored state is the saved state, byte for byte.
"""

from __future__ import annotations

import json
import math
import sys
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

# One id rule for the whole system: a request's user_id must name the same user as the events' user_id.
from state_schemas.events_v1 import MAX_IGNORED_FIELDS, _Id, _Text

SCHEMA_VERSION: Final = 1
DEFAULT_K: Final = 10
MAX_K: Final = 100
#: Digits kept of each score in an answer: enough to rank, and keeps the record small.
SCORE_DIGITS: Final = 6


class Source(StrEnum):
    """Rung of the serving ladder that produced an answer (wire values: append, never rename)."""

    PERSONALIZED = "personalized"
    SESSION = "session"
    TRENDING = "trending"
    COLD_START = "cold_start"


class FiltersWireV1(BaseModel):
    """``filters`` of a request."""

    model_config = ConfigDict(strict=True, extra="allow", title="liverec request filters v1")

    category: _Text | None = Field(default=None, description="Only items of this category.")


class RequestWireV1(BaseModel):
    """The JSON object of a request, as validated (the source of `request.v1.schema.json`)."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        title="liverec recommendation request v1",
        json_schema_extra={
            "description": (
                "Ask for the top k items for one user. Unknown fields are ignored (and counted). ts is epoch "
                "milliseconds UTC. Integer ids are normalised to their decimal string."
            ),
        },
    )

    request_id: _Id = Field(description="Echoed in the answer; joins the answer to its request.")
    user_id: _Id
    k: Annotated[int, Field(strict=True, ge=1, le=MAX_K)] | None = Field(
        default=None, description=f"How many items, 1..{MAX_K}; absent or null means {DEFAULT_K}."
    )
    exclude_seen: Annotated[bool, Field(strict=True)] | None = Field(
        default=None, description="Leave out every item the user interacted with; absent or null means true."
    )
    filters: FiltersWireV1 | None = None
    ts: Annotated[int, Field(strict=True, ge=0, description="Request time, epoch milliseconds UTC.")]
    schema_version: Literal[1] = 1


class RequestV1(NamedTuple):
    """One validated request, as passed between operators (defaults already applied)."""

    request_id: str
    user_id: str
    ts: int
    k: int = DEFAULT_K
    exclude_seen: bool = True
    category: str | None = None
    ignored_fields: int = 0


def from_wire(model: RequestWireV1) -> RequestV1:
    """The in-job request of a validated wire object."""
    extra = len(model.__pydantic_extra__ or ())
    filters = model.filters
    if filters is not None:
        extra += len(filters.__pydantic_extra__ or ())
    return RequestV1(
        request_id=model.request_id,  # type: ignore[arg-type]  # AfterValidator(str) made every id a str
        user_id=model.user_id,  # type: ignore[arg-type]
        ts=model.ts,
        k=DEFAULT_K if model.k is None else model.k,
        exclude_seen=True if model.exclude_seen is None else model.exclude_seen,
        category=None if filters is None else filters.category,
        ignored_fields=min(extra, MAX_IGNORED_FIELDS),
    )


class Answer(NamedTuple):
    """The job's answer to one request (see the module docstring for the meaning of each field)."""

    request_id: str
    user_id: str
    items: tuple[tuple[str, float], ...]  # (item_id, score), best first
    source: Source
    model_version: str
    index_version: str
    freshest_event_ts: int | None
    served_at: int
    state_digest: str | None = None


def answer_json(answer: Answer) -> bytes:
    """Compact JSON of ``answer``, keys in contract order; the same answer always gives the same bytes.

    A non-finite score is a bug upstream; it is written as null rather than as invalid JSON.

    >>> a = Answer("r1", "u1", (("i9", 1.25),), Source.SESSION, "m3", "x7", 1000, 1042)
    >>> answer_json(a).decode()
    '{"request_id":"r1","user_id":"u1","items":[{"item_id":"i9","score":1.25}],"source":"session",\
"model_version":"m3","index_version":"x7","freshest_event_ts":1000,"served_at":1042,"state_digest":null}'
    """
    doc = {
        "request_id": answer.request_id,
        "user_id": answer.user_id,
        "items": [
            {"item_id": item, "score": round(float(s), SCORE_DIGITS) if math.isfinite(s) else None}
            for item, s in answer.items
        ],
        "source": str(answer.source),
        "model_version": answer.model_version,
        "index_version": answer.index_version,
        "freshest_event_ts": answer.freshest_event_ts,
        "served_at": answer.served_at,
        "state_digest": answer.state_digest,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the request wire object."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:liverec:schema:request:v1",
        **RequestWireV1.model_json_schema(),
        "additionalProperties": True,
        "x-liverec-answer-sources": [s.value for s in Source],
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")

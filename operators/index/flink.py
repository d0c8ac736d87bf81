"""Flink adapter of the index operator: keyed by shard, one `IndexShard` per shard key.

Input: ``(shard key, record)`` where the record is a query (`QueryMsg`), an interaction share
(`InteractionMsg`, from the user stage, on the same channel as that user's queries, so a query sees
every earlier interaction) or an item vector (`item-vectors` record, from the item stage).

Keyed state (the only thing that survives a restore or a rescale): one `IndexEntry` per item in
``index-items`` and one float per co-occurrence cell in ``index-cooc``. The hnswlib graph is a cache of
it: built from that state the first time a shard key is seen after a (re)start (`IndexShard.restore`).

Outputs: partial answers on the `PARTIALS` side output (to the gather step, then `recommendations`);
maintenance events (restores, size reports) as JSON on the main output (to `index-events`).
"""

from __future__ import annotations

import json
import time

from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from operators.index.logic import IndexShard, ShardParams
from operators.learner.bpr import BPRParams
from pipeline.settings import Settings
from state_schemas import index_entry
from state_schemas.codec import TAGS
from state_schemas.messages import decode_interaction, decode_query, decode_vector_msg, encode_partial

PARTIALS = OutputTag("partials", Types.PRIMITIVE_ARRAY(Types.BYTE()))
INDEX_KEY_PREFIX = "\x01"  # user-stage records for the index carry "\x01<shard>" as key (never an item id)
ITEMS_STATE = "index-items"
COOC_STATE = "index-cooc"
_SEP = "\x1f"
REPORT_EVERY = 10_000  # a size report on index-events per this many mutations of a shard
_QUERY, _INTERACTION, _VECTOR = TAGS["query_msg"], TAGS["interaction_msg"], TAGS["item_vector_msg"]


def index_key(shard: int) -> str:
    """Key of records bound for shard ``shard``."""
    return f"{INDEX_KEY_PREFIX}{shard}"


def shard_params(s: Settings) -> ShardParams:
    """The shard's tuning from the job settings (same learner settings as the user and item stages)."""
    return ShardParams(
        bpr=BPRParams(dim=s.embedding_dim, negatives=s.negatives), candidates=s.index_candidates,
        exact_below=s.index_exact_below, seed=s.model_seed,
    )


class IndexStage(KeyedProcessFunction):
    """(shard key, record bytes) keyed by shard → partial answers (side output) + maintenance events."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        s = self.settings
        self.params = shard_params(s)
        self.shards = s.index_shards
        self.items = runtime_context.get_map_state(MapStateDescriptor(ITEMS_STATE, Types.STRING(),
                                                                      Types.PICKLED_BYTE_ARRAY()))
        self.cooc = runtime_context.get_map_state(MapStateDescriptor(COOC_STATE, Types.STRING(), Types.DOUBLE()))
        self.live: dict[str, IndexShard] = {}
        self.reported: dict[str, int] = {}
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.queries = group.counter("index_queries")
        self.vectors = group.counter("index_vector_updates")
        self.restores = group.counter("index_restores")
        group.gauge("index_items", lambda: sum(len(s) for s in self.live.values()))

    def _shard(self, key: str) -> tuple[IndexShard, bytes | None]:
        shard = self.live.get(key)
        if shard is not None:
            return shard, None
        t0 = time.perf_counter()
        entries = [(i, index_entry.decode(bytes(b))) for i, b in self.items.items()]
        cells = [(*k.split(_SEP, 1), float(v)) for k, v in self.cooc.items()]
        shard = IndexShard.restore(int(key[len(INDEX_KEY_PREFIX):]), self.shards, self.params, entries, cells)
        self.live[key] = shard
        self.restores.inc()
        event = {"event": "shard_loaded", "shard": shard.shard, "shards": self.shards, "items": len(shard),
                 "cooc_cells": len(cells), "seconds": round(time.perf_counter() - t0, 3),
                 "at_ms": int(time.time() * 1000)}
        return shard, json.dumps(event, separators=(",", ":")).encode()

    def process_element(self, value, ctx: KeyedProcessFunction.Context):  # noqa: ANN001, ANN201
        key, record = value[0], bytes(value[1])
        shard, loaded = self._shard(key)
        if loaded is not None:
            yield loaded
        tag = record[0]
        if tag == _QUERY:
            self.queries.inc()
            part = shard.rank(decode_query(record))
            yield PARTIALS, encode_partial(part)
        elif tag == _INTERACTION:
            changed, cells = shard.apply_interaction(decode_interaction(record))
            for item in changed:
                self.items.put(item, index_entry.encode(shard.entry(item)))
            for owner, partner, v in cells:
                self.cooc.put(f"{owner}{_SEP}{partner}", v)
        elif tag == _VECTOR:
            item_id, _ts, state = decode_vector_msg(record)
            if shard.apply_vector(item_id, state):
                self.vectors.inc()
                self.items.put(item_id, index_entry.encode(shard.entry(item_id)))
        else:
            msg = f"index stage: record with tag {tag} on key {key!r}: the job graph routes a foreign record here"
            raise ValueError(msg)
        if shard.mutations // REPORT_EVERY != self.reported.get(key, 0):
            self.reported[key] = shard.mutations // REPORT_EVERY
            yield json.dumps({"event": "size", "shard": shard.shard, "shards": self.shards, "items": len(shard),
                              "mutations": shard.mutations, "index_version": shard.version,
                              "at_ms": int(time.time() * 1000)}, separators=(",", ":")).encode()

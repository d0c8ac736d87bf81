"""Flink adapter of the index operator: keyed by shard, one `IndexShard` per shard key.

Input: ``(shard key, batch)``: a `RecordBatch` of queries (`QueryMsg`) and interaction shares
(`InteractionMsg`) from one user-shard batch, in the order the user stage made them (an evaluation
query precedes its event's shares, so the shard ranks before it learns), or a `VectorBatch` of item
vectors from the item stage. Each batch is one call; its state changes are written once, at its end.

Keyed state (the only thing that survives a restore or a rescale): one `IndexEntry` per item in
``index-items``, and the co-occurrence cells as one compact blob per batch plus periodic snapshots in
``index-cooc-log`` (`state_schemas.cooc_log`; release 0.1's one-float-per-cell ``index-cooc`` is still
read on restore and folded into the first snapshot). The hnswlib graph is a cache of
it: built from that state the first time a shard key is seen after a (re)start (`IndexShard.restore`).

Outputs: partial answers on the `PARTIALS` side output (to the gather step, then `recommendations`);
maintenance events (restores, size reports) as JSON on the main output (to `index-events`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from operators.index.logic import IndexShard, ShardParams, apply_batch
from state_schemas import cooc_log, index_entry
from state_schemas.batches import decode_records
from state_schemas.codec import TAGS
from state_schemas.messages import decode_vector_batch, encode_partial

PARTIALS = OutputTag("partials", Types.PRIMITIVE_ARRAY(Types.BYTE()))
ITEMS_STATE = "index-items"
COOC_STATE = "index-cooc"  # one entry per cell: release 0.1's layout, still read on restore, then cleared
COOC_LOG_STATE = "index-cooc-log"  # "s" -> snapshot blob, "d<seq>" -> one blob per batch (cooc_log codec)
COMPACT_EVERY = 200  # batch blobs before they are folded into a new snapshot
_SEP = "\x1f"
REPORT_EVERY = 10_000  # a size report on index-events per this many mutations of a shard
_RECORDS, _VECTORS = TAGS["record_batch"], TAGS["vector_batch_msg"]


class IndexStage(KeyedProcessFunction):  # type: ignore[misc]
    """(index shard key, RecordBatch or VectorBatch) keyed by shard → partial answers + maintenance events."""

    def __init__(self, params: ShardParams, shards: int) -> None:
        self.params = params
        self.shards = shards

    def open(self, runtime_context: RuntimeContext) -> None:
        self.items = runtime_context.get_map_state(MapStateDescriptor(ITEMS_STATE, Types.STRING(),
                                                                      Types.PICKLED_BYTE_ARRAY()))
        self.cooc = runtime_context.get_map_state(MapStateDescriptor(COOC_STATE, Types.STRING(), Types.DOUBLE()))
        self.cooc_log = runtime_context.get_map_state(
            MapStateDescriptor(COOC_LOG_STATE, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.logged: dict[str, int] = {}  # shard key -> next batch blob number
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
        log = sorted((k, bytes(b)) for k, b in self.cooc_log.items())  # "d…" blobs in order, then "s"
        blobs = [b for k, b in log if k == "s"] + [b for k, b in log if k != "s"]
        for blob in blobs:  # later values of a cell overwrite earlier ones
            cells.extend(cooc_log.decode(blob))
        self.logged[key] = max((int(k[1:]) + 1 for k, _ in log if k != "s"), default=0)
        shard = IndexShard.restore(int(key[1:]), self.shards, self.params, entries, cells)
        self.live[key] = shard
        self.restores.inc()
        event = {"event": "shard_loaded", "shard": shard.shard, "shards": self.shards, "items": len(shard),
                 "cooc_cells": len(cells), "seconds": round(time.perf_counter() - t0, 3),
                 "at_ms": int(time.time() * 1000)}
        return shard, json.dumps(event, separators=(",", ":")).encode()

    def _log_cells(self, key: str, shard: IndexShard, cells: dict[tuple[str, str], float]) -> None:
        """One blob for this batch's cells; every COMPACT_EVERY blobs, one snapshot replaces them."""
        n = self.logged.get(key, 0)
        if n < COMPACT_EVERY:
            self.cooc_log.put(f"d{n:09d}", cooc_log.encode_map(cells))
            self.logged[key] = n + 1
            return
        self.cooc_log.clear()
        self.cooc.clear()  # a restored 0.1 layout is folded into the snapshot too
        self.cooc_log.put("s", cooc_log.encode(shard.cooc_cells()))
        self.logged[key] = 0

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
        key, batch = value[0], bytes(value[1])
        shard, loaded = self._shard(key)
        if loaded is not None:
            yield loaded
        if batch[0] == _VECTORS:
            records = decode_vector_batch(batch)
        elif batch[0] == _RECORDS:
            records = decode_records(batch)[1]
        else:
            msg = f"index stage: batch with tag {batch[0]} on key {key!r}: the job graph routes a foreign record here"
            raise ValueError(msg)
        out = apply_batch(shard, records)
        self.queries.inc(len(out.partials))
        self.vectors.inc(out.vectors)
        for part in out.partials:
            yield PARTIALS, encode_partial(part)
        # Keyed state is written once per batch: the last value of every changed entry and cell.
        if out.items:
            self.items.put_all({i: index_entry.encode(shard.entry(i)) for i in out.items})
        if out.cells:
            self._log_cells(key, shard, out.cells)
        if shard.mutations // REPORT_EVERY != self.reported.get(key, 0):
            self.reported[key] = shard.mutations // REPORT_EVERY
            yield json.dumps({"event": "size", "shard": shard.shard, "shards": self.shards, "items": len(shard),
                              "mutations": shard.mutations, "index_version": shard.version,
                              "at_ms": int(time.time() * 1000)}, separators=(",", ":")).encode()

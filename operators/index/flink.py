"""Flink adapter of the index operator: keyed by shard, one `IndexShard` per shard key.

Input: ``(shard key, batch)``: a `ShareBatch` of one user-shard batch (its queries, ranked first, then
its interaction shares, learned in one vectorised step: `state_schemas.shares`), or a `VectorBatch` of
item vectors from the item stage. Each batch is one call; what it changed is written once, at its end.

Keyed state (the only thing that survives a restore or a rescale): ``index-log``, one
`state_schemas.index_log` blob per batch with the new values of the items and co-occurrence cells it
changed, and once the blobs since the last snapshot outweigh it twice, one snapshot of the whole shard
that replaces them (so the state stays within about three times the shard's size). Release
0.2's ``index-items`` (one entry per item) and ``index-cooc-log``, and release 0.1's ``index-cooc`` (one
double per cell), are still read on restore and cleared at the first compaction. The hnswlib graph is a
cache of the state: built the first time a shard key is seen after a (re)start (`IndexShard.restore`),
and refreshed with the changed vectors at most every ``refresh_ms`` (a rebuild of a few thousand items
costs tens of milliseconds; candidates from a graph that old are scored with the current vectors).

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

from operators.index.logic import BatchOut, IndexShard, ShardParams, apply_batch, apply_vector_batch
from operators.metrics import Level
from state_schemas import cooc_log, index_entry, index_log
from state_schemas.codec import TAGS
from state_schemas.item_cols import decode_vector_batch
from state_schemas.messages import encode_partial

PARTIALS = OutputTag("partials", Types.PRIMITIVE_ARRAY(Types.BYTE()))
LOG_STATE = "index-log"  # "s" -> snapshot blob, "d<seq>" -> one blob per batch (index_log codec)
MIN_SNAPSHOT_BYTES = 65_536  # compact no more often than this much log
ITEMS_STATE = "index-items"  # release 0.2: one index_entry per item; read on restore, cleared at compaction
COOC_STATE = "index-cooc"  # release 0.1: one double per cell; read on restore, cleared at compaction
COOC_LOG_STATE = "index-cooc-log"  # release 0.2: cooc_log blobs; read on restore, cleared at compaction
_SEP = "\x1f"
REPORT_EVERY = 10_000  # a size report on index-events per this many mutations of a shard
_SHARES, _VECTORS = TAGS["share_batch"], TAGS["vector_batch_msg"]


def _ordered(blobs: list[tuple[str, bytes]]) -> list[bytes]:
    """The snapshot "s" first, then the batch blobs "d<n>" in their order."""
    return [b for k, b in blobs if k == "s"] + [b for k, b in sorted(blobs) if k != "s"]


class IndexStage(KeyedProcessFunction):  # type: ignore[misc]
    """(index shard key, ShareBatch or VectorBatch) keyed by shard → partial answers + maintenance events."""

    def __init__(self, params: ShardParams, shards: int, refresh_ms: int = 1_000) -> None:
        self.params = params
        self.shards = shards
        self.refresh_ms = refresh_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        def blobs(name: str) -> Any:
            return runtime_context.get_map_state(MapStateDescriptor(name, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))

        self.log = blobs(LOG_STATE)
        self.items = blobs(ITEMS_STATE)
        self.cooc_log = blobs(COOC_LOG_STATE)
        self.cooc = runtime_context.get_map_state(MapStateDescriptor(COOC_STATE, Types.STRING(), Types.DOUBLE()))
        self.logged: dict[str, tuple[int, int, int]] = {}  # shard key -> (next blob, log bytes, snapshot bytes)
        self.live: dict[str, IndexShard] = {}
        self.synced: dict[str, float] = {}  # shard key -> monotonic time of the last graph refresh
        self.reported: dict[str, int] = {}
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.queries = group.counter("index_queries")
        self.vectors = group.counter("index_vector_updates")
        self.restores = group.counter("index_restores")
        self.graph_refreshes = group.counter("index_graph_refreshes")
        self.graph_moves = group.counter("index_graph_vectors_pushed")
        # levels, not gauges (operators/metrics.py); set after every batch
        self.sizes = {name: Level(group.counter(name)) for name in (
            "index_items", "index_cooc_cells", "index_tombstones", "index_graph_rebuilds", "index_state_bytes")}

    def _shard(self, key: str) -> tuple[IndexShard, bytes | None]:
        shard = self.live.get(key)
        if shard is not None:
            return shard, None
        t0 = time.perf_counter()
        entries = [(i, index_entry.decode(bytes(b))) for i, b in self.items.items()]
        cells = [(*k.split(_SEP, 1), float(v)) for k, v in self.cooc.items()]
        for blob in _ordered([(k, bytes(b)) for k, b in self.cooc_log.items()]):
            cells.extend(cooc_log.decode(blob))
        logged = [(k, bytes(b)) for k, b in self.log.items()]
        self.logged[key] = (max((int(k[1:]) + 1 for k, _ in logged if k != "s"), default=0),
                            sum(len(b) for k, b in logged if k != "s"), sum(len(b) for k, b in logged if k == "s"))
        logs = [index_log.decode(b) for b in _ordered(logged)]
        shard = IndexShard.restore(int(key[1:]), self.shards, self.params, entries, cells, logs)
        shard.auto_sync = False  # refreshed on a time budget below (`refresh_ms`)
        self.live[key] = shard
        self.synced[key] = time.monotonic()
        self.restores.inc()
        event = {"event": "shard_loaded", "shard": shard.shard, "shards": self.shards, "items": len(shard),
                 "cooc_cells": len(shard.cells), "seconds": round(time.perf_counter() - t0, 3),
                 "at_ms": int(time.time() * 1000)}
        return shard, json.dumps(event, separators=(",", ":")).encode()

    def _sizes(self) -> None:
        shards = self.live.values()
        for name, value in (("index_items", sum(len(s) for s in shards)),
                            ("index_cooc_cells", sum(len(s.cells) for s in shards)),
                            ("index_tombstones", sum(s.ann.tombstones for s in shards)),
                            ("index_graph_rebuilds", sum(s.ann.rebuilds for s in shards)),
                            ("index_state_bytes", sum(log + snap for _, log, snap in self.logged.values()))):
            self.sizes[name].set(value)

    def _persist(self, key: str, shard: IndexShard, out: BatchOut) -> None:
        """One blob of what the batch changed; a snapshot instead once the log outweighs the last one twice."""
        n, log_bytes, snap_bytes = self.logged[key]
        if log_bytes > max(2 * snap_bytes, MIN_SNAPSHOT_BYTES):
            for old in (self.log, self.items, self.cooc, self.cooc_log):  # earlier releases' layouts fold in too
                old.clear()
            blob = index_log.encode(shard.snapshot())
            self.log.put("s", blob)
            self.logged[key] = (0, 0, len(blob))
            return
        blob = index_log.encode(shard.delta(out.items, out.cells))
        self.log.put(f"d{n:09d}", blob)
        self.logged[key] = (n + 1, log_bytes + len(blob), snap_bytes)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
        key, batch = value[0], bytes(value[1])
        shard, loaded = self._shard(key)
        if loaded is not None:
            yield loaded
        if batch[0] == _VECTORS:
            out = apply_vector_batch(shard, decode_vector_batch(batch))
        elif batch[0] == _SHARES:
            now = time.monotonic()
            if now - self.synced[key] >= self.refresh_ms / 1000:  # changed vectors into the graph, on a budget
                self.synced[key] = now
                self.graph_refreshes.inc()
                self.graph_moves.inc(shard.sync_index())
            out = apply_batch(shard, batch)
        else:
            msg = f"index stage: batch with tag {batch[0]} on key {key!r}: the job graph routes a foreign record here"
            raise ValueError(msg)
        self.queries.inc(len(out.partials))
        self.vectors.inc(out.vectors)
        for part in out.partials:
            yield PARTIALS, encode_partial(part)
        if out.items.size or out.cells.size:
            self._persist(key, shard, out)
        self._sizes()
        if shard.mutations // REPORT_EVERY != self.reported.get(key, 0):
            self.reported[key] = shard.mutations // REPORT_EVERY
            yield json.dumps({"event": "size", "shard": shard.shard, "shards": self.shards, "items": len(shard),
                              "cooc_cells": len(shard.cells), "mutations": shard.mutations,
                              "index_version": shard.version, "at_ms": int(time.time() * 1000)},
                             separators=(",", ":")).encode()

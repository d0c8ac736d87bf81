"""Flink adapter of the item stage: keyed by item shard, applies coalesced gradient batches.

Per call: one `GradBatch` (one user-shard batch's gradients for this item shard, summed per item) goes
through `ItemShard.apply` in one vectorised step; what it changed is written to keyed state as one
`state_schemas.item_cols` ItemLog blob (and when the blobs since the last snapshot outweigh it, one
snapshot of the whole shard replaces them). Aligned processing-time timers coalesce the output: every
``item_flush_ms`` the items changed since the last flush leave as `VectorBatch` v2 records (columns: to
the `item-vectors` feedback topic and, split by index shard, to the index), and every ``item_store_ms``
their Cassandra rows leave as `RowBatch` records (tag 'W') for the Java Cassandra sink. Both kinds go on
the main output and are split by their tag byte: a record yielded by a timer cannot use a side output
in PyFlink 2.2 (`operators/serving/flink.py`).

Why two intervals: the feedback must be fresh (it is what serving ranks with), while the Cassandra row
is for readers outside the job. The dirty sets are in memory: after a restore every item of the shard
counts as changed once, so nothing that was pending at the failure is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from operators.items.logic import item_from_row, item_rows_json
from operators.items.shard import ItemShard
from operators.learner.bpr import BPRParams
from operators.metrics import Level
from state_schemas import item_cols, item_vector
from state_schemas.batches import decode_grads
from state_schemas.cassandra_rows import ITEM_VECTORS, encode_rows
from state_schemas.item_vector import ItemVector
from state_schemas.shard_meta import ITEM_META_STATE, blank_start, written_before

LOG_STATE = "item-log"  # "s" -> snapshot, "d<n>" -> one ItemLog blob per batch (docs/state.md)
ITEMS_STATE = "item-vectors-by-shard"  # release 0.2: item id -> item_vector blob; read on restore, then cleared
MAX_BATCH = 500  # vectors per feedback record: ~150 KB at dim 64, far below Kafka's 1 MB default
MIN_SNAPSHOT_BYTES = 65_536  # compact no more often than this much log


class ItemReader(Protocol):
    """What the item stage reads from Cassandra (injected: operators never import pipeline/): rehydration."""

    def read_items(self, item_ids: list[str]) -> list[dict[str, object]]: ...

    def close(self) -> None: ...


class ItemStage(KeyedProcessFunction):  # type: ignore[misc]
    """(item shard key, GradBatch) keyed by item shard → VectorBatch records (coalesced per interval)."""

    def __init__(self, bpr: BPRParams, seed: int, reader: Callable[[], ItemReader], *, flush_ms: int,
                 store_ms: int, rehydrate: bool = True) -> None:
        self.rehydrate = rehydrate
        self.bpr = bpr
        self.seed = seed
        self.reader_factory = reader
        self.flush_ms = flush_ms
        self.store_ms = store_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        def blobs(name: str) -> Any:
            return runtime_context.get_map_state(MapStateDescriptor(name, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))

        self.log = blobs(LOG_STATE)
        self.legacy = blobs(ITEMS_STATE)
        self.meta = blobs(ITEM_META_STATE)
        self.cutoff: dict[str, int | None] = {}  # shard key -> rows written before this (epoch ms) may hydrate
        self.shards: dict[str, ItemShard] = {}
        self.to_flush: dict[str, set[int]] = {}  # shard key -> rows changed since the last feedback record
        self.to_store: dict[str, set[int]] = {}  # shard key -> rows changed since the last Cassandra write
        self.logged: dict[str, tuple[int, int, int]] = {}  # shard key -> (next blob, log bytes, snapshot bytes)
        self.reader = self.reader_factory()
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.updates = group.counter("item_updates")
        self.flushes = group.counter("item_flushes")
        self.stores = group.counter("item_stores")
        self.rehydrated = group.counter("items_rehydrated")
        self.items_in_memory = Level(group.counter("items_in_memory"))  # levels, not gauges: operators/metrics.py
        self.state_bytes = Level(group.counter("item_state_bytes"))  # keyed state: log + snapshot blobs

    def close(self) -> None:
        if hasattr(self, "reader"):
            self.reader.close()

    def _shard(self, key: str) -> ItemShard:
        shard = self.shards.get(key)
        if shard is None:
            shard = ItemShard(self.bpr.dim)
            for item_id, blob in self.legacy.items():
                shard.put(item_id, item_vector.decode(bytes(blob)))
            logged = sorted((k, bytes(b)) for k, b in self.log.items())
            for blob in [b for k, b in logged if k == "s"] + [b for k, b in logged if k != "s"]:
                shard.put_cols(item_cols.decode_log(blob))
            self.logged[key] = (max((int(k[1:]) + 1 for k, _ in logged if k != "s"), default=0),
                                sum(len(b) for k, b in logged if k != "s"),
                                sum(len(b) for k, b in logged if k == "s"))
            self.shards[key] = shard
            self.cutoff[key] = self._blank_start(len(shard) > 0)
            self.to_flush[key] = set(range(len(shard)))
            self.to_store[key] = set(range(len(shard)))
        return shard

    def _blank_start(self, has_state: bool) -> int | None:
        """When this shard key's state started empty (`state_schemas.shard_meta`); None: unknown, never hydrate."""
        return blank_start(self.meta.get, self.meta.put, has_state=has_state, now_ms=int(time.time() * 1000))

    def _hydrate(self, key: str) -> Callable[[list[str]], dict[str, ItemVector]] | None:
        cutoff = self.cutoff.get(key)
        if not self.rehydrate or cutoff is None:
            return None

        def read(item_ids: list[str]) -> dict[str, ItemVector]:
            found = {}
            for row in self.reader.read_items(item_ids):
                if written_before(row.get("written_at"), cutoff) and (v := item_from_row(row, self.bpr.dim)):
                    found[str(row["item_id"])] = v
            return found

        return read

    def _persist(self, key: str, shard: ItemShard, rows: Any) -> None:
        """One blob of what the batch changed; a snapshot instead once the log outweighs the last snapshot."""
        n, log_bytes, snap_bytes = self.logged[key]
        if log_bytes > max(snap_bytes, MIN_SNAPSHOT_BYTES):
            blob = item_cols.encode_log(shard.cols(np.arange(len(shard), dtype=np.int64)))
            self.log.clear()
            self.legacy.clear()  # release 0.2's layout is folded into the snapshot
            self.log.put("s", blob)
            self.logged[key] = (0, 0, len(blob))
            return
        blob = item_cols.encode_log(shard.cols(rows))
        self.log.put(f"d{n:09d}", blob)
        self.logged[key] = (n + 1, log_bytes + len(blob), snap_bytes)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
        key = value[0]
        shard = self._shard(key)
        g = decode_grads(bytes(value[1]))
        before = shard.hydrated
        rows = shard.apply(self.bpr, g, self.seed, self._hydrate(key))
        self.rehydrated.inc(shard.hydrated - before)
        self._persist(key, shard, rows)
        self.updates.inc(int(g.count.sum()))
        changed = rows.tolist()
        self.to_flush[key].update(changed)
        self.to_store[key].update(changed)
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        timers.register_processing_time_timer((now // self.flush_ms + 1) * self.flush_ms)
        timers.register_processing_time_timer((now // self.store_ms + 1) * self.store_ms)
        self.items_in_memory.set(sum(len(s) for s in self.shards.values()))
        self.state_bytes.set(sum(log + snap for _, log, snap in self.logged.values()))
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Any:
        key = ctx.get_current_key()
        shard = self._shard(key)
        if timestamp % self.store_ms == 0 and self.to_store[key]:
            rows = sorted(self.to_store[key])
            self.to_store[key] = set()
            self.stores.inc(len(rows))
            written_at = int(time.time() * 1000)
            for j in range(0, len(rows), MAX_BATCH):
                cols = shard.cols(np.asarray(rows[j : j + MAX_BATCH], dtype=np.int64))
                yield encode_rows([(ITEM_VECTORS, seq, text) for seq, text in item_rows_json(cols, written_at)])
        if timestamp % self.flush_ms == 0 and self.to_flush[key]:
            rows = sorted(self.to_flush[key])
            self.to_flush[key] = set()
            self.flushes.inc(len(rows))
            for j in range(0, len(rows), MAX_BATCH):
                yield item_cols.encode_vector_batch(shard.cols(np.asarray(rows[j : j + MAX_BATCH], dtype=np.int64)))

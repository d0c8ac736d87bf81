"""Flink adapter of the user stage: keyed by user shard, connected to the broadcast item vectors.

Per call: one `RecordBatch` of a user shard (events and requests in stream order, and the router's
watermark) goes through `operators.profile.shard.step`; the users it changed are written back to keyed
state in one ``put_all`` per state; its outputs leave as one record per downstream shard:
coalesced item gradients (`GradBatch`) on the main output to the item shards, queries and interaction
shares (`ShareBatch`) on `INDEX` to the index shards, closed sessions on `SESSIONS`.

The in-memory `UserShard` is a cache of keyed state: it is loaded from state on the first record of
its key after `open()` (every profile, to rebuild the heap of session ends) and every change is
written back before the call returns, so a checkpoint taken between two calls holds everything.

Cassandra: each changed user's row is emitted at most once per ``profile_flush_ms`` (checked on every
call; the router sends every shard a watermark batch at least every tick, so an idle shard still
flushes), and at once when a session closes, as `RowBatch` records on `ROWS` to the Java Cassandra sink,
which acknowledges every row before a checkpoint barrier passes it. After a restore every user of the
shard is written again once: what was pending at the failure is not lost. Cassandra is read here only
to rehydrate users without state (the injected reader).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedBroadcastProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from operators.metrics import Level
from operators.profile.embedding import ItemTable, upsert_many
from operators.profile.logic import SessionSummary
from operators.profile.rows import WRITTEN_AT, last_event_ts, profile_from_row, profile_json, session_row_json
from operators.profile.shard import UserParams, UserShard, step
from state_schemas import feature_batch, item_vector, item_vector_v1, seen_items, user_profile
from state_schemas.batches import decode_records, encode_grads
from state_schemas.cassandra_rows import SESSIONS as SESSIONS_TABLE
from state_schemas.cassandra_rows import USER_PROFILES, encode_rows
from state_schemas.codec import TAGS
from state_schemas.item_cols import decode_vector_batch, from_states
from state_schemas.messages import decode_vector_msg
from state_schemas.shard_meta import USER_META_STATE, blank_start, written_before
from state_schemas.user_profile import UserProfile

KEYED_BYTES_TYPE = Types.TUPLE([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
SESSIONS = OutputTag("sessions", Types.PRIMITIVE_ARRAY(Types.BYTE()))
INDEX = OutputTag("index-records", KEYED_BYTES_TYPE)
ROWS = OutputTag("cassandra-rows", Types.PRIMITIVE_ARRAY(Types.BYTE()))  # RowBatch for the Cassandra sink
DRIFT = OutputTag("drift-features", Types.PRIMITIVE_ARRAY(Types.BYTE()))  # FeatureBatch per batch (drift monitor)
ITEM_VECTORS_STATE = MapStateDescriptor("item-vectors", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
PROFILES_STATE = "user-profiles"  # user id -> profile blob, under the user-shard key (docs/state.md)
SEEN_STATE = "user-seen-items"  # user id -> seen-items blob, under the user-shard key
INDEX_KEY_PREFIX = "\x01"  # records for index shard n carry "\x01<n>" as key
_BATCH_TAG = TAGS["vector_batch_msg"]


def index_key(shard: int) -> str:
    """Key of records bound for index shard ``shard``."""
    return f"{INDEX_KEY_PREFIX}{shard}"


def item_key(shard: int) -> str:
    """Key of gradient batches bound for item shard ``shard``."""
    return f"i{shard}"


class ProfileReader(Protocol):
    """What the user stage reads from Cassandra (injected: operators never import pipeline/): rehydration."""

    def read_rows(self, user_ids: list[str]) -> list[dict[str, object]]: ...

    def close(self) -> None: ...


def session_json(s: SessionSummary) -> bytes:
    """The sessions-topic record of a closed session."""
    import json

    return json.dumps(
        {
            "user_id": s.user_id, "session_id": s.session_id, "start_ts": s.start_ts, "end_ts": s.end_ts,
            "event_count": s.event_count, "events_by_type": dict(s.type_counts),
            "categories": dict(s.categories), "dwell_ms": s.dwell_ms, "converted": s.converted,
            "seq": s.seq,
        },
        separators=(",", ":"),
    ).encode()


class UserStage(KeyedBroadcastProcessFunction):  # type: ignore[misc]
    """(user shard key, RecordBatch) keyed by shard ⋈ broadcast item-vector batches."""

    def __init__(self, params: UserParams, reader: Callable[[], ProfileReader], profile_flush_ms: int,
                 rehydrate: bool = True) -> None:
        self.params = params
        self.reader_factory = reader
        self.flush_ms = profile_flush_ms
        self.rehydrate = rehydrate

    def open(self, runtime_context: RuntimeContext) -> None:
        self.profiles = runtime_context.get_map_state(
            MapStateDescriptor(PROFILES_STATE, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.seen = runtime_context.get_map_state(
            MapStateDescriptor(SEEN_STATE, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.meta = runtime_context.get_map_state(
            MapStateDescriptor(USER_META_STATE, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.cutoff: dict[str, int | None] = {}  # shard key -> rows written before this (epoch ms) may hydrate
        self.shards: dict[str, UserShard] = {}
        self.pending: dict[str, set[str]] = {}  # shard key -> users to write at the next flush
        self.flushed: dict[str, float] = {}
        self.table = ItemTable(self.params.bpr.dim)
        self.held: dict[str, int] = {}  # item -> seq of the feedback vector held (mirrors broadcast state)
        self.own_ts: dict[str, int] = {}  # item -> event time of the newest own gradient applied to the replica
        self.table_loaded = False
        self.rng = np.random.default_rng(self.params.seed)
        self.reader = self.reader_factory()
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.events = group.counter("user_events")
        self.duplicates = group.counter("duplicates")
        self.late = group.counter("late_events")
        self.sessions = group.counter("sessions_closed")
        self.profile_writes = group.counter("profile_writes")
        self.requests = group.counter("requests")
        self.eval_queries = group.counter("eval_queries")
        self.batches = group.counter("user_batches")
        self.rehydrated = group.counter("profiles_rehydrated")
        self.users_in_memory = Level(group.counter("users_in_memory"))  # levels, not gauges: operators/metrics.py
        self.freshness = Level(group.counter("profile_freshness_ms"))  # wall clock - newest event of a flush

    def close(self) -> None:
        if hasattr(self, "reader"):
            self.reader.close()

    def _load_table(self, ctx: Any) -> None:
        # After a restore the broadcast state is back but the numpy replica is not: rebuild it once.
        for item_id, blob in ctx.get_broadcast_state(ITEM_VECTORS_STATE).items():
            v = item_vector.decode(bytes(blob))
            self.table.upsert(item_id, v.as_array(), v.bias)
            self.held[item_id] = v.seq
        self.table_loaded = True

    def _shard(self, key: str) -> UserShard:
        shard = self.shards.get(key)
        if shard is None:
            profiles = {u: user_profile.decode(bytes(b)) for u, b in self.profiles.items()}

            def load_seen(user_id: str) -> tuple[str, ...] | None:
                blob = self.seen.get(user_id)
                return None if blob is None else seen_items.decode(bytes(blob))

            shard = UserShard.restore(profiles, load_seen, self.params.gap_ms)
            self.shards[key] = shard
            self.cutoff[key] = self._blank_start(profiles)
            self.pending[key] = set(profiles)  # written again once: a pending write may have been lost
            self.flushed[key] = time.monotonic()
        return shard

    def _blank_start(self, profiles: dict[str, UserProfile]) -> int | None:
        """When this shard key's state started empty (`state_schemas.shard_meta`); None: unknown, never hydrate."""
        return blank_start(self.meta.get, self.meta.put, has_state=bool(profiles), now_ms=int(time.time() * 1000))

    def _hydrate(self, key: str) -> Callable[[list[str]], dict[str, UserProfile]] | None:
        cutoff = self.cutoff.get(key)
        if not self.rehydrate or cutoff is None:
            return None

        def read(users: list[str]) -> dict[str, UserProfile]:
            found = {}
            for row in self.reader.read_rows(users):
                if written_before(row.get(WRITTEN_AT), cutoff):
                    found[str(row["user_id"])] = profile_from_row(row)
            return found

        return read

    def process_element(self, value: Any, ctx: Any) -> Any:
        if not self.table_loaded:
            self._load_table(ctx)
        key = value[0]
        shard = self._shard(key)
        watermark, records = decode_records(bytes(value[1]))
        out = step(shard, records, watermark, self.table, self.rng, self.params, self._hydrate(key))
        self.rehydrated.inc(out.hydrated)
        self.batches.inc()
        if out.changed:
            self.profiles.put_all({u: user_profile.encode(shard.profiles[u]) for u in out.changed})
            seen = {u: seen_items.encode(shard.seen[u]) for u in out.changed if u in shard.seen}
            if seen:
                self.seen.put_all(seen)
        self.events.inc(out.events)
        self.duplicates.inc(out.duplicates)
        self.late.inc(out.late)
        self.requests.inc(out.requests)
        self.eval_queries.inc(out.eval_queries)
        for s, shares in out.index.items():
            yield INDEX, (index_key(s), shares)
        for s, grads in out.grads.items():
            for item_id in grads.item_ids:
                self.own_ts[item_id] = grads.ts
            yield item_key(s), encode_grads(grads)
        pending = self.pending[key]
        pending |= out.changed
        now = time.monotonic()
        if pending and now - self.flushed[key] >= self.flush_ms / 1000:
            due, self.flushed[key] = set(pending), now
        else:
            due = {c.user_id for c in out.closed}
        if due or out.closed:
            written_at = int(time.time() * 1000)
            profiles = shard.profiles
            yield ROWS, encode_rows(
                [(USER_PROFILES, profiles[u].seq, profile_json(profiles[u], written_at)) for u in due]
                + [(SESSIONS_TABLE, c.seq, session_row_json(c)) for c in out.closed])
            self.profile_writes.inc(len(due))
            if due:
                self.freshness.set(written_at - max(last_event_ts(profiles[u]) for u in due))
            pending -= due
        for c in out.closed:
            self.sessions.inc()
            yield SESSIONS, session_json(c)
        if out.drift:
            yield DRIFT, feature_batch.encode(out.drift)
        self.users_in_memory.set(sum(len(s.profiles) for s in self.shards.values()))

    def process_broadcast_element(self, value: Any, ctx: Any) -> None:
        if not self.table_loaded:
            self._load_table(ctx)
        data = bytes(value)
        cols = decode_vector_batch(data) if data[0] == _BATCH_TAG else from_states([decode_vector_msg(data)])
        held, own = self.held, self.own_ts
        # The feedback topic has several partitions: an older vector of an item may arrive after a newer one.
        # Keep the higher seq, so every user-stage instance converges on the same state.
        newer = [j for j, (i, q) in enumerate(zip(cols.ids, cols.seq.tolist(), strict=True)) if held.get(i, -1) < q]
        if not newer:
            return
        fresh = cols.take(np.asarray(newer, dtype=np.int64))
        ids, seq, ts = fresh.ids, fresh.seq.tolist(), fresh.updated_ts.tolist()
        held.update(zip(ids, seq, strict=True))
        ctx.get_broadcast_state(ITEM_VECTORS_STATE).put_all(
            {i: item_vector_v1.pack(q, c, t, b, v) for i, q, c, t, b, v in zip(
                ids, seq, fresh.update_count.tolist(), ts, fresh.bias.tolist(), fresh.vecs, strict=True)})
        # A vector older than this subtask's own latest gradient of the item would roll the replica back (it
        # already holds that gradient): keep the replica there; the broadcast state still takes the vector.
        take = [j for j, (i, t) in enumerate(zip(ids, ts, strict=True)) if (o := own.get(i)) is None or t > o]
        if take:
            sel = np.asarray(take, dtype=np.int64)
            upsert_many(self.table, [ids[j] for j in take], fresh.vecs[sel], fresh.bias[sel])

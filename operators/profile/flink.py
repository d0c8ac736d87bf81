"""Flink adapter of the user stage: keyed by user, connected to the broadcast item vectors.

Per event: dedupe/session/interest update (`operators.profile.logic`), a test-then-learn evaluation
query to the index shards (when sampled), interaction shares to the index shards, one BPR step against
the local item table (`operators.profile.embedding`) with item gradients out on the main output (to
the item stage), an event-time timer for the session gap and an aligned processing-time timer that
coalesces the profile's Cassandra write. A closed session goes out under `SESSION_KEY` and to
Cassandra. Per request (same input stream, tagged record): the user's query, scattered to every shard.
"""

from __future__ import annotations

import numpy as np
from pyflink.common import Types
from pyflink.datastream import TimeDomain
from pyflink.datastream.functions import KeyedBroadcastProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from operators.index.flink import index_key
from operators.index.logic import interaction_shares
from operators.learner.bpr import BPRParams
from operators.learner.cooc import CoocParams
from operators.profile import logic
from operators.profile.embedding import ItemTable, user_step
from operators.serving.logic import make_query, state_digest
from pipeline.settings import Settings
from state_schemas import item_vector, seen_items, user_profile
from state_schemas.codec import TAGS
from state_schemas.events import decode_event
from state_schemas.messages import (
    decode_request,
    decode_vector_batch,
    decode_vector_msg,
    encode_interaction,
    encode_query,
    encode_update,
)

# Closed sessions leave on the main output under this key, not as a side output: PyFlink 2.2's
# embedded keyed-broadcast operator drops the side-output routing for records yielded by on_timer
# (operations.py yields them unfiltered → ClassCastException), and sessions close in on_timer. Item ids
# never start with a control character (the event contract rejects them), so the key cannot collide.
SESSION_KEY = "\x00session"
UPDATE_TYPE = Types.TUPLE([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
ITEM_VECTORS_STATE = MapStateDescriptor("item-vectors", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
PROFILE_STATE = "user-profile"  # renaming a state descriptor is a deliberate reset (docs/state.md)
SEEN_STATE = "seen-items"
_REQUEST_TAG = TAGS["request_msg"]
_BATCH_TAG = TAGS["vector_batch_msg"]


def sampled(event_id: str, percent: int) -> bool:
    """Deterministic sampling of the online evaluation by event id (the same events on every replay)."""
    import zlib

    return percent >= 100 or (percent > 0 and zlib.crc32(event_id.encode()) % 100 < percent)


def session_json(s: logic.SessionSummary) -> bytes:
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


class UserStage(KeyedBroadcastProcessFunction):
    """(user_id, ts, event bytes) keyed by user ⋈ broadcast item-vector records."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        from pipeline.cassandra_sink import CassandraWriter

        s = self.settings
        self.gap = s.session_gap_ms
        self.flush_ms = s.profile_flush_ms
        self.seed = s.model_seed
        self.bpr = BPRParams(dim=s.embedding_dim, negatives=s.negatives)
        self.state = runtime_context.get_state(ValueStateDescriptor(PROFILE_STATE, Types.PICKLED_BYTE_ARRAY()))
        self.seen = runtime_context.get_state(ValueStateDescriptor(SEEN_STATE, Types.PICKLED_BYTE_ARRAY()))
        self.shards = s.index_shards
        self.window = CoocParams().window
        self.table = ItemTable(self.bpr.dim)
        self.table_loaded = False
        self.rng = np.random.default_rng(self.seed)
        self.writer = CassandraWriter(s)
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.events = group.counter("user_events")
        self.duplicates = group.counter("duplicates")
        self.late = group.counter("late_events")
        self.sessions = group.counter("sessions_closed")
        self.profile_writes = group.counter("profile_writes")
        self.requests = group.counter("requests")
        self.eval_queries = group.counter("eval_queries")

    def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()

    def _load_table(self, ctx) -> None:  # noqa: ANN001
        # After a restore the broadcast state is back but our numpy mirror is not: rebuild it once.
        for item_id, blob in ctx.get_broadcast_state(ITEM_VECTORS_STATE).items():
            v = item_vector.decode(bytes(blob))
            self.table.upsert(item_id, v.as_array(), v.bias)
        self.table_loaded = True

    def process_element(self, value, ctx):  # noqa: ANN001, ANN201
        if not self.table_loaded:
            self._load_table(ctx)
        user_id, _ts, payload = value
        payload = bytes(payload)
        blob = self.state.value()
        prof = user_profile.decode(blob) if blob is not None else None
        if payload[0] == _REQUEST_TAG:
            yield from self._request(user_id, payload, prof, blob)
            return
        event = decode_event(payload)
        new, out = logic.on_event(prof, event, gap_ms=self.gap)
        if out.status is logic.Status.DUPLICATE:
            self.duplicates.inc()
            return
        self.events.inc()
        if out.status is logic.Status.LATE:
            self.late.inc()
        seen_blob = self.seen.value()
        seen = seen_items.decode(bytes(seen_blob)) if seen_blob is not None else ()
        # Test, then learn: what would this user have been served just before this interaction?
        s = self.settings
        if seen and event.item_id not in seen and sampled(event.event_id, s.online_eval_percent):
            self.eval_queries.inc()
            yield from self._scatter(make_query(
                prof, seen, self._vector_of, qid=f"eval:{event.event_id}", user_id=user_id, kind="eval",
                k=s.eval_k, ts=event.ts, target=event.item_id, shards=self.shards,
                session_weight=s.session_weight, personalize_after=s.personalize_after_events,
            ))
        recent = prof.recent_items if prof is not None else ()
        for shard, share in interaction_shares(recent, event.item_id, event.ts, event.weight, event.category,
                                               window=self.window, shards=self.shards):
            yield index_key(shard), encode_interaction(share)
        self.seen.update(seen_items.encode(seen_items.add(seen, event.item_id, s.seen_items_max)))
        vec = new.embedding_vector() if new.embedding else None
        new_vec, updates = user_step(
            self.bpr, self.seed, user_id, vec, event.item_id, event.weight, event.ts,
            self.table, self.rng,
        )
        new = new.with_embedding(new_vec, event.ts)
        self.state.update(user_profile.encode(new))
        for upd in updates:
            yield upd.item_id, encode_update(upd)
        if out.closed is not None:
            yield from self._closed(out.closed, new)
        timers = ctx.timer_service()
        if out.timer_ts is not None:
            timers.register_event_time_timer(out.timer_ts)
        now = timers.current_processing_time()
        timers.register_processing_time_timer((now // self.flush_ms + 1) * self.flush_ms)

    def _vector_of(self, item_id: str):  # noqa: ANN202
        i = self.table.index.get(item_id)
        return None if i is None else self.table.vecs[i]

    def _scatter(self, query):  # noqa: ANN001, ANN202
        blob = encode_query(query)
        for shard in range(self.shards):
            yield index_key(shard), blob

    def _request(self, user_id: str, payload: bytes, prof: user_profile.UserProfile | None, blob: object):  # noqa: ANN202
        """Scatter a query; `blob` is the profile state as `process_element` read it (hashed, not re-read)."""
        req = decode_request(payload)
        self.requests.inc()
        s = self.settings
        seen_blob = self.seen.value()
        seen = seen_items.decode(bytes(seen_blob)) if seen_blob is not None else ()
        digest = state_digest(None if blob is None else bytes(blob), None if seen_blob is None else bytes(seen_blob))
        yield from self._scatter(make_query(
            prof, seen, self._vector_of, qid=req.request_id, user_id=user_id, kind="request", k=req.k,
            ts=req.ts, exclude_seen=req.exclude_seen, category=req.category, shards=self.shards,
            session_weight=s.session_weight, personalize_after=s.personalize_after_events, digest=digest,
        ))

    def _closed(self, summary: logic.SessionSummary, prof: user_profile.UserProfile):  # noqa: ANN202
        self.sessions.inc()
        self.writer.write_session(summary)
        self.writer.write_profile(prof)
        self.profile_writes.inc()
        yield SESSION_KEY, session_json(summary)

    def on_timer(self, timestamp: int, ctx):  # noqa: ANN001, ANN201
        blob = self.state.value()
        if blob is None:
            return
        prof = user_profile.decode(blob)
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            new, closed = logic.on_timer(prof, timestamp, self.gap)
            if closed is not None:
                self.state.update(user_profile.encode(new))
                yield from self._closed(closed, new)
            return
        # Aligned flush timer: write the profile as it is now (idempotent, ordered by seq).
        self.writer.write_profile(prof)
        self.profile_writes.inc()

    def process_broadcast_element(self, value, ctx):  # noqa: ANN001, ANN201
        data = bytes(value)
        broadcast = ctx.get_broadcast_state(ITEM_VECTORS_STATE)
        for msg in decode_vector_batch(data) if data[0] == _BATCH_TAG else [data]:
            self._take_vector(broadcast, msg)

    def _take_vector(self, broadcast, msg: bytes) -> None:  # noqa: ANN001
        item_id, _ts, state = decode_vector_msg(msg)
        held = broadcast.get(item_id)
        # The feedback topic has several partitions: an older vector of an item may arrive after a
        # newer one. Keep the higher seq, so every user-stage instance converges on the same state.
        if held is not None and item_vector.decode(bytes(held)).seq >= state.seq:
            return
        broadcast.put(item_id, item_vector.encode(state))
        self.table.upsert(item_id, state.as_array(), state.bias)


"""Flink adapter of the item stage: keyed by item, applies the user stage's gradients.

Each item's state is one versioned blob (`state_schemas.item_vector`). Aligned processing-time timers
coalesce output: at most one `item-vectors` feedback record (to the user stage and the index) per item
per `item_flush_ms`, and one Cassandra write per item per `item_store_ms`, whatever the update rate.
Why two intervals: the feedback must be fresh (it is what serving ranks with), while the Cassandra
row is for readers outside the job; synchronous writes at the feedback rate were measured to stall
the whole job (the item stage spent a third of its time waiting on Cassandra and back-pressured it).
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from operators.items.logic import apply
from operators.learner.bpr import BPRParams
from pipeline.settings import Settings
from state_schemas import item_vector
from state_schemas.messages import decode_update, encode_vector_msg

ITEM_STATE = "item-vector"


class ItemStage(KeyedProcessFunction):
    """(item_id, ItemUpdate bytes) keyed by item → item-vectors records (coalesced)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        from pipeline.cassandra_sink import CassandraWriter

        s = self.settings
        self.bpr = BPRParams(dim=s.embedding_dim, negatives=s.negatives)
        self.seed = s.model_seed
        self.flush_ms = s.item_flush_ms
        self.store_ms = s.item_store_ms
        self.state = runtime_context.get_state(ValueStateDescriptor(ITEM_STATE, Types.PICKLED_BYTE_ARRAY()))
        self.writer = CassandraWriter(s)
        group = runtime_context.get_metrics_group().add_group("liverec")
        self.updates = group.counter("item_updates")
        self.flushes = group.counter("item_flushes")
        self.stores = group.counter("item_stores")

    def close(self) -> None:
        if hasattr(self, "writer"):
            self.writer.close()

    def process_element(self, value, ctx: KeyedProcessFunction.Context):  # noqa: ANN001, ANN201
        upd = decode_update(bytes(value[1]))
        blob = self.state.value()
        cur = item_vector.decode(bytes(blob)) if blob is not None else None
        self.state.update(item_vector.encode(apply(self.bpr, cur, upd, self.seed)))
        self.updates.inc()
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        timers.register_processing_time_timer((now // self.flush_ms + 1) * self.flush_ms)
        timers.register_processing_time_timer((now // self.store_ms + 1) * self.store_ms)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # noqa: ANN201
        blob = self.state.value()
        if blob is None:
            return
        item_id = ctx.get_current_key()
        state = item_vector.decode(bytes(blob))
        if timestamp % self.store_ms == 0:
            self.writer.write_item(item_id, state)
            self.stores.inc()
        if timestamp % self.flush_ms == 0:
            self.flushes.inc()
            yield encode_vector_msg(item_id, state.updated_ts, state)

"""Flink adapter that batches the item stage's vectors for the feedback topic.

Keyed by a small number of batch keys (crc32 of the item id), it keeps each key's pending vectors in
keyed MapState (so a checkpoint never loses one) and emits them as one `VectorBatch` record per key
per ``feedback_batch_ms``. Why: see `state_schemas.messages` (VectorBatch): the user stage alternates
between its event input and its feedback input record by record, so the feedback must arrive in few,
large records to keep up.
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from pipeline.settings import Settings
from state_schemas.messages import encode_vector_batch

PENDING_STATE = "pending-vectors"
BATCH_KEYS = 4
MAX_BATCH = 500  # vectors per record: ~150 KB at dim 64, far below Kafka's 1 MB default


def batch_key(item_id: str) -> str:
    """The batch key of an item (stable across processes)."""
    import zlib

    return str(zlib.crc32(item_id.encode()) % BATCH_KEYS)


class BatchVectors(KeyedProcessFunction):
    """(batch key, ItemVectorMsg bytes) → VectorBatch records, at most one per key per interval."""

    def __init__(self, settings: Settings) -> None:
        self.interval = settings.feedback_batch_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.pending = runtime_context.get_map_state(
            MapStateDescriptor(PENDING_STATE, Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self.batches = runtime_context.get_metrics_group().add_group("liverec").counter("feedback_batches")

    def process_element(self, value, ctx: KeyedProcessFunction.Context):  # noqa: ANN001, ANN201
        from state_schemas.messages import decode_vector_msg

        msg = bytes(value[1])
        self.pending.put(decode_vector_msg(msg)[0], msg)  # a newer vector of the same item replaces the older
        now = ctx.timer_service().current_processing_time()
        ctx.timer_service().register_processing_time_timer((now // self.interval + 1) * self.interval)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # noqa: ANN201
        msgs = [bytes(m) for m in self.pending.values()]
        self.pending.clear()
        for i in range(0, len(msgs), MAX_BATCH):
            self.batches.inc()
            yield encode_vector_batch(msgs[i : i + MAX_BATCH])

"""The smallest real liverec job: Kafka JSON events → per-user count in keyed state → Kafka, exactly once.

It exercises every piece the full job relies on (KafkaSource offsets in checkpoints, keyed state in
thread mode, a transactional KafkaSink committed on checkpoint) with nothing else in the way, so a
failure here is an infrastructure failure, not a modelling one.
"""

from __future__ import annotations

import json

from pipeline.settings import Settings

COUNT_STATE_UID = "count-per-user"


UNPARSABLE = "<unparsable>"


def parse_user(raw: str) -> str:
    """User id of a JSON event; unparsable records are counted under one visible key, not dropped."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return UNPARSABLE
    if not isinstance(obj, dict) or "user_id" not in obj:
        return UNPARSABLE
    return str(obj["user_id"])


def build(  # noqa: ANN001
    env, settings: Settings, *, bounded: bool = False, start_from_ms: int | None = None, group_id: str = "liverec-count"
) -> None:
    """Add the count pipeline to `env`: events topic → count per user → user-counts topic.

    `bounded` stops at the offsets that were latest when the job started (tests); `start_from_ms`
    starts from the first record at or after that timestamp (the demo), else from the earliest.
    """
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetsInitializer,
        KafkaRecordSerializationSchema,
        KafkaSink,
        KafkaSource,
    )
    from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    from pipeline.sources_sinks import with_security

    class CountPerUser(KeyedProcessFunction):
        """Running count per user; emits 'user_id,count' for every event."""

        def open(self, runtime_context: RuntimeContext) -> None:
            self.count = runtime_context.get_state(ValueStateDescriptor("count", Types.LONG()))

        def process_element(self, value: str, ctx: KeyedProcessFunction.Context):  # noqa: ANN201
            n = (self.count.value() or 0) + 1
            self.count.update(n)
            yield f"{ctx.get_current_key()},{n}"

    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_topics(settings.topic("events"))
        .set_group_id(group_id)
        .set_starting_offsets(
            KafkaOffsetsInitializer.timestamp(start_from_ms) if start_from_ms else KafkaOffsetsInitializer.earliest()
        )
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
    )
    builder = with_security(builder, settings)
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    source = builder.build()

    sink = with_security(
        KafkaSink.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(settings.topic("user-counts"))
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .set_transactional_id_prefix(f"{settings.job_name}-{settings.topic_prefix}count")
        .set_property("transaction.timeout.ms", str(settings.kafka_transaction_timeout_ms)),
        settings,
    ).build()

    events = env.from_source(source, WatermarkStrategy.no_watermarks(), "events-source").uid("events-source")
    counts = (
        events.map(parse_user, output_type=Types.STRING())
        .name("parse-user")
        .uid("parse-user")
        .key_by(lambda u: u, key_type=Types.STRING())
        .process(CountPerUser(), output_type=Types.STRING())
        .name("count-per-user")
        .uid(COUNT_STATE_UID)
    )
    counts.sink_to(sink).name("user-counts-sink").uid("user-counts-sink")


def main() -> None:
    """Entry point for `flink run -py` and `liverec run --count-job`."""
    from pipeline.flink_env import stream_env
    from pipeline.settings import load_settings

    settings = load_settings()
    env = stream_env(settings)
    build(env, settings)
    env.execute(f"{settings.job_name}-count")


if __name__ == "__main__":
    main()

"""Kafka sources and sinks of the job, and its Cassandra rows sink, built from settings in one place.

Every sink is transactional (`EXACTLY_ONCE`) unless configured otherwise (only `recommendations` can
be): its records become visible to `read_committed` consumers when the checkpoint that covers them
completes. Each sink has its own transactional-id
prefix (job name + topic prefix + sink name), unique per job and environment.
"""

from __future__ import annotations

from pipeline.credentials import kafka_properties
from pipeline.settings import Settings

RAW_EVENTS_TABLE = "raw_events"


def _sql_string(value: str) -> str:
    """A SQL string literal (a quote inside is doubled)."""
    return "'" + value.replace("'", "''") + "'"


def security_options(settings: Settings) -> str:
    """The Kafka security options of a table's WITH clause (`properties.*`), each followed by a comma.

    Flink prints table options only masked where the key contains "jaas.config" (or "password"), as
    `properties.sasl.jaas.config` does.
    """
    return "".join(f"  {_sql_string('properties.' + k)} = {_sql_string(v)},\n"
                   for k, v in kafka_properties(settings).items())


def with_security(builder, settings: Settings):  # noqa: ANN001, ANN201 - pyflink builders
    """`builder` (a KafkaSource or KafkaSink builder) with the Kafka security properties set."""
    for key, value in kafka_properties(settings).items():
        builder = builder.set_property(key, value)
    return builder


def events_table_ddl(
    settings: Settings, *, group_id: str, bounded: bool = False, start_from_ms: int | None = None
) -> str:
    """Kafka table source of raw event and request bytes with topic/partition/offset metadata.

    Why the Table API here: the DataStream KafkaSource in PyFlink only offers value-only
    deserializers, but a dead letter must name the record's partition and offset; the table
    connector exposes them as metadata columns, and the 'raw' format keeps the bytes untouched
    (non-UTF-8 input reaches the validator as it was sent).
    """
    startup = (
        f"'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{start_from_ms}'"
        if start_from_ms
        else "'scan.startup.mode' = 'group-offsets', 'properties.auto.offset.reset' = 'earliest'"
    )
    bounded_opt = ", 'scan.bounded.mode' = 'latest-offset'" if bounded else ""
    # No event time and no WATERMARK here: the records are batched by processing time in Java
    # (`batch_query`), and the events router computes the watermark per partition from the batches
    # (operators/events/router.py), so it can never overtake records a batch still holds.
    # The per-partition fetch is bounded (source_fetch_bytes): the reader alternates between partitions
    # often, so no partition waits long enough to be declared idle while it still has records.
    return f"""
CREATE TEMPORARY TABLE {RAW_EVENTS_TABLE} (
  `value` BYTES,
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `pt` AS PROCTIME()
) WITH (
  'connector' = 'kafka',
  'topic' = '{settings.topic("events")};{settings.topic("rec-requests")}',
  'properties.bootstrap.servers' = '{settings.kafka_bootstrap}',
  'properties.group.id' = '{group_id}',
  'properties.isolation.level' = 'read_committed',
  'properties.max.partition.fetch.bytes' = '{settings.source_fetch_bytes}',
{security_options(settings)}  {startup},
  'format' = 'raw'{bounded_opt}
)"""


def batch_query(settings: Settings) -> str:
    """One row per ``batch_ms`` of processing time: the window's values, topics, partitions and offsets.

    Why in SQL: the window runs in Java, so no Python call is made per Kafka record; the router gets
    one call per window. A null value (tombstone) becomes empty bytes, which the validator
    dead-letters as empty, so the four arrays always line up.
    """
    return f"""
SELECT ARRAY_AGG(COALESCE(`value`, X'')) AS vs, ARRAY_AGG(`topic`) AS ts, ARRAY_AGG(`partition`) AS ps,
       ARRAY_AGG(`offset`) AS os
FROM TABLE(TUMBLE(TABLE {RAW_EVENTS_TABLE}, DESCRIPTOR(`pt`), INTERVAL '{settings.batch_ms / 1000:.3f}' SECOND))
GROUP BY window_start, window_end"""


def bytes_source(settings: Settings, topic: str, *, group_id: str):  # noqa: ANN201 - pyflink type
    """KafkaSource of raw values (bytes), read_committed, from the earliest offset."""
    from pyflink.common.serialization import ByteArraySchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

    return with_security(
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_topics(settings.topic(topic))
        .set_group_id(group_id)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(ByteArraySchema())
        .set_property("isolation.level", "read_committed"),
        settings,
    ).build()


def bytes_sink(settings: Settings, topic: str, *, name: str, exactly_once: bool = True):  # noqa: ANN201
    """KafkaSink of raw values (bytes) to a declared topic: transactional unless ``exactly_once=False``.

    ``exactly_once=False`` is AT_LEAST_ONCE: records are visible at once (no wait for the checkpoint),
    and a restart may repeat some; consumers dedupe by a key of the record (e.g. ``request_id``).
    """
    from pyflink.common.serialization import ByteArraySchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    return with_security(
        KafkaSink.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(settings.topic(topic))
            .set_value_serialization_schema(ByteArraySchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE if exactly_once else DeliveryGuarantee.AT_LEAST_ONCE)
        .set_transactional_id_prefix(f"{settings.job_name}-{settings.topic_prefix}{name}")
        .set_property("transaction.timeout.ms", str(settings.kafka_transaction_timeout_ms)),
        settings,
    ).build()


CASSANDRA_SINK_CLASS = "io.liverec.cassandra.CassandraRowsSink"


def cassandra_rows_sink(settings: Settings, name: str):  # noqa: ANN201 - pyflink type
    """Sink of RowBatch records (`state_schemas.cassandra_rows`): idempotent upserts, flushed before checkpoints.

    The Java sink (pipeline/jvm/, built by `liverec infra fetch`, on `pipeline.jars`) binds each row to a
    prepared ``INSERT ... JSON ? DEFAULT UNSET USING TIMESTAMP ?`` and writes unlogged batches of
    ``cassandra_batch_rows`` rows, at most ``cassandra_max_in_flight`` requests at a time; a request failing
    for longer than ``cassandra_write_timeout_s`` fails the job (it restarts from its last checkpoint).
    It logs in with the Cassandra credentials of the settings, if any (`pipeline.credentials`).
    The stream must carry Java ``byte[]`` (``output_type=Types.PRIMITIVE_ARRAY(Types.BYTE())``).
    ``name`` names the sink in its logs, errors and driver session; give the operator the same name and
    uid: ``stream.sink_to(cassandra_rows_sink(s, "profile-rows")).name("profile-rows").uid("profile-rows")``.
    Call it after `pipeline.flink_env.stream_env` (which puts the jar on the gateway's class path).
    """
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    from pipeline.credentials import cassandra_credentials
    from state_schemas.cassandra_rows import TABLES

    user, password = cassandra_credentials(settings)  # (None, None) without authentication
    jvm = get_gateway().jvm
    sink_class = jvm
    for part in CASSANDRA_SINK_CLASS.split("."):
        sink_class = getattr(sink_class, part)
    j_sink = sink_class(
        name,
        list(settings.cassandra_contact_points),
        settings.cassandra_port,
        settings.cassandra_local_dc,
        settings.cassandra_keyspace,
        list(TABLES),  # the table numbering lives in state_schemas.cassandra_rows only
        user,
        password,  # into the constructor only: never logged (the Java sink's toString leaves it out)
        settings.cassandra_max_in_flight,
        settings.cassandra_batch_rows,
        float(settings.cassandra_write_timeout_s),
    )
    return Sink(j_sink)

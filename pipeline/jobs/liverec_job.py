"""The liverec job graph.

    events + rec-requests (Kafka, one table source: raw bytes + topic/partition/offset)
      → validate            [uid validate-events]   bad input → dead-letter topic (with reason)
        (event time and watermarks per Kafka partition in the source: bounded out-of-orderness, idleness)
      → key by user ⋈ broadcast(item-vectors)
      → user stage          [uid user-state]        sessions, interests, user vector; Cassandra profiles;
                                                    builds queries (requests, online evaluation)
            main: item gradients, index records (queries, interaction shares) and closed sessions,
            split by filters on the key
            sessions → sessions topic
      → key by item
      → item stage          [uid item-state]        item vectors; Cassandra item_vectors
      → key by batch key → feedback batches [uid feedback-batches]  one record per key per feedback_batch_ms
      → item-vectors topic  → (read back by this job) → broadcast to the user stage
      index records ∪ item vectors → key by shard
      → index stage         [uid index-shard]       HNSW + popularity + co-occurrence per shard
            side output: partial answers → key by query id
            main output: maintenance events → index-events topic
      → gather              [uid gather]            one answer per request / outcome per evaluated event
      → recommendations topic, evaluations topic

Why two keyed stages and a feedback topic: user and item vectors live under different keys and
Flink 2.x has no DataStream iterations, so the item stage's vectors come back through a transactional
Kafka topic: the user stage sees item vectors at most about one checkpoint interval old.
"""

from __future__ import annotations

from pipeline.settings import Settings

# Stable uids of the DataStream part (tests/golden/job_uids.json holds the whole graph's uids;
# PyFlink fuses consecutive Python functions, so a fused function's own uid, e.g. "session-bytes",
# does not appear: the fused operator carries the first one's). The Table-API events source gets
# generated uids (table.exec.uid.generation=ALWAYS, pipeline/flink_env.py).
UIDS = (
    "validate-events", "dead-letter-sink", "item-vectors-source",
    "item-vectors-time", "user-state", "sessions-only", "sessions-sink", "item-updates-only",
    "item-state", "vectors-to-batches", "feedback-batches", "item-vectors-sink", "index-records-only",
    "vectors-to-index", "index-shard", "index-events-sink",
    "gather", "answers-only", "recommendations-sink", "evals-only", "evaluations-sink",
)


def build(env, settings: Settings, *, bounded: bool = False, start_from_ms: int | None = None) -> None:  # noqa: ANN001
    """Add the whole job to `env` (a StreamExecutionEnvironment from pipeline.flink_env)."""
    from pyflink.common import Duration, Types, WatermarkStrategy
    from pyflink.common.watermark_strategy import TimestampAssigner
    from pyflink.table import StreamTableEnvironment

    from operators.events.flink import DEAD_LETTERS, EVENT_TYPE, ValidateEvents
    from operators.index.flink import INDEX_KEY_PREFIX, PARTIALS, IndexStage, index_key
    from operators.index.logic import shard_of
    from operators.items.batch import BatchVectors, batch_key
    from operators.items.flink import ItemStage
    from operators.profile.flink import ITEM_VECTORS_STATE, SESSION_KEY, UPDATE_TYPE, UserStage
    from operators.serving.flink import ANSWER, EVAL, OUT_TYPE, Gather
    from pipeline.sources_sinks import RAW_EVENTS_TABLE, bytes_sink, bytes_source, events_table_ddl
    from state_schemas.messages import decode_vector_msg, partial_qid, vector_msg_ts

    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())

    group = f"{settings.job_name}-{settings.topic_prefix}job"
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(events_table_ddl(settings, group_id=group, bounded=bounded, start_from_ms=start_from_ms))
    t_env.get_config().set("table.exec.source.idle-timeout", f"{settings.source_idleness_ms} ms")
    raw = t_env.to_data_stream(
        t_env.sql_query(f"SELECT `value`, `topic`, `partition`, `offset` FROM {RAW_EVENTS_TABLE}")
    )

    validated = raw.process(
        ValidateEvents(
            max_bytes=settings.max_event_bytes, max_skew_ms=settings.max_clock_skew_ms,
            min_ts_ms=settings.min_event_ts_ms, requests_topic=settings.topic("rec-requests"),
        ),
        output_type=EVENT_TYPE,
    ).name("validate-events").uid("validate-events")
    validated.get_side_output(DEAD_LETTERS).sink_to(
        bytes_sink(settings, "dead-letter", name="dead-letter")
    ).name("dead-letter-sink").uid("dead-letter-sink")

    class VectorTs(TimestampAssigner):
        def extract_timestamp(self, value, record_timestamp: int) -> int:  # noqa: ANN001
            return vector_msg_ts(bytes(value))

    def watermarks(assigner: TimestampAssigner) -> WatermarkStrategy:
        return (
            WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(settings.out_of_orderness_ms))
            .with_idleness(Duration.of_millis(settings.source_idleness_ms))
            .with_timestamp_assigner(assigner)
        )

    # Timestamps and per-partition watermarks come from the source (events_table_ddl).
    events = validated

    vectors = env.from_source(
        bytes_source(settings, "item-vectors", group_id=f"{group}-feedback"),
        WatermarkStrategy.no_watermarks(),
        "item-vectors-source",
    ).uid("item-vectors-source")
    vectors = vectors.assign_timestamps_and_watermarks(watermarks(VectorTs())).name("item-vectors-time").uid(
        "item-vectors-time"
    )

    users = (
        events.key_by(lambda e: e[0], key_type=Types.STRING())
        .connect(vectors.broadcast(ITEM_VECTORS_STATE))
        .process(UserStage(settings), output_type=UPDATE_TYPE)
        .name("user-state")
        .uid("user-state")
    )
    users.filter(lambda u: u[0] == SESSION_KEY).name("sessions-only").uid("sessions-only").map(
        lambda u: u[1], output_type=Types.PRIMITIVE_ARRAY(Types.BYTE())
    ).name("session-bytes").uid("session-bytes").sink_to(bytes_sink(settings, "sessions", name="sessions")).name(
        "sessions-sink"
    ).uid("sessions-sink")

    items = (
        users.filter(lambda u: u[0] != SESSION_KEY and not u[0].startswith(INDEX_KEY_PREFIX))
        .name("item-updates-only")
        .uid("item-updates-only")
        .key_by(lambda u: u[0], key_type=Types.STRING())
        .process(ItemStage(settings), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
        .name("item-state")
        .uid("item-state")
    )
    batches = (
        items.map(lambda b: (batch_key(decode_vector_msg(bytes(b))[0]), b), output_type=UPDATE_TYPE)
        .name("vectors-to-batches")
        .uid("vectors-to-batches")
        .key_by(lambda r: r[0], key_type=Types.STRING())
        .process(BatchVectors(settings), output_type=bytes_type)
        .name("feedback-batches")
        .uid("feedback-batches")
    )
    batches.sink_to(bytes_sink(settings, "item-vectors", name="item-vectors")).name("item-vectors-sink").uid(
        "item-vectors-sink"
    )

    shards = settings.index_shards
    to_index = users.filter(lambda u: u[0].startswith(INDEX_KEY_PREFIX)).name("index-records-only").uid(
        "index-records-only"
    )
    vectors_to_index = items.map(
        lambda b: (index_key(shard_of(decode_vector_msg(bytes(b))[0], shards)), b), output_type=UPDATE_TYPE
    ).name("vectors-to-index").uid("vectors-to-index")
    index = (
        to_index.union(vectors_to_index)
        .key_by(lambda r: r[0], key_type=Types.STRING())
        .process(IndexStage(settings), output_type=bytes_type)
        .name("index-shard")
        .uid("index-shard")
    )
    index.sink_to(bytes_sink(settings, "index-events", name="index-events")).name("index-events-sink").uid(
        "index-events-sink"
    )
    gathered = (
        index.get_side_output(PARTIALS)
        .key_by(lambda b: partial_qid(bytes(b)), key_type=Types.STRING())
        .process(Gather(settings), output_type=OUT_TYPE)
        .name("gather")
        .uid("gather")
    )
    gathered.filter(lambda r: r[0] == ANSWER).name("answers-only").uid("answers-only").map(
        lambda r: r[1], output_type=bytes_type
    ).name("answer-bytes").uid("answer-bytes").sink_to(
        bytes_sink(settings, "recommendations", name="recommendations",
                   exactly_once=settings.recommendations_delivery == "exactly_once")
    ).name("recommendations-sink").uid("recommendations-sink")
    gathered.filter(lambda r: r[0] == EVAL).name("evals-only").uid("evals-only").map(
        lambda r: r[1], output_type=bytes_type
    ).name("eval-bytes").uid("eval-bytes").sink_to(bytes_sink(settings, "evaluations", name="evaluations")).name(
        "evaluations-sink"
    ).uid("evaluations-sink")


def main() -> None:
    """Entry point for `flink run -py pipeline/jobs/liverec_job.py`."""
    from pipeline.flink_env import stream_env
    from pipeline.settings import load_settings

    settings = load_settings()
    env = stream_env(settings)
    build(env, settings)
    env.execute(settings.job_name)


if __name__ == "__main__":
    main()

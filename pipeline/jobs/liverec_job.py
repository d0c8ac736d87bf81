"""The liverec job graph: micro-batched stages, one record per batch between Python operators.

    events + rec-requests (Kafka, one table source: raw bytes + topic/partition/offset)
      → batch window (SQL, Java)  one row per batch_ms: the window's values/topics/partitions/offsets
      → events router    [uid events-router]   validate, split by user shard, watermark per partition;
                                               bad input → dead-letter topic (with reason)
      → key by user shard ⋈ broadcast(item-vectors)
      → user stage       [uid user-shards]      sessions, interests, user vectors (batched BPR), a local
                                               item replica; Cassandra profiles; queries (requests,
                                               online evaluation) and interaction shares
            main: coalesced item gradients, one GradBatch per item shard per batch
            side SESSIONS → sessions topic; side INDEX → index shards
      → key by item shard
      → item stage       [uid item-shards]      item vectors; Cassandra item_vectors;
                                               one VectorBatch per shard per item_flush_ms
      → item-vectors topic → (read back by this job) → broadcast to the user stage
      index records ∪ item vectors → key by index shard
      → index stage      [uid index-shard]     HNSW + popularity + co-occurrence per shard
            side output: partial answers → key by query id
      → gather           [uid gather]          one answer per request / outcome per evaluated event
      → recommendations topic, evaluations topic

Each wiring function below adds one stage and returns its output streams; `build` connects them.
Settings reach the operators as plain parameter objects (`operators/` never imports `pipeline/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Settings

# Stable uids of the DataStream part (tests/golden/job_uids.json holds the whole graph's uids;
# PyFlink fuses consecutive Python functions, so a fused function's own uid does not appear: the fused
# operator carries the first one's). The Table-API source and window get generated uids
# (table.exec.uid.generation=ALWAYS, pipeline/flink_env.py).
UIDS = (
    "batch-rows", "events-router", "dead-letter-sink", "item-vectors-source", "user-shards", "sessions-sink",
    "item-shards", "item-rows", "item-vectors-only", "item-vectors-sink", "vectors-to-index", "cassandra-rows-sink",
    "index-shard", "index-events-sink", "gather", "answers-only", "recommendations-sink", "evals-only",
    "evaluations-sink", "drift-monitor", "alerts-sink",
)


def router_params(s: Settings, events_partitions: tuple[int, ...] = ()) -> Any:
    """The events router's parameters from the settings."""
    from operators.events.router import RouterParams

    return RouterParams(
        user_shards=s.user_shards, out_of_orderness_ms=s.out_of_orderness_ms, idleness_ms=s.source_idleness_ms,
        max_bytes=s.max_event_bytes, max_skew_ms=s.max_clock_skew_ms, min_ts_ms=s.min_event_ts_ms,
        events_topic=s.topic("events"), requests_topic=s.topic("rec-requests"),
        events_partitions=events_partitions, answered=answered_requests(s),
    )


def answered_requests(s: Settings) -> frozenset[str]:
    """The ids in `answered_requests_file` (none when unset)."""
    if not s.answered_requests_file:
        return frozenset()
    path = Path(s.answered_requests_file)
    if not path.is_file():
        msg = (f"LIVEREC_ANSWERED_REQUESTS_FILE={path} does not exist; it is written by `liverec job --fresh`: "
               "unset it, or start through the CLI")
        raise ConfigError(msg)
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())


def bpr_params(s: Settings) -> Any:
    """The learner's parameters (user and item stages share them)."""
    from operators.learner.bpr import BPRParams

    return BPRParams(dim=s.embedding_dim, negatives=s.negatives)


def user_params(s: Settings) -> Any:
    """The user stage's parameters from the settings."""
    from operators.profile.shard import UserParams

    return UserParams(
        gap_ms=s.session_gap_ms, bpr=bpr_params(s), seed=s.model_seed, seen_max=s.seen_items_max,
        eval_percent=s.online_eval_percent, eval_k=s.eval_k, index_shards=s.index_shards,
        item_shards=s.item_shards, session_weight=s.session_weight, personalize_after=s.personalize_after_events,
        negative_pool=s.negative_pool,
    )


def shard_params(s: Settings) -> Any:
    """The index shards' tuning (same learner settings as the user and item stages)."""
    from operators.index.logic import ShardParams

    return ShardParams(bpr=bpr_params(s), candidates=s.index_candidates, exact_below=s.index_exact_below,
                       seed=s.model_seed)


def _batches(env: Any, s: Settings, *, group: str, bounded: bool, start_from_ms: int | None) -> Any:
    """Kafka events + requests as one row per batch window (SQL, in Java)."""
    from pyflink.table import StreamTableEnvironment

    from pipeline.sources_sinks import batch_query, events_table_ddl

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(events_table_ddl(s, group_id=group, bounded=bounded, start_from_ms=start_from_ms))
    return t_env.to_data_stream(t_env.sql_query(batch_query(s)))


def _router(batches: Any, s: Settings) -> Any:
    from pyflink.common import Types

    from operators.events.flink import DEAD_LETTERS, ROUTER_KEY, SHARD_BATCH_TYPE, EventsRouter
    from pipeline.kafka_io import partitions_of
    from pipeline.sources_sinks import bytes_sink

    # The window's Row(ARRAY<BYTES>, ...) type cannot pass through PyFlink's key_by (its type conversion
    # fails on arrays), so one Python call per window first turns it into a tuple of lists (pickled).
    windows = batches.map(lambda r: (list(r[0]), list(r[1]), list(r[2]), list(r[3])),
                          output_type=Types.PICKLED_BYTE_ARRAY()).name("batch-rows").uid("batch-rows")
    routed = (
        windows.key_by(lambda _w: ROUTER_KEY, key_type=Types.STRING())
        .process(EventsRouter(router_params(s, partitions_of(s, s.topic("events"))), s.router_tick_ms),
                 output_type=SHARD_BATCH_TYPE)
        .name("events-router").uid("events-router")
    )
    routed.get_side_output(DEAD_LETTERS).sink_to(bytes_sink(s, "dead-letter", name="dead-letter")).name(
        "dead-letter-sink").uid("dead-letter-sink")
    return routed


def _users(env: Any, routed: Any, s: Settings, *, group: str) -> Any:
    from pyflink.common import Types, WatermarkStrategy

    from operators.profile.flink import ITEM_VECTORS_STATE, KEYED_BYTES_TYPE, SESSIONS, UserStage
    from pipeline.cassandra_reader import ReaderFactory
    from pipeline.sources_sinks import bytes_sink, bytes_source

    vectors = env.from_source(
        bytes_source(s, "item-vectors", group_id=f"{group}-feedback"), WatermarkStrategy.no_watermarks(),
        "item-vectors-source",
    ).uid("item-vectors-source")
    users = (
        routed.key_by(lambda r: r[0], key_type=Types.STRING())
        .connect(vectors.broadcast(ITEM_VECTORS_STATE))
        .process(UserStage(user_params(s), ReaderFactory(s), s.profile_flush_ms, s.rehydrate),
                 output_type=KEYED_BYTES_TYPE)
        .name("user-shards").uid("user-shards")
    )
    users.get_side_output(SESSIONS).sink_to(bytes_sink(s, "sessions", name="sessions")).name(
        "sessions-sink").uid("sessions-sink")
    return users


def _items(users: Any, s: Settings) -> tuple[Any, Any]:
    """The item stage; returns its vectors split by index shard and its Cassandra rows."""
    from pyflink.common import Types

    from operators.index.logic import split_vector_batch
    from operators.items.flink import ItemStage
    from operators.profile.flink import KEYED_BYTES_TYPE, index_key
    from pipeline.cassandra_reader import ReaderFactory
    from pipeline.sources_sinks import bytes_sink
    from state_schemas.codec import TAGS

    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    items = (
        users.key_by(lambda r: r[0], key_type=Types.STRING())
        .process(ItemStage(bpr_params(s), s.model_seed, ReaderFactory(s), flush_ms=s.item_flush_ms,
                           store_ms=s.item_store_ms, rehydrate=s.rehydrate), output_type=bytes_type)
        .name("item-shards").uid("item-shards")
    )
    # One output, two kinds of records told apart by their tag byte (a timer cannot use side outputs):
    # VectorBatch (feedback and index) and RowBatch (Cassandra).
    rows_tag = TAGS["cassandra_rows"]
    rows = items.filter(lambda b: b[0] == rows_tag).name("item-rows").uid("item-rows")
    vectors = items.filter(lambda b: b[0] != rows_tag).name("item-vectors-only").uid("item-vectors-only")
    vectors.sink_to(bytes_sink(s, "item-vectors", name="item-vectors")).name("item-vectors-sink").uid(
        "item-vectors-sink")
    shards = s.index_shards
    to_index = vectors.flat_map(
        lambda b: [(index_key(n), part) for n, part in split_vector_batch(bytes(b), shards)],
        output_type=KEYED_BYTES_TYPE,
    ).name("vectors-to-index").uid("vectors-to-index")
    return to_index, rows


def _cassandra(users: Any, item_rows: Any, s: Settings) -> None:
    """Profile, session and item rows into Cassandra through the Java sink (acknowledged before checkpoints)."""
    from operators.profile.flink import ROWS
    from pipeline.sources_sinks import cassandra_rows_sink

    users.get_side_output(ROWS).union(item_rows).sink_to(cassandra_rows_sink(s, "cassandra-rows")).name(
        "cassandra-rows-sink").uid("cassandra-rows-sink")


def _index_and_gather(users: Any, vectors_to_index: Any, s: Settings) -> None:
    from pyflink.common import Types

    from operators.index.flink import PARTIALS, IndexStage
    from operators.profile.flink import INDEX
    from operators.serving.flink import ANSWER, EVAL, OUT_TYPE, Gather
    from operators.serving.logic import model_version
    from pipeline.sources_sinks import bytes_sink
    from state_schemas.messages import partial_qid

    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    index = (
        users.get_side_output(INDEX).union(vectors_to_index)
        .key_by(lambda r: r[0], key_type=Types.STRING())
        .process(IndexStage(shard_params(s), s.index_shards, s.index_refresh_ms), output_type=bytes_type)
        .name("index-shard").uid("index-shard")
    )
    index.sink_to(bytes_sink(s, "index-events", name="index-events")).name("index-events-sink").uid(
        "index-events-sink")
    gathered = (
        index.get_side_output(PARTIALS)
        .key_by(lambda b: partial_qid(bytes(b)), key_type=Types.STRING())
        .process(Gather(shards=s.index_shards, timeout_ms=s.gather_timeout_ms,
                        model=model_version(s.embedding_dim, s.negatives, s.model_seed)), output_type=OUT_TYPE)
        .name("gather").uid("gather")
    )
    gathered.filter(lambda r: r[0] == ANSWER).name("answers-only").uid("answers-only").map(
        lambda r: r[1], output_type=bytes_type
    ).name("answer-bytes").uid("answer-bytes").sink_to(
        bytes_sink(s, "recommendations", name="recommendations",
                   exactly_once=s.recommendations_delivery == "exactly_once")
    ).name("recommendations-sink").uid("recommendations-sink")
    gathered.filter(lambda r: r[0] == EVAL).name("evals-only").uid("evals-only").map(
        lambda r: r[1], output_type=bytes_type
    ).name("eval-bytes").uid("eval-bytes").sink_to(bytes_sink(s, "evaluations", name="evaluations")).name(
        "evaluations-sink").uid("evaluations-sink")


def _drift(users: Any, s: Settings) -> Any:
    """Drift monitor: FeatureBatch records (from the user shards) keyed by one constant → `alerts` topic."""
    from pyflink.common import Types

    from operators.drift.flink import DRIFT_KEY, DriftMonitor
    from operators.profile.flink import DRIFT
    from pipeline.drift_params import drift_params
    from pipeline.sources_sinks import bytes_sink

    alerts = (
        users.get_side_output(DRIFT).key_by(lambda _b: DRIFT_KEY, key_type=Types.STRING())
        .process(DriftMonitor(drift_params(s)), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
        .name("drift-monitor").uid("drift-monitor")
    )
    alerts.sink_to(bytes_sink(s, "alerts", name="alerts")).name("alerts-sink").uid("alerts-sink")
    return alerts


def build(env: Any, settings: Settings, *, bounded: bool = False, start_from_ms: int | None = None) -> None:
    """Add the whole job to `env` (a StreamExecutionEnvironment from pipeline.flink_env)."""
    group = f"{settings.job_name}-{settings.topic_prefix}job"
    batches = _batches(env, settings, group=group, bounded=bounded, start_from_ms=start_from_ms)
    routed = _router(batches, settings)
    users = _users(env, routed, settings, group=group)
    vectors_to_index, item_rows = _items(users, settings)
    _cassandra(users, item_rows, settings)
    _index_and_gather(users, vectors_to_index, settings)
    _drift(users, settings)


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

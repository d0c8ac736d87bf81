"""One settings object for the whole job, read from `LIVEREC_*` environment variables.

Why one object: the same values drive the local stack, the Flink job and the tests, and pointing
the job at an existing cluster must be a matter of settings, never code edits (docs/configuration.md).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of liverec; env var = `LIVEREC_` + field name in upper case."""

    model_config = SettingsConfigDict(env_prefix="LIVEREC_", extra="ignore")

    # Where jars, the venv, server data and logs live (ignored by git).
    cache_dir: Path = REPO_ROOT / ".cache"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="Prefix for every topic name, e.g. to isolate tests.")
    kafka_transaction_timeout_ms: int = 900_000  # must be <= broker transaction.max.timeout.ms

    # Cassandra
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "liverec"
    cassandra_replication_factor: int = 1
    cassandra_write_timeout_s: float = 600.0  # retry (back-pressure) this long before failing the job

    # Flink
    parallelism: int = 1
    max_parallelism: int = 128
    checkpoint_interval_ms: int = 2_000
    checkpoint_timeout_ms: int = 60_000
    min_pause_between_checkpoints_ms: int = 500
    # A Cassandra outage blocks the stateful operators (writes retry), so checkpoints time out meanwhile;
    # tolerate that many in a row before failing the job.
    tolerable_failed_checkpoints: int = 10
    # Barriers that wait behind in-flight batches longer than this switch that checkpoint to unaligned
    # (in-flight buffers are stored with it): under load the commit that makes answers visible stops waiting
    # for the backlog. -1: always aligned. Savepoints are always aligned.
    aligned_checkpoint_timeout_ms: int = Field(default=-1, ge=-1)
    checkpoint_dir: str | None = None  # file:// URI; default under cache_dir
    python_execution_mode: str = "thread"
    job_name: str = "liverec"
    restore_path: str | None = None  # a retained checkpoint or savepoint to start from
    # Request ids (one per line) the router skips: written by `liverec job --fresh` / `cluster submit --fresh`
    # for the requests a previous run already answered after the committed offsets (pipeline/recovery.py)
    answered_requests_file: str | None = None
    # None: whatever the cluster's config says (flink-conf/: RocksDB, incremental); a MiniCluster uses hashmap
    state_backend: str | None = Field(default=None, pattern="^(hashmap|rocksdb)$")
    incremental_checkpoints: bool | None = None  # None: the cluster's config decides
    python_executable: str | None = None  # default: the interpreter running liverec
    restart_attempts: int = 10
    restart_delay_ms: int = 1_000

    # The personalization job
    session_gap_ms: int = 30 * 60 * 1000  # event-time inactivity that closes a session
    out_of_orderness_ms: int = 5_000  # watermark bound on event-time disorder
    source_idleness_ms: int = 30_000  # a partition without events this long stops holding the watermark back
    # Bytes the Kafka reader fetches per events partition at a time. Small, so the reader alternates
    # between partitions within well under source_idleness_ms at the job's event rate (docs/configuration.md).
    source_fetch_bytes: int = Field(default=16_384, ge=1_024)
    profile_flush_ms: int = 5_000  # at most one profile write per user per interval (and on session close)
    # A user or item without keyed state starts from its Cassandra row when the row predates the shard's empty
    # start (a `--fresh` start or lost state is not amnesia; docs/operations.md, Restart choices)
    rehydrate: bool = True
    item_flush_ms: int = 500  # changed item vectors leave the item stage (feedback + index) this often
    item_store_ms: int = 10_000  # at most one Cassandra item_vectors write per item per interval
    max_event_bytes: int = 16_384  # larger records go to the dead-letter topic
    max_clock_skew_ms: int = 86_400_000  # events further in the future than this are dead-lettered
    min_event_ts_ms: int = 946_684_800_000  # events older than this (2000-01-01) are dead-lettered
    # Micro-batching (docs/architecture.md#batches): the source's records are gathered into one record per
    # batch_ms of processing time in Java, then validated and split by user shard in one Python call.
    batch_ms: int = Field(default=100, ge=1)
    user_shards: int = Field(default=4, ge=1, description="Keys of the user stage (the unit of rescaling).")
    item_shards: int = Field(default=2, ge=1, description="Keys of the item stage.")
    router_tick_ms: int = Field(default=500, ge=10)  # the router re-evaluates idle partitions this often
    cassandra_max_in_flight: int = Field(default=32, ge=1)  # concurrent write requests of one operator call
    # upserts per unlogged batch request (rows of ~1 KB: far below Cassandra's 50 KB batch fail threshold)
    cassandra_batch_rows: int = Field(default=16, ge=1, le=40)
    embedding_dim: int = 64
    negatives: int = 8
    model_seed: int = 7

    # Serving and online evaluation (docs/configuration.md#serving)
    index_shards: int = Field(default=1, ge=1, description="Index shards; each request is scattered to all.")
    # HNSW / co-occurrence / popularity candidates per shard before the blend
    index_candidates: int = Field(default=200, ge=1)
    # changed item vectors are pushed into a shard's HNSW graph at most this often (candidates from an older
    # graph are still scored with the current vectors)
    index_refresh_ms: int = Field(default=1_000, ge=0)
    # rank exactly (no HNSW) when at most this many items are eligible for a query in a shard
    index_exact_below: int = Field(default=0, ge=0)
    # answer with the shards that replied after this long (index_shards > 1)
    gather_timeout_ms: int = Field(default=2_000, ge=0)
    session_weight: float = Field(default=0.0, ge=0.0, le=1.0)  # live-session share of a personalized query
    personalize_after_events: int = Field(default=3, ge=0)  # fewer events: served from the session rung
    seen_items_max: int = Field(default=1_000, ge=1)  # items remembered per user ("exclude seen", evaluation)
    online_eval_percent: float = Field(
        default=1.0, ge=0, le=100,
        description="Percent of interactions scored test-then-learn (by event id); 100 for quality runs.")
    eval_k: int = 10  # hit-rate@k of the online evaluation
    recommendations_delivery: str = Field(
        default="exactly_once", pattern="^(exactly_once|at_least_once)$",
        description="at_least_once: answers visible without waiting for a checkpoint; dedupe by request_id.",
    )

    # Local servers (used by `liverec infra` only)
    kafka_heap: str = "768m"
    cassandra_heap: str = "1G"
    java_home: Path | None = None  # JDK 17 for Cassandra; default: the `java` on PATH

    @property
    def cassandra_contact_points(self) -> list[str]:
        """Contact points as a list, from the comma-separated setting."""
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic ('events', 'recommendations', …)."""
        return f"{self.topic_prefix}{name}"

    @property
    def checkpoint_uri(self) -> str:
        """Checkpoint storage URI; local file system under the cache by default."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        return (self.cache_dir / "checkpoints").resolve().as_uri()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, tests) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]

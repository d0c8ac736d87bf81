"""One settings object for the whole job, read from `LIVEREC_*` environment variables.

Why one object: the same values drive the local stack, the Flink job and the tests, and pointing
the job at an existing cluster must be a matter of settings, never code edits (docs/configuration.md).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

# (secret field, its file field): a secret comes from LIVEREC_<FIELD> or from the file LIVEREC_<FIELD>_FILE names
SECRET_FILES = (("cassandra_password", "cassandra_password_file"), ("kafka_sasl_password", "kafka_sasl_password_file"))


class Settings(BaseSettings):
    """Every knob of liverec; env var = `LIVEREC_` + field name in upper case."""

    model_config = SettingsConfigDict(env_prefix="LIVEREC_", extra="ignore")

    # Where jars, the venv, server data and logs live (ignored by git).
    cache_dir: Path = REPO_ROOT / ".cache"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", description="Prefix for every topic name, e.g. to isolate tests.")
    kafka_transaction_timeout_ms: int = 900_000  # must be <= broker transaction.max.timeout.ms
    # Credentials (docs/operations.md#credentials). Every client (kafka-python, the Flink connector) uses them.
    kafka_security_protocol: str = Field(default="PLAINTEXT", pattern="^(PLAINTEXT|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str = Field(default="SCRAM-SHA-512", pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None  # or kafka_sasl_password_file; never printed (SecretStr)
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None  # SASL_SSL: PEM file of the CA that signed the brokers' certificates

    # Cassandra
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "liverec"
    cassandra_replication_factor: int = 1
    # the datacenter the Java sink writes to (its driver routes only to that one); a single-node or
    # default-configured cluster is "datacenter1"
    cassandra_local_dc: str = "datacenter1"
    cassandra_write_timeout_s: float = 600.0  # retry (back-pressure) this long before failing the job
    # PasswordAuthenticator login; none: no authentication
    cassandra_username: str | None = None
    cassandra_password: SecretStr | None = None  # or cassandra_password_file; never printed (SecretStr)
    cassandra_password_file: Path | None = None

    # Flink
    parallelism: int = 1
    max_parallelism: int = 128
    checkpoint_interval_ms: int = 2_000
    checkpoint_timeout_ms: int = 60_000
    min_pause_between_checkpoints_ms: int = 500
    # A Cassandra outage blocks the Cassandra sink's flush before each barrier (writes retry), so checkpoints
    # time out meanwhile; tolerate that many in a row before failing the job.
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
    # Observability (docs/operations.md#metrics): the Prometheus reporter's port or range (each JVM takes the
    # first free port of the range: a MiniCluster one, a standalone cluster one per JobManager and TaskManager);
    # empty: no reporter. The REST port of the MiniCluster `liverec job` starts, which `liverec status` asks.
    prometheus_port: str = Field(default="9249-9259", pattern=r"^(\d{1,5}(-\d{1,5})?)?$")
    rest_port: int = Field(default=8081, ge=1, le=65535)
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
    batch_ms: int = Field(default=200, ge=1)
    user_shards: int = Field(default=4, ge=1, description="Keys of the user stage (the unit of rescaling).")
    item_shards: int = Field(default=2, ge=1, description="Keys of the item stage.")
    router_tick_ms: int = Field(default=500, ge=10)  # the router re-evaluates idle partitions this often
    # write requests in flight per Cassandra sink subtask (its write blocks at the bound); also the concurrency
    # of the rehydration reads
    cassandra_max_in_flight: int = Field(default=32, ge=1)
    # upserts per unlogged batch request (rows of ~1 KB: far below Cassandra's 50 KB batch fail threshold)
    cassandra_batch_rows: int = Field(default=16, ge=1, le=40)
    embedding_dim: int = 64
    negatives: int = 8
    # >0: each user-stage batch draws its negatives from one random pool of this many items (docs/configuration.md)
    negative_pool: int = Field(default=0, ge=0)
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

    # Drift detection (docs/configuration.md#drift): two-sample KS tests between a reference window and the
    # current window of each feature; a breach writes one alert to the `alerts` topic
    drift_features: str = Field(
        default="event_type,dwell_ms,category,session_events,session_ms,user_norm,served_score",
        description="Comma-separated features to monitor (operators/drift/features.py).")
    drift_reference_samples: int = Field(default=2_000, ge=1)  # samples the reference keeps (uniform beyond)
    drift_reference_ms: int = Field(default=600_000, ge=0)  # event time the reference spans at least
    drift_window_samples: int = Field(default=1_000, ge=1)  # samples the current window keeps
    drift_window_ms: int = Field(default=300_000, ge=0)  # event time a current window spans before its test
    drift_min_samples: int = Field(default=200, ge=1)  # neither window is complete with fewer samples offered
    drift_alpha: float = Field(default=0.001, gt=0, lt=1)  # false-alarm probability per round of tests
    drift_min_statistic: float = Field(default=0.1, ge=0, le=1)  # KS distance below which nothing alerts
    drift_rebaseline: bool = True  # after an alert the reference refills from the new data (else: kept)
    drift_quiet_windows: int = Field(default=2, ge=1)  # without rebaseline: quiet windows that end an episode
    drift_warmup_ms: int = Field(default=1_800_000, ge=0)  # event time after a feature's first sample not used
    # What an alert does (operators/drift/actions.py); applied by the stages that read adjustments
    drift_action: str = Field(default="none", pattern="^(none|popularity_boost|learning_rate)$")
    drift_action_features: str = "category,served_score"  # alerts of these features trigger the action
    drift_action_factor: float = Field(default=2.0, gt=0)  # multiplier of the knob
    drift_action_ms: int = Field(default=900_000, ge=0)  # event time the adjustment lasts

    # Local servers (used by `liverec infra` only)
    kafka_heap: str = "768m"
    cassandra_heap: str = "1G"
    cassandra_storage_port: int = 7000  # inter-node port of the local Cassandra
    cassandra_jmx_port: int = 7199
    # Data, logs and pid files of the local servers; default: the cache dir. A second local stack (other
    # ports, e.g. with authentication on for tests) lives in a directory of its own.
    local_stack_dir: Path | None = None
    java_home: Path | None = None  # JDK 17 for Cassandra; default: the `java` on PATH

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        """Fail at load, naming the variable, when credentials are incomplete or a secret file is unreadable.

        A secret given as a file is read here once, so the value (not the path) travels with the job.
        """
        for secret, file in SECRET_FILES:
            if getattr(self, secret) is not None and getattr(self, file) is not None:
                msg = f"both LIVEREC_{secret.upper()} and LIVEREC_{file.upper()} are set: keep one of them"
                raise ConfigError(msg)
            value = read_secret(self, secret, file)
            if value is not None:
                setattr(self, secret, SecretStr(value))
        if (self.cassandra_username is None) != (self.cassandra_password is None):
            msg = ("Cassandra credentials are incomplete: set both LIVEREC_CASSANDRA_USERNAME and "
                   "LIVEREC_CASSANDRA_PASSWORD (or LIVEREC_CASSANDRA_PASSWORD_FILE), or neither")
            raise ConfigError(msg)
        if self.kafka_security_protocol.startswith("SASL_") and (
                not self.kafka_sasl_username or self.kafka_sasl_password is None):
            msg = (f"LIVEREC_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs LIVEREC_KAFKA_SASL_USERNAME "
                   "and LIVEREC_KAFKA_SASL_PASSWORD (or LIVEREC_KAFKA_SASL_PASSWORD_FILE)")
            raise ConfigError(msg)
        if self.kafka_ssl_cafile is not None and not Path(self.kafka_ssl_cafile).is_file():
            msg = (f"LIVEREC_KAFKA_SSL_CAFILE={self.kafka_ssl_cafile} is not a file: give the PEM file of the CA "
                   "that signed the brokers' certificates")
            raise ConfigError(msg)
        return self

    @property
    def stack_dir(self) -> Path:
        """Where the local servers keep data, logs and pid files."""
        return self.local_stack_dir or self.cache_dir

    @field_validator("drift_features", "drift_action_features")
    @classmethod
    def _known_features(cls, value: str) -> str:
        from operators.drift.features import FEATURES

        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in FEATURES]
        if unknown or not names:
            msg = (f"unknown drift feature(s) {unknown} in {value!r}: use a comma-separated list of "
                   f"{', '.join(FEATURES)}")
            raise ValueError(msg)
        return ",".join(names)

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


def read_secret(settings: Settings, secret: str, file: str) -> str | None:
    """The value of a secret setting: the variable itself, else the contents of its file (one trailing newline cut).

    Why files: a secret in a file (a Docker or Kubernetes secret, mode 0400) is not in the process environment,
    where `ps e`, crash reports and child processes see it.
    """
    value: SecretStr | str | None = getattr(settings, secret)
    if value is not None:  # a plain str when set by `model_copy(update=...)`, which does not validate
        return value.get_secret_value() if isinstance(value, SecretStr) else value
    path: Path | None = getattr(settings, file)
    if path is None:
        return None
    file_var = f"LIVEREC_{file.upper()}"
    try:
        text = Path(path).read_text()
    except OSError as exc:
        msg = f"{file_var}={path} cannot be read ({exc.strerror}): point it at a readable file that holds the secret"
        raise ConfigError(msg) from exc
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        msg = f"{file_var}={path} is empty: write the secret into it"
        raise ConfigError(msg)
    return text


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as `LIVEREC_*` variables, for a child process that loads its own (`flink run -py`).

    Secrets are passed as their value, except that a secret read from a file is passed as the file's path.
    """
    from_file = {secret for secret, file in SECRET_FILES if getattr(settings, file) is not None}
    out = {}
    for key, value in settings.model_dump().items():
        if value is None or key in from_file:
            continue
        out[f"LIVEREC_{key.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return out


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, tests) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]

"""`liverec state check --savepoint PATH`: will this savepoint (or retained checkpoint) restore into this build?

Checked before a deploy, without starting the job:

- every operator that holds state in the savepoint has an operator with the same id in this build's job
  graph (ids are hashes of the stable uids; a renamed or removed uid would drop its state, or need
  ``--allowNonRestoredState`` to start at all);
- the savepoint's max parallelism equals ``max_parallelism`` (Flink refuses keyed state whose key groups
  were cut for another max parallelism);
- what this build reads of the values inside: each state codec's readable versions (older versions are
  migrated on read, newer ones fail the job with a message that says which build to deploy).

The savepoint's ``_metadata`` is read with Flink's own loader through the PyFlink gateway, so the check
understands exactly the format the cluster will read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import ConfigError
from pipeline.settings import Settings


@dataclass(slots=True)
class SavedOperator:
    """One operator's entry in the savepoint metadata."""

    operator_id: str
    max_parallelism: int
    parallelism: int
    state_bytes: int


@dataclass(slots=True)
class Report:
    """Outcome of a check: problems make it incompatible; notes are for the operator's information."""

    savepoint: str
    checkpoint_id: int
    operators: list[SavedOperator]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        """True when the savepoint restores into this build without dropping or refusing state."""
        return not self.problems


def metadata_path(savepoint: Path | str) -> Path:
    """The `_metadata` file of a savepoint or checkpoint directory (or the file itself).

    Accepts the `file:` URI that `flink stop`/`liverec cluster stop` print, so their output can be
    pasted as it is.
    """
    text = str(savepoint)
    uri = urlparse(text)
    if uri.scheme not in ("", "file"):
        msg = (f"state check: {text} is on {uri.scheme}:, but the check reads local files only; copy the "
               "savepoint directory to this machine and pass its path.")
        raise ConfigError(msg)
    p = Path(uri.path if uri.scheme else text).expanduser()
    meta = p / "_metadata" if p.is_dir() else p
    if not meta.is_file():
        msg = (f"state check: no _metadata at {meta}; pass the savepoint directory printed by "
               "`liverec cluster savepoint`/`stop`, or a retained checkpoint's chk-N directory.")
        raise ConfigError(msg)
    return meta


def current_operator_ids(settings: Settings) -> dict[str, str]:
    """Operator id (hex) → job vertex name, for this build's job graph (built first in this JVM)."""
    from pipeline.flink_env import stream_env
    from pipeline.jobs import liverec_job

    env = stream_env(settings)
    liverec_job.build(env, settings)
    from pyflink.java_gateway import get_gateway

    graph = env._generate_stream_graph(clear_transformations=False)  # noqa: SLF001 - no public accessor
    jvm = get_gateway().jvm
    # Flink derives an operator's id from its uid with murmur3_128 (StreamGraphHasherV2): name ids by uid.
    hashing = jvm.org.apache.flink.shaded.guava33.com.google.common.hash.Hashing
    utf8 = jvm.java.nio.charset.StandardCharsets.UTF_8
    by_hash = {}
    nodes = graph.getStreamNodes().iterator()
    while nodes.hasNext():
        uid = nodes.next().getTransformationUID()
        if uid:
            by_hash[bytes(hashing.murmur3_128(0).newHasher().putString(uid, utf8).hash().asBytes()).hex()] = uid
    out: dict[str, str] = {}
    for vertex in graph.getJobGraph().getVerticesAsArray():
        for pair in vertex.getOperatorIDs():
            oid = pair.getGeneratedOperatorID().toHexString()
            out[oid] = by_hash.get(oid, f"(no uid, in {vertex.getName()})")
    return out


def load(meta: Path) -> tuple[int, list[SavedOperator]]:
    """Checkpoint id and operator entries of a `_metadata` file (Flink's own loader)."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    stream = jvm.java.io.DataInputStream(jvm.java.io.FileInputStream(str(meta)))
    try:
        md = jvm.org.apache.flink.runtime.checkpoint.Checkpoints.loadCheckpointMetadata(
            stream, jvm.java.lang.Thread.currentThread().getContextClassLoader(), str(meta.parent)
        )
    finally:
        stream.close()
    ops = [
        SavedOperator(s.getOperatorID().toHexString(), s.getMaxParallelism(), s.getParallelism(), s.getStateSize())
        for s in md.getOperatorStates()
    ]
    return md.getCheckpointId(), ops


# uids of earlier releases whose state this build cannot take over, and what to do instead.
RETIRED_UIDS: dict[str, str] = {
    "user-state": (
        "the per-user state of release 0.1 (one key per user); this build keys the user stage by user shard "
        "(uid user-shards) and PyFlink has no State Processor API to re-key it. Start this build without "
        "the savepoint after truncating user_profiles and sessions (writes use USING TIMESTAMP seq, and seq "
        "restarts at 1: old rows would win), or keep running the 0.1 build (docs/state.md)"
    ),
    "item-state": (
        "the per-item vectors of release 0.1 (one key per item); this build keys items by item shard (uid "
        "item-shards). Without it items restart from their initial vectors with seq 1, and the restored "
        "index would ignore them until their seq passes the old one: start this build without the savepoint"
    ),
    "feedback-batches": "pending feedback vectors of release 0.1 (at most 200 ms of them): safe to drop",
}


def retired_uid_hashes() -> dict[str, str]:
    """Operator id (hex, as Flink derives it from a uid) → retired uid."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    hashing = jvm.org.apache.flink.shaded.guava33.com.google.common.hash.Hashing
    utf8 = jvm.java.nio.charset.StandardCharsets.UTF_8
    return {bytes(hashing.murmur3_128(0).newHasher().putString(uid, utf8).hash().asBytes()).hex(): uid
            for uid in RETIRED_UIDS}


def check(settings: Settings, savepoint: Path) -> Report:
    """Compare a savepoint with this build and these settings."""
    from state_schemas.registry import CODECS

    meta = metadata_path(savepoint)
    current = current_operator_ids(settings)  # first: generated Table-API uids depend on build order
    checkpoint_id, ops = load(meta)
    report = Report(str(meta.parent), checkpoint_id, ops)
    # A non-parallel operator (the SQL batch window is a global aggregation) always has max parallelism 1.
    cut = [op for op in ops if op.max_parallelism not in (settings.max_parallelism, 1)]
    wrong_mp = sorted({op.max_parallelism for op in cut})
    if wrong_mp:
        names = sorted(current.get(op.operator_id, op.operator_id) for op in cut)
        report.problems.append(
            f"saved with max parallelism {', '.join(map(str, wrong_mp))}, this job uses {settings.max_parallelism} "
            f"(LIVEREC_MAX_PARALLELISM / pipeline.max-parallelism) for {len(names)} operators ({', '.join(names[:4])}"
            f"{', ...' if len(names) > 4 else ''}): Flink refuses to restore keyed state across a change of max "
            "parallelism. Deploy with the savepoint's value; changing it means starting from empty state."
        )
    retired = retired_uid_hashes()
    for op in ops:
        if op.operator_id in retired and op.state_bytes > 0:
            uid = retired[op.operator_id]
            report.problems.append(
                f"operator {uid!r} ({op.operator_id}) holds {op.state_bytes} bytes of state: {RETIRED_UIDS[uid]}."
            )
        elif op.operator_id not in current and op.state_bytes > 0:
            report.problems.append(
                f"operator {op.operator_id} holds {op.state_bytes} bytes of state but this build has no operator with "
                "that id: a uid was renamed or removed (tests/golden/job_uids.json). Restore the uid, or start with "
                "--allowNonRestoredState to drop that state on purpose."
            )
    saved = {op.operator_id for op in ops}
    fresh = sorted({name for oid, name in current.items() if oid not in saved})
    if fresh:
        report.notes.append(f"operators new in this build start with empty state: {', '.join(fresh)}")
    report.notes.append(
        "state values: " + "; ".join(
            f"{name} reads v{', v'.join(str(v) for v in sorted(c.decoders))} (writes v{c.version})"
            for name, c in sorted(CODECS.items())
        ) + ". Older versions are migrated on read; a newer one stops the job with what to deploy."
    )
    return report

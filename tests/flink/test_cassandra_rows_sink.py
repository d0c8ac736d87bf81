"""The Java Cassandra rows sink (pipeline/jvm) on the real local Cassandra: directly and in a MiniCluster.

Each test writes into a scratch keyspace of its own (the liverec tables, created from state_schemas/cql
and dropped afterwards), so tests never see each other's rows.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.cassandra_io import apply_schema, connect
from pipeline.infra import jars
from pipeline.settings import Settings
from state_schemas.cassandra_rows import ITEM_VECTORS, SESSIONS, TABLES, USER_PROFILES, blob, encode_rows

pytestmark = [pytest.mark.integration, pytest.mark.flink]

BASE_MS = 1_764_000_000_000


@pytest.fixture
def scratch(stack: Settings) -> Iterator[Settings]:
    """Settings whose keyspace is a fresh copy of the liverec schema, dropped after the test."""
    ks = f"sink_{uuid.uuid4().hex[:12]}"
    s = stack.model_copy(update={"cassandra_keyspace": ks, "checkpoint_interval_ms": 200, "restart_attempts": 0,
                                 "cassandra_write_timeout_s": 30.0})
    apply_schema(s)
    yield s
    cluster, session = connect(s)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=60)
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def jvm(stack: Settings) -> Any:
    """The PyFlink gateway's JVM with the sink jar on its class path (no job needed).

    Through `stream_env`, like every job: it starts the gateway JVM with the environment thread mode
    needs (a gateway started without it fails every later job of the session: no module 'pemja')
    and puts `pipeline.jars`, the sink jar included, on the gateway's class path.
    """
    from pyflink.java_gateway import get_gateway

    from pipeline.flink_env import stream_env

    stream_env(stack)
    assert jars.is_sink_built(stack.cache_dir)
    return get_gateway().jvm


def _select(s: Settings, cql: str, *args: object) -> list[Any]:
    cluster, session = connect(s, keyspace=s.cassandra_keyspace)
    try:
        return list(session.execute(cql, args))
    finally:
        cluster.shutdown()


def _ms(value: datetime) -> int:
    return round(value.replace(tzinfo=UTC).timestamp() * 1000)


def _profile(user: str, seq: int, **extra: object) -> tuple[int, int, str]:
    row = {
        "user_id": user, "schema_version": 1, "seq": seq, "event_count": seq * 10,
        "counters": {"click": seq, "view": 2 * seq}, "interests": {"books": 1.5, "garden": 0.25 * seq},
        "engagement": 2.5, "recent_items": [f"i{seq}", "é-item"], "vector": blob(bytes([0, 1, 254, seq % 256])),
        "last_session_id": f"s{seq}", "last_session_end": BASE_MS + seq, "sessions_closed": seq,
        "updated_at": BASE_MS + 1000 + seq, "written_at": BASE_MS + 2000, "recent_event_fps": blob(bytes(16)),
        **extra,
    }
    return USER_PROFILES, seq, json.dumps(row, ensure_ascii=False)


def _session(user: str, n: int) -> tuple[int, int, str]:
    row = {"user_id": user, "session_id": f"s{n}", "start_ts": BASE_MS + n, "end_ts": BASE_MS + n + 60_000,
           "events_by_type": {"click": n, "purchase": 1}, "categories": {"books": 2}, "dwell_ms": 1234 + n,
           "converted": n % 2 == 0, "event_count": n + 1}
    return SESSIONS, n, json.dumps(row)


def _item(item: str, seq: int) -> tuple[int, int, str]:
    row = {"item_id": item, "schema_version": 1, "seq": seq, "vector": blob(b"\x3f\x80\x00\x00"), "bias": -0.5,
           "updates": seq, "updated_at": BASE_MS + seq, "written_at": BASE_MS}
    return ITEM_VECTORS, seq, json.dumps(row)


def _writer(jvm: Any, s: Settings, name: str = "test") -> Any:
    from pipeline.sources_sinks import cassandra_rows_sink

    sink = cassandra_rows_sink(s, name).get_java_function()
    metrics = jvm.org.apache.flink.metrics.groups.UnregisteredMetricsGroup()
    return jvm.io.liverec.cassandra.CassandraRowsWriter(sink, metrics)


# --- the record contract, Python encoder against the Java decoder ------------------------------------


def test_java_decoder_reads_what_python_encodes(jvm: Any) -> None:
    rows = [(USER_PROFILES, -(2**63), '{"user_id": "ü→𝄞"}'), (SESSIONS, 2**63 - 1, ""), (ITEM_VECTORS, 0, "{}" * 500)]
    got = jvm.io.liverec.cassandra.RowBatch.decode(encode_rows(rows), len(TABLES))
    assert [(r.table(), r.writeTs(), r.json()) for r in got] == rows
    assert list(jvm.io.liverec.cassandra.RowBatch.decode(encode_rows([]), len(TABLES))) == []


@pytest.mark.parametrize(
    ("blob_", "why"),
    [
        (encode_rows([(0, 1, "{}")])[:10], "ends inside row 0"),
        (encode_rows([(0, 1, "{}")])[:-1], "row 0 of 2 bytes overruns"),
        (encode_rows([(0, 1, "{}")]) + b"x", "trailing"),
        (b"K" + encode_rows([(0, 1, "{}")])[1:], "expected tag 'W'"),
        (encode_rows([(0, 1, "{}")])[:1] + b"\x02\x00" + encode_rows([(0, 1, "{}")])[3:], "version 2"),
        (encode_rows([(0, 1, "ab")]).replace(b"ab", b"\xff\xfe"), "not UTF-8"),
        (b"W\x01", "shorter than the 7-byte header"),
    ],
)
def test_java_decoder_refuses_malformed_records_naming_the_format(jvm: Any, blob_: bytes, why: str) -> None:
    from py4j.protocol import Py4JJavaError

    with pytest.raises(Py4JJavaError) as err:
        jvm.io.liverec.cassandra.RowBatch.decode(blob_, len(TABLES))
    msg = str(err.value.java_exception.getMessage())
    assert "malformed RowBatch ('cassandra_rows' v1, tag 'W') record" in msg
    assert why in msg
    with pytest.raises(Py4JJavaError, match="names table 2, this sink knows 0..1"):
        jvm.io.liverec.cassandra.RowBatch.decode(encode_rows([(2, 1, "{}")]), 2)


# --- the writer on its own: flush, timestamps, DEFAULT UNSET, refused rows ---------------------------


def test_flush_returns_only_when_every_row_is_acknowledged(jvm: Any, scratch: Settings) -> None:
    writer = _writer(jvm, scratch)
    try:
        records = [encode_rows([_profile(f"u{r}-{i}", 1 + i) for i in range(50)]) for r in range(20)]
        for rec in records:
            writer.write(rec, None)
        writer.flush(False)
        # no polling: flush has returned, so every row must be readable now
        assert writer.inFlight() == 0
        assert writer.rowsWritten() == 1000
        assert writer.writeErrors() == 0 and writer.writeRetries() == 0
        (count,) = _select(scratch, "SELECT count(*) FROM user_profiles")[0]
        assert count == 1000
    finally:
        writer.close()


def test_a_lower_write_ts_never_overrides_and_left_out_columns_are_kept(jvm: Any, scratch: Settings) -> None:
    writer = _writer(jvm, scratch)
    try:
        writer.write(encode_rows([_profile("u1", 7)]), None)
        writer.flush(False)
        stale = json.dumps({"user_id": "u1", "event_count": 1, "interests": {"stale": 1.0}})
        writer.write(encode_rows([(USER_PROFILES, 6, stale)]), None)
        writer.flush(False)
        row = _select(scratch, "SELECT event_count, interests, seq FROM user_profiles WHERE user_id = %s", "u1")[0]
        assert (row.event_count, dict(row.interests), row.seq) == (70, {"books": 1.5, "garden": 1.75}, 7)
        # a newer partial row changes only the columns it names (DEFAULT UNSET: no tombstones for the rest)
        newer = json.dumps({"user_id": "u1", "event_count": 71})
        writer.write(encode_rows([(USER_PROFILES, 8, newer)]), None)
        writer.flush(False)
        row = _select(scratch, "SELECT event_count, interests, seq FROM user_profiles WHERE user_id = %s", "u1")[0]
        assert (row.event_count, dict(row.interests), row.seq) == (71, {"books": 1.5, "garden": 1.75}, 7)
    finally:
        writer.close()


def test_rows_cassandra_refuses_fail_the_next_flush_without_retrying(jvm: Any, scratch: Settings) -> None:
    from py4j.protocol import Py4JJavaError

    writer = _writer(jvm, scratch)
    try:
        writer.write(encode_rows([(USER_PROFILES, 1, json.dumps({"user_id": "u1", "no_such_column": 1}))]), None)
        started = time.monotonic()
        with pytest.raises(Py4JJavaError) as err:
            writer.flush(False)
        msg = str(err.value.java_exception.getMessage())
        assert "Cassandra sink 'test': Cassandra refused a request of 1 rows" in msg
        assert "no_such_column" in msg
        assert time.monotonic() - started < 10, "an invalid row must not be retried until the write timeout"
        assert writer.writeRetries() == 0 and writer.writeErrors() == 1
    finally:
        writer.close()


# --- in a MiniCluster job --------------------------------------------------------------------------


def _job(s: Settings, records: list[bytes], *, name: str = "rows") -> None:
    from pyflink.common import Types

    from pipeline.flink_env import stream_env
    from pipeline.sources_sinks import cassandra_rows_sink

    env = stream_env(s)
    env.set_parallelism(2)
    byte_array = Types.PRIMITIVE_ARRAY(Types.BYTE())
    # Through a Python operator, as in the job: Python bytes become Java byte[] on the way to the sink.
    stream = env.from_collection(records).map(lambda b: b, output_type=byte_array)
    stream.sink_to(cassandra_rows_sink(s, name)).name(name).uid(name)
    env.execute(f"cassandra-rows-{s.cassandra_keyspace}")


def test_job_writes_every_row_with_its_column_values(scratch: Settings) -> None:
    users, sessions, items = 600, 200, 100
    rows = [_profile(f"u{i}", 1 + i % 200) for i in range(users)]
    rows += [_session(f"u{i % 50}", i) for i in range(sessions)]
    rows += [_item(f"i{i}", 1 + i) for i in range(items)]
    # the same user twice, the newer row first: USING TIMESTAMP, not arrival, decides
    rows += [_profile("twice", 9), _profile("twice", 3)]
    records = [encode_rows(rows[i : i + 37]) for i in range(0, len(rows), 37)]

    _job(scratch, records)

    profiles = {r.user_id: r for r in _select(scratch, "SELECT * FROM user_profiles")}
    assert len(profiles) == users + 1
    p = profiles["u7"]
    assert p.seq == 8 and p.event_count == 80 and p.schema_version == 1
    assert dict(p.counters) == {"click": 8, "view": 16}
    assert dict(p.interests) == {"books": 1.5, "garden": 2.0}
    assert p.recent_items == ["i8", "é-item"]
    assert p.vector == bytes([0, 1, 254, 8]) and p.recent_event_fps == bytes(16)
    assert _ms(p.last_session_end) == BASE_MS + 8 and _ms(p.updated_at) == BASE_MS + 1008
    assert p.last_session_id == "s8" and p.sessions_closed == 8 and p.engagement == 2.5
    assert profiles["twice"].seq == 9 and profiles["twice"].event_count == 90

    got_sessions = _select(scratch, "SELECT * FROM sessions")
    assert len(got_sessions) == sessions
    s7 = next(r for r in got_sessions if r.session_id == "s7")
    assert (s7.user_id, _ms(s7.start_ts), _ms(s7.end_ts)) == ("u7", BASE_MS + 7, BASE_MS + 60_007)
    assert dict(s7.events_by_type) == {"click": 7, "purchase": 1} and dict(s7.categories) == {"books": 2}
    assert (s7.dwell_ms, s7.converted, s7.event_count) == (1241, False, 8)

    got_items = {r.item_id: r for r in _select(scratch, "SELECT * FROM item_vectors")}
    assert len(got_items) == items
    i3 = got_items["i3"]
    assert (i3.vector, i3.bias, i3.updates, i3.seq) == (b"\x3f\x80\x00\x00", -0.5, 4, 4)
    assert _ms(i3.updated_at) == BASE_MS + 4


def test_a_malformed_record_fails_the_job_naming_the_format(scratch: Settings) -> None:
    good = encode_rows([_profile("u1", 1)])
    with pytest.raises(Exception) as err:  # noqa: PT011 - py4j wraps the job failure; the message is checked
        _job(scratch, [good, b"E\x01\x00not a row batch"])
    assert "malformed RowBatch ('cassandra_rows' v1, tag 'W') record" in str(err.value)


# --- metrics of a running job, read through the MiniCluster's REST API -------------------------------

METRICS = ("cassandra_rows_written", "cassandra_write_retries", "cassandra_write_errors", "cassandra_in_flight",
           "cassandra_write_latency_ms", "cassandra_write_latency_max_ms")


def _rest(port: int, path: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310 - loopback
        return json.load(r)


def _sink_metrics(port: int, job_id: str) -> dict[str, float]:
    """The liverec metrics of the job's sink writer (summed over its subtasks), by name."""
    out: dict[str, float] = {}
    for vertex in _rest(port, f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        ids = [m["id"] for m in _rest(port, base) if ".liverec." in m["id"]]
        if ids:
            for m in _rest(port, f"{base}?get={','.join(ids)}"):
                name = m["id"].rsplit(".", 1)[1]
                out[name] = out.get(name, 0.0) + float(m["value"])
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_running_job_reports_the_sink_metrics(scratch: Settings) -> None:
    from pyflink.common import WatermarkStrategy

    from pipeline.flink_env import stream_env
    from pipeline.kafka_io import ensure_topics, produce
    from pipeline.sources_sinks import bytes_source, cassandra_rows_sink

    s = scratch.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}-"})
    ensure_topics(s)
    rows = [_profile(f"u{i}", 1 + i) for i in range(300)]
    produce(s, s.topic("events"), [(None, encode_rows(rows[i : i + 20])) for i in range(0, len(rows), 20)])

    port = _free_port()
    env = stream_env(s, extra={"rest.port": str(port), "metrics.fetcher.update-interval": "200 ms"})
    env.set_parallelism(1)
    source = bytes_source(s, "events", group_id=f"{s.topic_prefix}rows")  # unbounded: the job keeps running
    (env.from_source(source, WatermarkStrategy.no_watermarks(), "rows-source")
     .sink_to(cassandra_rows_sink(s, "metric-rows")).name("metric-rows").uid("metric-rows"))
    client = env.execute_async(f"cassandra-rows-metrics-{s.cassandra_keyspace}")
    try:
        deadline = time.monotonic() + 90
        metrics: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                metrics = _sink_metrics(port, str(client.get_job_id()))
            except OSError:
                metrics = {}
            if metrics.get("cassandra_rows_written") == len(rows):
                break
            time.sleep(0.5)
        assert set(METRICS) <= set(metrics), f"metrics of the sink writer: {sorted(metrics)}"
        assert metrics["cassandra_rows_written"] == len(rows)
        assert metrics["cassandra_write_errors"] == 0 and metrics["cassandra_write_retries"] == 0
        assert metrics["cassandra_in_flight"] == 0
        (count,) = _select(s, "SELECT count(*) FROM user_profiles")[0]
        assert count == len(rows)
    finally:
        client.cancel().result()


# --- outages: a loopback TCP proxy in front of the real Cassandra that the test cuts and restores ----


class _Proxy:
    """Forwards 127.0.0.1:<port> to Cassandra; `cut` closes every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._conns: list[Any] = []
        self._listener: Any = None
        self.restore()

    def restore(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        import socket

        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone keeps it listening
        except OSError:
            pass
        self._listener.close()
        for sock in self._conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._conns.clear()

    def _accept(self, listener: Any) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass


def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_an_outage_is_retried_and_nothing_is_lost(jvm: Any, scratch: Settings) -> None:
    proxy = _Proxy((scratch.cassandra_contact_points[0], scratch.cassandra_port))
    s = scratch.model_copy(update={"cassandra_hosts": "127.0.0.1", "cassandra_port": proxy.port})
    writer = _writer(jvm, s, "outage")
    try:
        writer.write(encode_rows([_profile("before", 1)]), None)
        writer.flush(False)
        proxy.cut()
        writer.write(encode_rows([_profile(f"during-{i}", 1) for i in range(40)]), None)
        _until(lambda: writer.writeRetries() >= 3, 20, "the writes to fail and be retried")
        assert writer.inFlight() > 0
        proxy.restore()
        writer.flush(False)  # returns once the driver reconnected and the retries went through
        assert writer.inFlight() == 0 and writer.rowsWritten() == 41
        (count,) = _select(scratch, "SELECT count(*) FROM user_profiles")[0]
        assert count == 41
    finally:
        writer.close()
        proxy.cut()


def test_writes_failing_past_the_write_timeout_fail_the_next_flush(jvm: Any, scratch: Settings) -> None:
    from py4j.protocol import Py4JJavaError

    proxy = _Proxy((scratch.cassandra_contact_points[0], scratch.cassandra_port))
    s = scratch.model_copy(update={"cassandra_hosts": "127.0.0.1", "cassandra_port": proxy.port,
                                   "cassandra_write_timeout_s": 2.0})
    writer = _writer(jvm, s, "timeout")
    try:
        writer.write(encode_rows([_profile("before", 1)]), None)
        writer.flush(False)
        proxy.cut()
        writer.write(encode_rows([_profile("during", 2)]), None)
        started = time.monotonic()
        with pytest.raises(Py4JJavaError) as err:
            writer.flush(False)
        assert 1.0 < time.monotonic() - started < 15
        msg = str(err.value.java_exception.getMessage())
        assert "Cassandra sink 'timeout': a write of 1 rows kept failing for 2s" in msg
        assert "restarts from its last checkpoint" in msg
        assert writer.writeRetries() >= 2 and writer.writeErrors() == writer.writeRetries() + 1
    finally:
        writer.close()
        proxy.cut()

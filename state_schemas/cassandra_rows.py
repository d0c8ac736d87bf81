"""Cassandra upserts as one record per batch of rows, for the job's Java sink: RowBatch v1.

Why: the Python cassandra-driver spent ~19% of the job's interpreter time binding rows, batching and
parsing responses under the one GIL of thread mode. With this format the operators only build one JSON
text per row; the Java sink (``io.liverec.cassandra.CassandraRowsSink``, pipeline/jvm/) binds each row
to a prepared ``INSERT INTO <keyspace>.<table> JSON ? DEFAULT UNSET USING TIMESTAMP ?`` and writes
unlogged batches asynchronously, all acknowledged before a checkpoint completes. The record lives
between an operator and the sink of one build, never in state or on a topic.

RowBatch v1, little endian::

    offset  size  field
    0       1     tag 'W'
    1       2     version u16 = 1
    3       4     N u32 rows, then N times:
    +0      1       table u8: index into TABLES (0 user_profiles, 1 sessions, 2 item_vectors)
    +1      8       write_ts i64: the row's USING TIMESTAMP (the state's ``seq``, docs/architecture.md
                    "Cassandra writes")
    +9      4       L u32
    +13     L       UTF-8 JSON object in CQL ``INSERT ... JSON`` form

The JSON object has the column names as keys (state_schemas/cql/*.cql) and CQL's JSON encodings as
values: a blob as ``"0x<hex>"`` (`blob`), a timestamp as epoch milliseconds (an integer), a map as an
object (text keys), a list as an array. A column left out keeps the value it has (the sink inserts with
``DEFAULT UNSET``, so no tombstone is written for it); an explicit ``null`` clears it.

The table numbering lives here only: the Python wrapper hands `TABLES` to the Java sink, which knows
no table names of its own.

>>> blob = encode_rows([(SESSIONS, 7, '{"user_id": "u1", "session_id": "s1"}')])
>>> decode_rows(blob)
[(1, 7, '{"user_id": "u1", "session_id": "s1"}')]
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from state_schemas.codec import TAGS
from state_schemas.errors import SchemaError

SCHEMA_VERSION: Final = 1
NAME: Final = "cassandra_rows"

#: Table of each number: the index is the ``table`` byte of a row. Append only; never renumber.
TABLES: Final[tuple[str, ...]] = ("user_profiles", "sessions", "item_vectors")
USER_PROFILES: Final = 0
SESSIONS: Final = 1
ITEM_VECTORS: Final = 2

_TAG: Final = TAGS[NAME]
_HEAD: Final = struct.Struct("<BHI")
_ROW: Final = struct.Struct("<BqI")

Row = tuple[int, int, str]


def blob(data: bytes) -> str:
    """A blob column's value in CQL JSON form.

    >>> blob(bytes([1, 255]))
    '0x01ff'
    """
    return "0x" + data.hex()


def encode_rows(rows: Sequence[Row]) -> bytes:
    """One RowBatch of ``(table, write_ts, json_text)`` rows, in order.

    Raises SchemaError naming the row when a table number is unknown, a timestamp is outside i64 or a
    text is not encodable as UTF-8 (a lone surrogate).
    """
    parts = [_HEAD.pack(_TAG, SCHEMA_VERSION, len(rows))]
    append = parts.append
    pack = _ROW.pack
    n_tables = len(TABLES)
    try:
        for table, write_ts, text in rows:
            if not 0 <= table < n_tables:
                msg = f"table {table!r} is not one of 0..{n_tables - 1} {TABLES}"
                raise ValueError(msg)
            data = text.encode()
            append(pack(table, write_ts, len(data)))
            append(data)
    except (struct.error, ValueError, TypeError, AttributeError, UnicodeError) as exc:
        msg = (
            f"{NAME}: cannot encode row {len(parts) // 2} of {len(rows)} as a RowBatch v{SCHEMA_VERSION}: "
            f"{exc}; rows are (table number, write_ts i64, JSON text)"
        )
        raise SchemaError(msg) from exc
    return b"".join(parts)


def decode_rows(data: bytes | bytearray | memoryview) -> list[Row]:
    """The rows of a RowBatch (for tests and tools; the job's reader is the Java sink).

    A foreign, newer, truncated or padded record, an unknown table number or text that is not UTF-8
    raises SchemaError naming the format.
    """
    data = bytes(data)
    try:
        tag, version, n = _HEAD.unpack_from(data)
    except struct.error as exc:
        msg = f"{NAME}: a RowBatch of {len(data)} bytes is too short for its header: {exc}"
        raise SchemaError(msg) from exc
    if tag != _TAG:
        owner = next((name for name, t in TAGS.items() if t == tag), None)
        msg = (
            f"{NAME}: expected a RowBatch (tag 'W'), got tag {tag:#04x}"
            + (f" (a '{owner}' record)" if owner else "")
            + ": the stream feeding the Cassandra sink carries another format"
        )
        raise SchemaError(msg)
    if version != SCHEMA_VERSION:
        msg = (
            f"{NAME}: RowBatch version {version}, this build reads {SCHEMA_VERSION}: "
            "the producer and the sink come from different builds"
        )
        raise SchemaError(msg)
    rows: list[Row] = []
    pos = _HEAD.size
    end = len(data)
    for i in range(n):
        if pos + _ROW.size > end:
            msg = f"{NAME}: RowBatch announces {n} rows, it ends inside row {i}"
            raise SchemaError(msg)
        table, write_ts, size = _ROW.unpack_from(data, pos)
        pos += _ROW.size
        if table >= len(TABLES):
            msg = f"{NAME}: RowBatch row {i} names table {table}, known are 0..{len(TABLES) - 1} {TABLES}"
            raise SchemaError(msg)
        if pos + size > end:
            msg = f"{NAME}: RowBatch row {i} of {size} bytes overruns the record"
            raise SchemaError(msg)
        try:
            text = data[pos : pos + size].decode()
        except UnicodeDecodeError as exc:
            msg = f"{NAME}: RowBatch row {i} is not UTF-8: {exc}"
            raise SchemaError(msg) from exc
        rows.append((table, write_ts, text))
        pos += size
    if pos != end:
        msg = f"{NAME}: RowBatch has {end - pos} unexpected trailing bytes after {n} rows"
        raise SchemaError(msg)
    return rows

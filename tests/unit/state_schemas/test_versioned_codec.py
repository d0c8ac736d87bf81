"""`VersionedCodec`: version dispatch, the migration chain and its errors, on a toy record."""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np
import pytest

from pipeline.errors import SchemaError, StateVersionError
from state_schemas.codec import DecodeCache, VersionedCodec, f32_bytes, f32_view

TAG = ord("Z")


class PointV1(NamedTuple):
    x: int


class PointV2(NamedTuple):
    x: int
    y: int


def enc_v1(p: PointV1) -> bytes:
    return struct.pack("<BHq", TAG, 1, p.x)


def dec_v1(b: bytes) -> PointV1:
    return PointV1(struct.unpack_from("<q", b, 3)[0])


def enc_v2(p: PointV2) -> bytes:
    return struct.pack("<BHqq", TAG, 2, p.x, p.y)


def dec_v2(b: bytes) -> PointV2:
    x, y = struct.unpack_from("<qq", b, 3)
    if len(b) != 19:
        raise ValueError("length")
    return PointV2(x, y)


def migrate_v1_to_v2(p: PointV1) -> PointV2:
    return PointV2(p.x, 0)


V1 = VersionedCodec("point", TAG, 1, enc_v1, {1: dec_v1})
V2 = VersionedCodec("point", TAG, 2, enc_v2, {1: dec_v1, 2: dec_v2}, {1: migrate_v1_to_v2})


def test_old_blobs_are_migrated_on_read() -> None:
    assert V2.decode(V1.encode(PointV1(5))) == PointV2(5, 0)
    assert V2.decode(V2.encode(PointV2(5, 6))) == PointV2(5, 6)


def test_an_older_build_refuses_a_newer_blob_and_says_what_to_do() -> None:
    with pytest.raises(StateVersionError) as err:
        V1.decode(V2.encode(PointV2(1, 2)))
    assert str(err.value) == (
        "state for 'point' has version 2 but this build reads up to 1: deploy a build that knows v2 "
        "or restore from an older savepoint"
    )
    assert isinstance(err.value, SchemaError)


def test_a_dropped_old_version_is_refused() -> None:
    v2_only = VersionedCodec("point", TAG, 2, enc_v2, {2: dec_v2})
    with pytest.raises(StateVersionError, match=r"version 1, which this build cannot read \(readable: \[2\]\)"):
        v2_only.decode(V1.encode(PointV1(1)))


def test_a_codec_without_a_migration_path_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="no migration path"):
        VersionedCodec("point", TAG, 2, enc_v2, {1: dec_v1, 2: dec_v2})
    with pytest.raises(ValueError, match="no decoder for its own version"):
        VersionedCodec("point", TAG, 2, enc_v2, {1: dec_v1}, {1: migrate_v1_to_v2})


@pytest.mark.parametrize("blob", [b"", b"Z", b"Z\x01"])
def test_short_blobs_are_schema_errors(blob: bytes) -> None:
    with pytest.raises(SchemaError, match="not a liverec blob"):
        V2.decode(blob)


def test_low_level_decoder_failures_become_schema_errors() -> None:
    with pytest.raises(SchemaError, match="'point' v2 value of 20 bytes is corrupt") as err:
        V2.decode(V2.encode(PointV2(1, 2)) + b"\x00")
    assert isinstance(err.value.__cause__, ValueError)


def test_unknown_tag() -> None:
    with pytest.raises(SchemaError, match=r"format tag 0x7e, expected 0x5a: .*wired to the wrong codec"):
        V2.decode(b"~\x02\x00" + bytes(16))


def test_encode_errors_name_the_codec_and_the_type() -> None:
    with pytest.raises(SchemaError, match="cannot encode PointV1 as 'point' v1") as err:
        V1.encode(PointV1(2**70))
    assert isinstance(err.value.__cause__, struct.error)


def test_f32_helpers() -> None:
    b = f32_bytes([1.0, 2.5])
    assert b == np.array([1.0, 2.5], dtype="<f4").tobytes()
    v = f32_view(b)
    assert v.tolist() == [1.0, 2.5] and not v.flags.writeable
    with pytest.raises(SchemaError, match="1-d"):
        f32_bytes(np.zeros((2, 2)))


def test_decode_cache_returns_the_written_value_for_the_same_bytes() -> None:
    cache: DecodeCache[PointV2] = DecodeCache(V2, max_entries=2)
    p = PointV2(1, 2)
    blob = cache.encode("a", p)
    assert cache.decode("a", bytes(blob)) is p  # equal bytes, another object: still a hit
    other = V2.encode(PointV2(3, 4))
    assert cache.decode("a", other) == PointV2(3, 4)  # different bytes: decoded, then remembered
    assert cache.decode("a", bytes(other)) is cache.decode("a", other)
    assert cache.decode("a", None) is None and cache.decode("a", b"") is None


def test_decode_cache_is_bounded_and_forgets() -> None:
    cache: DecodeCache[PointV2] = DecodeCache(V2, max_entries=2)
    values = {k: PointV2(i, i) for i, k in enumerate("abc")}
    blobs = {k: cache.encode(k, v) for k, v in values.items()}
    assert cache.decode("c", blobs["c"]) is values["c"]
    a = cache.decode("a", blobs["a"])
    assert a == values["a"] and a is not values["a"]  # written longest ago: dropped, decoded again
    cache.forget("c")
    c = cache.decode("c", blobs["c"])
    assert c == values["c"] and c is not values["c"]

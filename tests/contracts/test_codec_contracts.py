"""The same checks over every codec of the registry: round trip, version prefix, version errors."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import SchemaError, StateVersionError
from state_schemas.codec import TAGS, VersionedCodec
from state_schemas.registry import CODECS
from tests.contracts.strategies import EXAMPLES, FEW, PROPS, SAMPLES

NAMES = sorted(CODECS)


def test_every_codec_has_examples_and_a_unique_tag() -> None:
    assert set(EXAMPLES) == set(CODECS), "register a strategy in tests/contracts/strategies.py"
    tags = [c.tag for c in CODECS.values()]
    assert len(set(tags)) == len(tags)
    assert {c.name: c.tag for c in CODECS.values()} == {n: TAGS[n] for n in CODECS}


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_is_identity_and_encoding_is_canonical(name: str) -> None:
    codec: VersionedCodec[Any] = CODECS[name]

    @PROPS
    @given(EXAMPLES[name])
    def check(value: Any) -> None:
        blob = codec.encode(value)
        back = codec.decode(blob)
        assert back == value
        assert type(back) is type(value)
        assert codec.encode(back) == blob  # same value, same bytes: USING TIMESTAMP replays stay exact
        assert codec.decode(bytearray(blob)) == value  # any bytes-like input

    check()


@pytest.mark.parametrize("name", NAMES)
def test_blob_starts_with_tag_and_version(name: str) -> None:
    codec = CODECS[name]

    @FEW
    @given(EXAMPLES[name])
    def check(value: Any) -> None:
        blob = codec.encode(value)
        assert blob[0] == codec.tag
        assert struct.unpack_from("<H", blob, 1)[0] == codec.version

    check()


@pytest.mark.parametrize("name", NAMES)
def test_newer_version_raises_with_what_to_do(name: str) -> None:
    codec = CODECS[name]

    @FEW
    @given(EXAMPLES[name], st.integers(codec.version + 1, 0xFFFF))
    def check(value: Any, version: int) -> None:
        blob = bytearray(codec.encode(value))
        struct.pack_into("<H", blob, 1, version)
        with pytest.raises(StateVersionError) as err:
            codec.decode(bytes(blob))
        msg = str(err.value)
        assert f"'{name}' has version {version}" in msg
        assert f"reads up to {codec.version}" in msg
        assert "deploy a build that knows" in msg and "older savepoint" in msg

    check()


@pytest.mark.parametrize("name", NAMES)
def test_unknown_older_version_raises(name: str) -> None:
    codec = CODECS[name]
    blob = bytearray(codec.encode(SAMPLES[name]))
    struct.pack_into("<H", blob, 1, 0)
    with pytest.raises(StateVersionError, match="cannot read"):
        codec.decode(bytes(blob))


@pytest.mark.parametrize(("name", "other"), [(n, o) for n in NAMES for o in NAMES if n != o])
def test_foreign_tag_is_refused_naming_both(name: str, other: str) -> None:
    with pytest.raises(SchemaError, match=f"'{other}' blob"):
        CODECS[name].decode(CODECS[other].encode(SAMPLES[other]))


@pytest.mark.parametrize("name", NAMES)
def test_sample_round_trips(name: str) -> None:
    codec = CODECS[name]
    assert codec.decode(codec.encode(SAMPLES[name])) == SAMPLES[name]


def test_samples_and_examples_cover_the_registry() -> None:
    assert set(SAMPLES) == set(CODECS)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_or_padded_bytes_raise_schema_error_only(name: str) -> None:
    codec = CODECS[name]

    @FEW
    @given(EXAMPLES[name], st.data())
    def check(value: Any, data: st.DataObject) -> None:
        blob = codec.encode(value)
        cut = data.draw(st.integers(0, len(blob) - 1))
        with pytest.raises(SchemaError):
            codec.decode(blob[:cut])
        with pytest.raises(SchemaError):
            codec.decode(blob + data.draw(st.binary(min_size=1, max_size=9)))

    check()


@pytest.mark.parametrize("name", NAMES)
def test_arbitrary_bytes_decode_or_raise_schema_error(name: str) -> None:
    codec = CODECS[name]

    @PROPS
    @given(st.binary(max_size=300))
    def check(junk: bytes) -> None:
        blob = bytes([codec.tag]) + struct.pack("<H", codec.version) + junk
        try:
            codec.decode(blob)
        except SchemaError:
            pass

    check()

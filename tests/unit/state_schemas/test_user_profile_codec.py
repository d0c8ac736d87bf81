"""User profile codec v1: golden bytes, layout rules, embedding and dedupe-ring helpers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SchemaError
from state_schemas import user_profile
from state_schemas.user_profile import NO_TS, Session, UserProfile, event_fingerprint, ring_contains
from state_schemas.user_profile_v1 import N_TYPES
from tests.contracts.strategies import typical_profile

GOLDEN = UserProfile(
    user_id="u1",
    seq=7,
    total_events=6,
    late_events=1,
    sessions_closed=2,
    type_counts=(3, 1, 0, 0, 1, 1),
    session=Session(1_700_000_000_000, 1_700_000_060_000, (1, 0, 0, 0, 1, 0), {"books": 2}, 500),
    last_closed_start_ts=1_699_990_000_000,
    last_closed_end_ts=1_699_990_100_000,
    interests={"books": (6.5, 1_700_000_060_000)},
    engagement=7.25,
    engagement_ts=1_700_000_060_000,
    recent_items=("i1", "i2"),
    recent_event_fps=bytes(range(16)),
    embedding=bytes(range(8)),
    embedding_ts=1_700_000_060_000,
)
# v1 bytes of GOLDEN. If this changes, savepoints become unreadable: add v2 and a migration instead.
GOLDEN_HEX = (
    "550100070000000000000006000000000000000100000000000000020000000000000080d14ccf8b01000020584ecf8b"
    "0100000000000000001d406052e6cf8b0100006052e6cf8b0100000068e5cf8b0100006052e6cf8b010000f401000000"
    "0000000106010001000200020002001400000075311f626f6f6b731f626f6f6b731f69311f6932030000000000000001"
    "0000000000000000000000000000000000000000000000010000000000000001000000000000000100000000000000000"
    "00000000000000100000000000000020000000000000000001a406052e6cf8b010000000102030405060708090a0b0c0d"
    "0e0f0001020304050607"
)


def test_golden_bytes() -> None:
    assert user_profile.encode(GOLDEN).hex() == GOLDEN_HEX
    assert user_profile.decode(bytes.fromhex(GOLDEN_HEX)) == GOLDEN


def test_fresh_profile_round_trips_and_is_small() -> None:
    p = UserProfile("u-1")
    blob = user_profile.encode(p)
    assert user_profile.decode(blob) == p
    assert len(blob) == 115 + len("u-1") + 8 * N_TYPES
    assert p.session is None and p.last_closed_end_ts == NO_TS and p.embedding_dim == 0


def test_typical_profile_size() -> None:
    blob = user_profile.encode(typical_profile())
    assert user_profile.decode(blob) == typical_profile()
    assert len(blob) < 1600


def test_a_blob_written_before_a_type_was_appended_reads_with_zero_counts() -> None:
    old = GOLDEN._replace(type_counts=(3, 1, 0, 0, 1), session=GOLDEN.session._replace(type_counts=(1, 0, 0, 0, 1)))
    back = user_profile.decode(user_profile.encode(old))
    assert back.type_counts == (3, 1, 0, 0, 1, 0)
    assert back.session is not None and back.session.type_counts == (1, 0, 0, 0, 1, 0)


def test_reserved_separator_in_a_string_is_refused() -> None:
    with pytest.raises(SchemaError, match="U\\+001F"):
        user_profile.encode(GOLDEN._replace(recent_items=("a\x1fb",)))


@pytest.mark.parametrize(
    "bad",
    [
        GOLDEN._replace(recent_event_fps=b"123"),
        GOLDEN._replace(embedding=b"12345"),
        GOLDEN._replace(seq=-1),
        GOLDEN._replace(session=GOLDEN.session._replace(type_counts=(1, 2))),
    ],
)
def test_malformed_values_are_refused(bad: UserProfile) -> None:
    with pytest.raises(SchemaError, match="cannot encode UserProfileV1"):
        user_profile.encode(bad)


def test_session_categories_without_a_session_are_corrupt() -> None:
    blob = bytearray(user_profile.encode(GOLDEN))
    blob[99] = 0  # clear the "session open" flag, keep C = 1
    with pytest.raises(SchemaError, match="corrupt"):
        user_profile.decode(bytes(blob))


def test_embedding_helpers() -> None:
    p = UserProfile("u").with_embedding(np.array([0.5, -1.0, 2.0]), ts=123)
    assert p.embedding_dim == 3 and p.embedding_ts == 123
    v = user_profile.decode(user_profile.encode(p)).embedding_vector()
    assert v.dtype == np.float32 and v.tolist() == [0.5, -1.0, 2.0]
    assert not v.flags.writeable


def test_fingerprint_is_stable_across_processes() -> None:
    # BLAKE2b-64 of the UTF-8 id; a change would make every stored dedupe window useless.
    assert event_fingerprint("e-1").hex() == __import__("hashlib").blake2b(b"e-1", digest_size=8).hexdigest()
    assert event_fingerprint("evt-ü") != event_fingerprint("evt-u")


def test_ring_matches_only_at_fingerprint_boundaries() -> None:
    a, b = bytes(range(8)), bytes(range(8, 16))
    ring = a + b
    assert ring_contains(ring, a) and ring_contains(ring, b)
    assert not ring_contains(ring, ring[4:12])  # straddles two fingerprints
    assert not ring_contains(b"", a)
    tricky = bytes([1] * 9 + [2] * 7)  # fp [1]*8 occurs at offset 0 and 1
    assert ring_contains(tricky, bytes([1] * 8))
    assert not ring_contains(tricky, bytes([1] * 7 + [2]))  # only at offset 1

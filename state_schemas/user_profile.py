"""Per-user state: the current version, its codec and the migration chain.

Import from here, not from a versioned module. To add v2: write ``user_profile_v2.py`` (dataclass +
layout), point `UserProfile` at it, add ``decoders[2]`` and a ``migrate_v1_to_v2(UserProfileV1) ->
UserProfileV2`` here as ``migrations[1]``, bump `SCHEMA_VERSION`. Old savepoints then decode as v1 and
are migrated on read; the first write stores v2.

>>> p = UserProfile("u1", seq=3)
>>> decode(encode(p)) == p
True
>>> encode(p)[:3] == bytes([ord("U"), 1, 0])
True
"""

from __future__ import annotations

from typing import Final

from state_schemas import user_profile_v1
from state_schemas.codec import NO_TS, TAGS, VersionedCodec
from state_schemas.user_profile_v1 import FP_BYTES, SessionV1, UserProfileV1, event_fingerprint, ring_contains

__all__ = [
    "CODEC",
    "FP_BYTES",
    "NO_TS",
    "SCHEMA_VERSION",
    "Session",
    "UserProfile",
    "decode",
    "encode",
    "event_fingerprint",
    "ring_contains",
]

SCHEMA_VERSION: Final = 1
UserProfile = UserProfileV1
Session = SessionV1

CODEC: Final[VersionedCodec[UserProfileV1]] = VersionedCodec(
    name="user_profile",
    tag=TAGS["user_profile"],
    version=SCHEMA_VERSION,
    encoder=user_profile_v1.encode,
    decoders={1: user_profile_v1.decode},
    migrations={},
)

encode = CODEC.encode
decode = CODEC.decode

"""Versioned binary envelope shared by every codec in `state_schemas`.

Every blob written by this package starts with the same 3-byte header, so a value can always be
identified before its body is parsed::

    offset  size  field
    0       1     format tag, u8: one ASCII letter per codec (see TAGS)
    1       2     schema version, u16 little endian
    3       ...   body; its layout is documented in the module of that version

Why a tag as well as a version: a state descriptor wired to the wrong codec (an item blob read as a
user profile) then fails with both names instead of decoding garbage.

`VersionedCodec.decode` dispatches on the version: the current version is decoded directly, an older
one by its own decoder followed by the chain ``migrate_vN_to_vN+1``; a newer or unknown version raises
`StateVersionError` with what the operator of the job should do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from state_schemas.errors import SchemaError, StateVersionError

T = TypeVar("T")

HEADER: Final = struct.Struct("<BH")

#: One tag per codec; a tag is never reused for another type.
TAGS: Final[Mapping[str, int]] = {
    "event": ord("E"),
    "user_profile": ord("U"),
    "item_vector": ord("I"),
    "item_update": ord("G"),
    "item_vector_msg": ord("M"),
    "ann_index": ord("A"),
    "index_entry": ord("X"),
    "seen_items": ord("S"),
    "request_msg": ord("R"),
    "query_msg": ord("Q"),
    "interaction_msg": ord("N"),
    "partial_msg": ord("P"),
    "vector_batch_msg": ord("B"),
    "record_batch": ord("K"),
    "grad_batch": ord("H"),
    "cooc_log": ord("C"),
    "share_batch": ord("Z"),
    "index_log": ord("L"),
    "item_log": ord("T"),
    "cassandra_rows": ord("W"),
    "feature_batch": ord("F"),
    "drift_state": ord("D"),
    "adjustment": ord("J"),
}

#: "Never" for optional event-time fields: the smallest i64, so it packs as `q` and sorts first.
NO_TS: Final = -(2**63)

# Low-level failures of a decoder on bytes that are not what their header claims.
_CORRUPT = (struct.error, UnicodeDecodeError, ValueError, IndexError, TypeError)


@dataclass(frozen=True, slots=True)
class VersionedCodec(Generic[T]):
    """Encode the current version; decode any known version and migrate it to the current one.

    ``encoder`` and every decoder work on whole blobs (header included): the encoder packs the header
    together with the fixed fields in one `struct` call, a decoder may assume the header was checked.
    ``migrations[n]`` turns a value of version ``n`` into one of version ``n + 1``.
    """

    name: str
    tag: int
    version: int
    encoder: Callable[[T], bytes]
    decoders: Mapping[int, Callable[[bytes], Any]]
    migrations: Mapping[int, Callable[[Any], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check that every readable version can reach the current one."""
        if self.version not in self.decoders:
            msg = f"codec '{self.name}': no decoder for its own version {self.version}"
            raise ValueError(msg)
        for v in self.decoders:
            if v > self.version or any(n not in self.migrations for n in range(v, self.version)):
                msg = f"codec '{self.name}': version {v} has no migration path to {self.version}"
                raise ValueError(msg)

    def encode(self, value: T) -> bytes:
        """Bytes of ``value`` in the current version, header included."""
        try:
            return self.encoder(value)
        except (struct.error, ValueError, KeyError, OverflowError, TypeError, AttributeError) as exc:
            msg = (
                f"cannot encode {type(value).__name__} as '{self.name}' v{self.version}: {exc}; "
                "a field is out of range or of the wrong type"
            )
            raise SchemaError(msg) from exc

    def decode(self, data: bytes) -> T:
        """Value of the current version from bytes of any readable version.

        A ``bytearray`` or ``memoryview`` is copied to ``bytes`` first, so decoded values never share
        mutable memory with the caller.
        """
        if type(data) is not bytes:
            data = bytes(data)
        try:
            tag, version = HEADER.unpack_from(data)
        except (struct.error, TypeError) as exc:
            msg = f"'{self.name}' value is not a liverec blob: {exc}"
            raise SchemaError(msg) from exc
        if tag != self.tag:
            owner = next((n for n, t in TAGS.items() if t == tag), None)
            msg = (
                f"'{self.name}' value has format tag {tag:#04x}"
                + (f" (a '{owner}' blob)" if owner else "")
                + f", expected {self.tag:#04x}: the state descriptor is wired to the wrong codec"
            )
            raise SchemaError(msg)
        decoder = self.decoders.get(version)
        if decoder is None:
            raise StateVersionError(self._version_message(version))
        try:
            value = decoder(data)
        except _CORRUPT as exc:
            msg = f"'{self.name}' v{version} value of {len(data)} bytes is corrupt: {exc}"
            raise SchemaError(msg) from exc
        while version < self.version:
            value = self.migrations[version](value)
            version += 1
        return value  # type: ignore[no-any-return]

    def _version_message(self, version: int) -> str:
        if version > self.version:
            return (
                f"state for '{self.name}' has version {version} but this build reads up to "
                f"{self.version}: deploy a build that knows v{version} or restore from an older savepoint"
            )
        return (
            f"state for '{self.name}' has version {version}, which this build cannot read "
            f"(readable: {sorted(self.decoders)}): restore from a savepoint written by a build that "
            "migrated it, or reset this state on purpose by renaming its state descriptor"
        )


def corrupt(name: str, why: str) -> SchemaError:
    """The error a decoder raises when lengths inside a blob do not add up."""
    return SchemaError(f"'{name}' value is corrupt: {why}")


def f32_bytes(vector: ArrayLike) -> bytes:
    """Little-endian float32 bytes of a 1-d vector (the storage form of every embedding)."""
    arr = np.asarray(vector, dtype="<f4")
    if arr.ndim != 1:
        msg = f"an embedding must be 1-d, got shape {arr.shape}"
        raise SchemaError(msg)
    return arr.tobytes()


def f32_view(data: bytes) -> NDArray[np.float32]:
    """Read-only float32 view of bytes made by `f32_bytes` (no copy)."""
    return np.frombuffer(data, dtype="<f4")


class DecodeCache(Generic[T]):
    """Per-key memo of the last value written, so reading the same bytes back skips the decode.

    For a keyed operator that decodes its state, updates it and encodes it again on every event: the
    blob it reads next time is usually the blob it wrote. Correct by construction: a cached value is
    returned only for bytes equal to those it was encoded to (and ``decode(encode(v)) == v`` holds for
    every codec, see tests/contracts); anything else is decoded. Bounded: the key written longest ago
    is dropped first. Values must not be mutated by the caller (the state types are immutable).

    >>> from state_schemas import item_vector
    >>> cache = DecodeCache(item_vector.CODEC, max_entries=2)
    >>> blob = cache.encode("i1", item_vector.ItemVector(b"", 0.5))
    >>> cache.decode("i1", blob) is cache.decode("i1", bytes(blob))
    True
    """

    __slots__ = ("_codec", "_entries", "_max")

    def __init__(self, codec: VersionedCodec[T], max_entries: int = 10_000) -> None:
        """Cache for ``codec`` holding at most ``max_entries`` keys."""
        self._codec = codec
        self._max = max_entries
        self._entries: dict[Hashable, tuple[bytes, T]] = {}

    def decode(self, key: Hashable, blob: bytes | None) -> T | None:
        """The value of ``blob`` (None for no state yet), from the cache when it holds these bytes."""
        if not blob:
            return None
        hit = self._entries.get(key)
        if hit is not None and hit[0] == blob:
            return hit[1]
        value = self._codec.decode(blob)
        self._remember(key, blob, value)
        return value

    def encode(self, key: Hashable, value: T) -> bytes:
        """Bytes of ``value``, remembered for the next `decode` of ``key``."""
        blob = self._codec.encode(value)
        self._remember(key, blob, value)
        return blob

    def forget(self, key: Hashable) -> None:
        """Drop ``key`` (e.g. when its state is cleared)."""
        self._entries.pop(key, None)

    def _remember(self, key: Hashable, blob: bytes, value: T) -> None:
        entries = self._entries
        entries.pop(key, None)
        entries[key] = (blob, value)
        if len(entries) > self._max:
            del entries[next(iter(entries))]

"""DriftState v1: the drift monitor's keyed state (one value under its one key), bounded in size.

Per feature: a reference window and a current window of float32 samples, and whether an alert episode
is open (`operators.drift.logic` says how they are used). A window keeps at most its capacity of
samples (a uniform reservoir of what it saw), so the state's size is bounded by the window settings
whatever the stream's rate: 4 bytes × (reference + current capacity) per feature, plus ~100 bytes.

Byte layout, v1 (all little endian)::

    offset  size  field
    0       1     tag 'D'
    1       2     version u16 = 1
    3       2     F u16 features, then F times:
                    1    L u8, then L bytes: UTF-8 feature name
                    1    flags u8: 1 = an alert episode is open
                    8    hold_ts i64: samples of a batch that starts before it are not used (the end
                         of the warm-up, or of the last alert's window); NO_TS: no batch yet
                    4    quiet u32: windows without a breach since the episode's last breach
                    8    statistic f64: last KS statistic (-1: no test yet)
                    8    p_value f64: last p-value (-1: no test yet)
                    then two windows, the reference and the current one, each:
                    4    serial u32: windows begun for this feature in this role (salts the reservoir)
                    8    start_ts i64: earliest event time of the samples offered (NO_TS: empty)
                    8    end_ts i64: latest (NO_TS: empty)
                    8    seen u64: samples offered to the window
                    4    K u32 samples kept (K = min(seen, capacity))
                    4K   f32[K] the samples kept

>>> s = DriftState((FeatureState("dwell_ms", EMPTY, EMPTY._replace(seen=1, data=bytes(4))),))
>>> decode(encode(s)) == s
True
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from state_schemas.codec import NO_TS, TAGS, VersionedCodec, corrupt

SCHEMA_VERSION: Final = 1
_NAME: Final = "drift_state"
_HEAD: Final = struct.Struct("<BHH")
_FEATURE: Final = struct.Struct("<BqIdd")
_WINDOW: Final = struct.Struct("<IqqQI")
_EPISODE: Final = 1


class Window(NamedTuple):
    """Samples of one window: span, how many were offered, the float32 samples kept (bytes)."""

    serial: int = 0
    start_ts: int = NO_TS
    end_ts: int = NO_TS
    seen: int = 0
    data: bytes = b""  # float32 little endian

    @property
    def kept(self) -> int:
        """Number of samples kept."""
        return len(self.data) // 4

    def values(self) -> NDArray[np.float32]:
        """The kept samples as a read-only float32 array (a view)."""
        return np.frombuffer(self.data, dtype="<f4")


EMPTY: Final = Window()


class FeatureState(NamedTuple):
    """One feature's windows and alert episode."""

    name: str
    reference: Window = EMPTY
    current: Window = EMPTY
    episode: bool = False
    hold_ts: int = NO_TS
    quiet: int = 0
    statistic: float = -1.0
    p_value: float = -1.0


class DriftState(NamedTuple):
    """Every monitored feature, in the order of the monitor's settings."""

    features: tuple[FeatureState, ...] = ()


def _encode(state: DriftState) -> bytes:
    parts = [_HEAD.pack(TAGS[_NAME], SCHEMA_VERSION, len(state.features))]
    for f in state.features:
        name = f.name.encode()
        if not 0 < len(name) <= 255:
            msg = f"feature name {f.name!r} has {len(name)} UTF-8 bytes, need 1..255"
            raise ValueError(msg)
        parts += [bytes((len(name),)), name, _FEATURE.pack(_EPISODE if f.episode else 0, f.hold_ts, f.quiet,
                                                           f.statistic, f.p_value)]
        for w in (f.reference, f.current):
            if len(w.data) % 4:
                msg = f"feature {f.name!r}: window holds {len(w.data)} bytes, not float32 samples"
                raise ValueError(msg)
            parts += [_WINDOW.pack(w.serial, w.start_ts, w.end_ts, w.seen, len(w.data) // 4), w.data]
    return b"".join(parts)


def _decode(data: bytes) -> DriftState:
    _, _, count = _HEAD.unpack_from(data)
    pos = _HEAD.size
    out: list[FeatureState] = []
    for _ in range(count):
        size = data[pos]
        if size == 0:
            raise corrupt(_NAME, f"feature {len(out)} has an empty name")
        name = data[pos + 1 : pos + 1 + size].decode()
        pos += 1 + size
        flags, hold, quiet, statistic, p_value = _FEATURE.unpack_from(data, pos)
        if flags & ~_EPISODE:
            raise corrupt(_NAME, f"feature {name!r} has unknown flags {flags:#04x}")
        pos += _FEATURE.size
        windows = []
        for _role in range(2):
            serial, start, end, seen, kept = _WINDOW.unpack_from(data, pos)
            pos += _WINDOW.size
            if pos + 4 * kept > len(data):
                raise corrupt(_NAME, f"feature {name!r}: window of {kept} samples, {len(data) - pos} bytes left")
            windows.append(Window(serial, start, end, seen, data[pos : pos + 4 * kept]))
            pos += 4 * kept
        out.append(FeatureState(name, windows[0], windows[1], bool(flags & _EPISODE), hold, quiet, statistic,
                                p_value))
    if pos != len(data):
        raise corrupt(_NAME, f"{len(data) - pos} bytes after the last of {count} features")
    return DriftState(tuple(out))


CODEC: Final[VersionedCodec[DriftState]] = VersionedCodec(
    name=_NAME, tag=TAGS[_NAME], version=SCHEMA_VERSION, encoder=_encode, decoders={1: _decode}
)

encode = CODEC.encode
decode = CODEC.decode

"""A small keyed-state job for the schema-evolution test: `python -m tests.recovery.evolution_job`.

Its per-user state goes through a `VersionedCodec`, the same machinery as the job's state, in the
version chosen by ``LIVEREC_TEST_EVO_VERSION``:

- ``1``: ``(count,)``;
- ``2``: ``(count, channel)``; reads v1 and migrates it, defaulting ``channel`` to ``"web"``;
- ``2-no-v1``: ``(count, channel)`` but no v1 decoder: a deliberately incompatible build.

It counts records per user (input: user ids on the `events` topic) and emits
``user,count,channel`` to `user-counts` exactly once.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from state_schemas.codec import VersionedCodec

TAG = 0x7E


class EvoV1(NamedTuple):
    count: int


class EvoV2(NamedTuple):
    count: int
    channel: str = "web"


def _enc1(v: EvoV1) -> bytes:
    return struct.pack("<BHQ", TAG, 1, v.count)


def _dec1(data: bytes) -> EvoV1:
    return EvoV1(struct.unpack_from("<Q", data, 3)[0])


def _enc2(v: EvoV2) -> bytes:
    return struct.pack("<BHQ", TAG, 2, v.count) + v.channel.encode()


def _dec2(data: bytes) -> EvoV2:
    return EvoV2(struct.unpack_from("<Q", data, 3)[0], data[11:].decode())


def codec(version: str) -> VersionedCodec:
    """The codec of one build."""
    if version == "1":
        return VersionedCodec("evo", TAG, 1, _enc1, {1: _dec1})
    if version == "2":
        return VersionedCodec("evo", TAG, 2, _enc2, {1: _dec1, 2: _dec2}, {1: lambda v: EvoV2(v.count)})
    if version == "2-no-v1":
        return VersionedCodec("evo", TAG, 2, _enc2, {2: _dec2})
    msg = f"LIVEREC_TEST_EVO_VERSION must be 1, 2 or 2-no-v1, got {version!r}"
    raise ValueError(msg)


def main() -> None:
    """Build and run the job (settings from LIVEREC_*)."""
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.datastream.functions import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    from pipeline.flink_env import stream_env
    from pipeline.settings import load_settings
    from pipeline.sources_sinks import bytes_sink, bytes_source

    version = os.environ.get("LIVEREC_TEST_EVO_VERSION", "1")

    class Count(KeyedProcessFunction):
        def open(self, ctx) -> None:  # noqa: ANN001
            self.codec = codec(version)
            self.state = ctx.get_state(ValueStateDescriptor("evo", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value, ctx):  # noqa: ANN001, ANN201
            blob = self.state.value()
            cur = self.codec.decode(bytes(blob)) if blob is not None else None
            if version == "1":
                new = EvoV1((cur.count if cur else 0) + 1)
                channel = "-"
            else:
                new = EvoV2((cur.count if cur else 0) + 1, cur.channel if cur else "web")
                channel = new.channel
            self.state.update(self.codec.encode(new))
            yield f"{ctx.get_current_key()},{new.count},{channel}".encode()

    s = load_settings()
    env = stream_env(s)
    src = env.from_source(bytes_source(s, "events", group_id=f"{s.topic_prefix}evo"), WatermarkStrategy.no_watermarks(),
                          "evo-source").uid("evo-source")
    out = (
        src.key_by(lambda b: bytes(b).decode(), key_type=Types.STRING())
        .process(Count(), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
        .name("evo-count")
        .uid("evo-count")
    )
    out.sink_to(bytes_sink(s, "user-counts", name="evo")).name("evo-sink").uid("evo-sink")
    env.execute(f"{s.topic_prefix}evo")


if __name__ == "__main__":
    main()

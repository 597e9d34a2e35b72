"""What the daemon and a destination's sender process (`python -m edged.restream.sender`) say
to each other; pure (no I/O).

Down the sender's stdin: length-prefixed frames, the first the session's spec (JSON: the
muxer's target with the key inside, the picture's geometry, the AAC config), then one per
packet (its kind, keyframe flag, pipeline, pts, dts, duration, time base, parameter sets and
bytes). Up its stdout: JSON lines, one per report (live, bytes sent, the failure).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from edged.media.packets import EncodedPacket
from edged.restream.feed import Item

LENGTH = struct.Struct("<I")
PACKET = struct.Struct("<BBIqqqIII")  # audio, keyframe, source, pts, dts, duration, tb, extra
MAX_FRAME = 64 * 1024 * 1024  # a frame longer than this is garbage: the sender fails ("wire")


@dataclass(frozen=True)
class Spec:
    target: str = field(repr=False)  # policy.tee_target: the key inside, never logged or shown
    width: int
    height: int
    fps: int
    audio_config: bytes  # AudioSpecificConfig (b"": no sound track)


def spec_frame(spec: Spec) -> bytes:
    body = json.dumps(
        {
            "target": spec.target,
            "width": spec.width,
            "height": spec.height,
            "fps": spec.fps,
            "audio_config": spec.audio_config.hex(),
        }
    ).encode()
    return LENGTH.pack(len(body)) + body


def read_spec(body: bytes) -> Spec:
    document = json.loads(body)
    return Spec(
        str(document["target"]),
        int(document["width"]),
        int(document["height"]),
        int(document["fps"]),
        bytes.fromhex(document["audio_config"]),
    )


def packet_frame(item: Item) -> bytes:
    packet = item.packet
    head = PACKET.pack(
        int(item.audio),
        int(packet.keyframe),
        item.source,
        packet.pts,
        packet.dts,
        packet.duration,
        packet.time_base.numerator,
        packet.time_base.denominator,
        len(item.extradata),
    )
    size = len(head) + len(item.extradata) + len(packet.data)
    return b"".join((LENGTH.pack(size), head, item.extradata, packet.data))


def frame_fits(item: Item) -> bool:
    """Whether a packet's frame is within MAX_FRAME (the sender refuses a longer one)."""
    return PACKET.size + len(item.extradata) + len(item.packet.data) <= MAX_FRAME


def read_packet(body: bytes) -> Item:
    audio, keyframe, source, pts, dts, duration, num, den, extra = PACKET.unpack_from(body)
    start = PACKET.size
    extradata = body[start : start + extra]
    data = body[start + extra :]
    packet = EncodedPacket(
        data, pts, dts, duration, Fraction(num, den), bool(keyframe), sequence=0, wallclock=0.0
    )
    return Item(packet, extradata, audio=bool(audio), source=source)


# -- reports, up the sender's stdout ------------------------------------------------------------


class Step:
    LIVE = "live"  # connected and published: packets are welcome
    BYTES = "bytes"  # bytes sent since the last report
    FAILED = "failed"  # the session failed: its stage and errno, or a setup problem


def report(step: str, **facts: Any) -> bytes:
    return (json.dumps({"step": step, **facts}) + "\n").encode()


@dataclass(frozen=True)
class Report:
    step: str
    audio: bool = False
    size: int = 0
    stage: str = ""  # "connect", "send" or "setup" (FAILED)
    code: int | None = None  # the errno (FAILED)
    problem: str = ""  # what the FFmpeg build lacks (setup), e.g. "tee"


def read_report(line: bytes) -> Report | None:
    """A report line, or None for anything else (never raises): a size is a non-negative
    integer, `audio` a boolean, the errno an integer."""
    try:
        document = json.loads(line)
        step = document["step"]
        size = document.get("size", 0)
        audio = document.get("audio", False)
        code = document.get("code")
        stage = document.get("stage", "")
        problem = document.get("problem", "")
    except Exception:  # garbled beyond JSON: nesting too deep, not an object
        return None
    if not all(isinstance(text, str) for text in (step, stage, problem)):
        return None
    if not _is_int(size) or size < 0 or not isinstance(audio, bool):
        return None
    return Report(
        step,
        audio=audio,
        size=size,
        stage=stage,
        code=code if _is_int(code) else None,
        problem=problem,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

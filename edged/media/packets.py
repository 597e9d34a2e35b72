"""Encoded packets as plain immutable data, and H.264 byte-stream helpers: pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_START_CODE = re.compile(b"\x00\x00\x01")
NAL_SPS = 7
NAL_PPS = 8
NAL_IDR = 5


@dataclass(frozen=True)
class EncodedPacket:
    """One access unit from the encoder; shared by every output, so never mutated."""

    data: bytes
    pts: int
    dts: int
    duration: int
    time_base: Fraction
    keyframe: bool
    sequence: int  # frame number since the stream started
    wallclock: float  # capture time (time.time()) of the frame

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)

    @property
    def end_seconds(self) -> float:
        """Where the packet's media ends, in seconds on its clock."""
        return float((self.pts + self.duration) * self.time_base)


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without their start codes."""
    starts = [match.end() for match in _START_CODE.finditer(data)]
    units = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(data)
        unit = data[start:end]
        units.append(unit.rstrip(b"\x00") if index + 1 < len(starts) else unit)
    return [unit for unit in units if unit]


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F if unit else -1


def split_parameter_sets(data: bytes) -> tuple[bytes, bytes]:
    """(SPS+PPS as Annex B, the rest) of a packet; hardware encoders (h264_v4l2m2m) send the
    parameter sets in a packet of their own instead of extradata."""
    parameter_sets: list[bytes] = []
    rest: list[bytes] = []
    for unit in nal_units(data):
        (parameter_sets if nal_type(unit) in (NAL_SPS, NAL_PPS) else rest).append(unit)
    join = b"".join
    return join(b"\x00\x00\x00\x01" + u for u in parameter_sets), join(
        b"\x00\x00\x00\x01" + u for u in rest
    )


def has_parameter_sets(data: bytes) -> bool:
    types = {nal_type(unit) for unit in nal_units(data)}
    return NAL_SPS in types and NAL_PPS in types


def with_parameter_sets(packet: EncodedPacket, extradata: bytes) -> bytes:
    """A keyframe with SPS/PPS in front (as every output wants: MP4 muxer, HLS, WebRTC)."""
    if packet.keyframe and extradata and not has_parameter_sets(packet.data):
        return extradata + packet.data
    return packet.data

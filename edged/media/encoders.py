"""H.264 encoders through PyAV: the candidates of a board, a probe that proves one works, and
the encoder wrapper that makes closed GOPs of a fixed length on every one of them.

A codec listed by FFmpeg proves nothing: a candidate is kept only after it encoded frames here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

import av
from av.codec.context import Flags
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from edged.errors import MediaError
from edged.media.packets import (
    EncodedPacket,
    has_parameter_sets,
    split_parameter_sets,
    with_parameter_sets,
)

logger = logging.getLogger(__name__)

LAST_RESORT = "libx264"
TIME_BASE = Fraction(1, 90_000)
PROBE_FRAMES = 8
HARDWARE = frozenset(
    {"h264_v4l2m2m", "h264_nvenc", "h264_qsv", "h264_amf", "h264_nvmpi", "h264_vaapi"}
)


@dataclass(frozen=True)
class EncoderSettings:
    width: int
    height: int
    fps: int
    bitrate: int
    gop_seconds: float = 1.0

    @property
    def gop_frames(self) -> int:
        return max(1, round(self.fps * self.gop_seconds))


@dataclass(frozen=True)
class ProbeResult:
    encoder: str
    ok: bool
    reason: str
    fps: float = 0.0  # frames per second the probe achieved
    hardware: bool = False


@dataclass(frozen=True)
class EncoderChoice:
    winner: str
    results: tuple[ProbeResult, ...] = field(default_factory=tuple)

    @property
    def hardware(self) -> bool:
        return self.winner in HARDWARE


def candidates(profile_encoders: Sequence[str]) -> list[str]:
    """The board's candidates in order, libx264 last as the resort that always exists."""
    ordered = [name for name in dict.fromkeys(profile_encoders) if name != LAST_RESORT]
    return [*ordered, LAST_RESORT]


def encoder_options(name: str, settings: EncoderSettings) -> dict[str, str]:
    gop = str(settings.gop_frames)
    if name == "libx264":
        return {
            "preset": "ultrafast" if settings.width * settings.height > 1280 * 720 else "veryfast",
            "tune": "zerolatency",
            "bframes": "0",
            "sc_threshold": "0",
            "forced-idr": "1",
            "keyint_min": gop,
        }
    if name == "h264_nvenc":
        return {"preset": "p1", "tune": "ll", "zerolatency": "1", "bf": "0", "forced-idr": "1"}
    if name == "h264_qsv":
        return {"preset": "veryfast", "look_ahead": "0", "bf": "0", "forced_idr": "1"}
    return {}


class Encoder:
    """One opened encoder. `encode` returns finished packets; a GOP starts every gop_seconds.
    `threads`: encoder threads (None: one per core; a clip job in the background asks for 1)."""

    def __init__(self, name: str, settings: EncoderSettings, threads: int | None = None) -> None:
        self.name = name
        self.settings = settings
        context = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
        context.width = settings.width
        context.height = settings.height
        context.pix_fmt = "yuv420p"  # the one format every H.264 encoder here takes (v4l2m2m too)
        context.time_base = TIME_BASE
        context.framerate = Fraction(settings.fps)
        context.bit_rate = settings.bitrate
        context.gop_size = settings.gop_frames * 10  # IDRs come from pict_type, on time
        context.max_b_frames = 0
        # One encoder thread per core: FFmpeg's automatic count oversubscribes a small board
        # (measured on 2 cores: 8.3 -> 6.7 ms per 1080p frame).
        context.thread_count = threads or os.cpu_count() or 1
        if name != "h264_v4l2m2m":  # it cannot make global headers; see _parameter_sets
            context.flags |= Flags.global_header
        context.options = encoder_options(name, settings)
        context.open()
        self._context = context
        self.extradata = bytes(context.extradata or b"")
        self._next_gop_at: int | None = None
        self._gop_ticks = round(settings.gop_seconds / TIME_BASE)
        self._sequence = 0
        self._pending: dict[int, tuple[int, float]] = {}  # pts -> (sequence, wallclock)
        self.force_keyframe = False

    def encode(self, frame: av.VideoFrame, pts: int, wallclock: float) -> list[EncodedPacket]:
        """Encode one frame shown at `pts` (90 kHz); closed GOPs start on time."""
        if (frame.width, frame.height, frame.format.name) != (
            self.settings.width,
            self.settings.height,
            "yuv420p",
        ):
            frame = frame.reformat(self.settings.width, self.settings.height, "yuv420p")
        keyframe = self._next_gop_at is None or pts >= self._next_gop_at or self.force_keyframe
        if keyframe:
            self._next_gop_at = pts + self._gop_ticks - self._gop_ticks // (2 * self.settings.fps)
            self.force_keyframe = False
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._pending[pts] = (self._sequence, wallclock)
        self._sequence += 1
        return self._collect(self._context.encode(frame))

    def flush(self) -> list[EncodedPacket]:
        return self._collect(self._context.encode(None))

    def _collect(self, packets: list[av.Packet]) -> list[EncodedPacket]:
        out = []
        for packet in packets:
            data = bytes(packet)
            if not self.extradata and has_parameter_sets(data):
                self.extradata, data = split_parameter_sets(data)
                if not data:
                    continue
            pts = packet.pts if packet.pts is not None else 0
            sequence, wallclock = self._pending.pop(pts, (self._sequence - 1, time.time()))
            out.append(
                EncodedPacket(
                    data=data,
                    pts=pts,
                    dts=packet.dts if packet.dts is not None else pts,
                    duration=round(1 / (self.settings.fps * TIME_BASE)),
                    time_base=TIME_BASE,
                    keyframe=bool(packet.is_keyframe),
                    sequence=sequence,
                    wallclock=wallclock,
                )
            )
        return out


def as_av_packet(packet: EncodedPacket, extradata: bytes, stream: Any) -> av.Packet:
    """An `av.Packet` for a muxer's stream (keyframes carry SPS/PPS in front)."""
    out = av.Packet(with_parameter_sets(packet, extradata))
    out.stream = stream
    out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
    out.time_base = TIME_BASE
    out.is_keyframe = packet.keyframe
    return out


def as_audio_packet(packet: EncodedPacket, stream: Any) -> av.Packet:
    """An `av.Packet` of sound for a muxer's stream, on the packet's own clock."""
    out = av.Packet(packet.data)
    out.stream = stream
    out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
    out.time_base = packet.time_base
    return out


def probe(name: str, settings: EncoderSettings) -> ProbeResult:
    """Open `name` and encode a few frames at the target settings; the verdict and its reason."""
    hardware = name in HARDWARE
    if name not in av.codecs_available:
        return ProbeResult(name, False, "not in this FFmpeg build", hardware=hardware)
    try:
        encoder = Encoder(name, settings)
        frame = av.VideoFrame(settings.width, settings.height, "yuv420p")
        packets = []
        start = time.perf_counter()
        step = round(1 / (settings.fps * TIME_BASE))
        for index in range(PROBE_FRAMES):
            packets += encoder.encode(frame, index * step, time.time())
        packets += encoder.flush()
        elapsed = time.perf_counter() - start
    except (av.FFmpegError, OSError, ValueError) as error:
        return ProbeResult(name, False, f"failed to open or encode: {error}", hardware=hardware)
    if not packets or not packets[0].keyframe:
        return ProbeResult(name, False, "opened but produced no keyframe", hardware=hardware)
    if not encoder.extradata:
        return ProbeResult(name, False, "produced no SPS/PPS parameter sets", hardware=hardware)
    fps = PROBE_FRAMES / elapsed if elapsed > 0 else 0.0
    return ProbeResult(name, True, f"encoded {len(packets)} packets", round(fps, 1), hardware)


def choose(
    profile_encoders: tuple[str, ...] | list[str], settings: EncoderSettings
) -> EncoderChoice:
    """Probe candidates in order; the first that works wins (blocking: run it in a thread)."""
    results = []
    for name in candidates(profile_encoders):
        result = probe(name, settings)
        results.append(result)
        if result.ok:
            for rejected in results[:-1]:
                logger.info("encoder %s rejected: %s", rejected.encoder, rejected.reason)
            return EncoderChoice(name, tuple(results))
    reasons = "; ".join(f"{r.encoder}: {r.reason}" for r in results)
    raise MediaError(f"no H.264 encoder works on this box ({reasons})")

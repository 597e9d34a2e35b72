"""One publishing session: FLV over RTMP(S) through PyAV, the encoder's packets as they are.
Blocking (connects, writes to the network), and PyAV holds the GIL while it connects: only a
destination's sender process (edged.restream.sender) uses it.

The H.264 keyframes carry their SPS/PPS in front; the FLV muxer (through FFmpeg's automatic
extract_extradata) makes the AVC sequence header from the first one, so a player (and a
platform) decodes from the start. The AAC track is declared by an AAC encoder of the stream's
rate and layout, which gives the muxer the same AudioSpecificConfig; it encodes nothing.
Timestamps start at 0 at the first picture written (a keyframe: the feed starts at one).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from edged.media.encoders import TIME_BASE, as_audio_packet, as_av_packet
from edged.media.live import aac_lc_config
from edged.restream.feed import Item
from edged.restream.policy import continued_origin, rebased

# The muxer holds a track back at most this long waiting for the other (a sound that stops
# must not hold the pictures).
INTERLEAVE_MICROSECONDS = 300_000


@dataclass(frozen=True)
class Geometry:
    width: int
    height: int
    fps: int


class FlvSession:
    """FLV to the tee muxer's `target` (policy.tee_target). `open()` connects and publishes
    (raises av.FFmpegError or OSError), `write()` sends one item and says how many bytes,
    `close()` ends it (idempotent, never raises)."""

    def __init__(self, target: str, geometry: Geometry, audio_config: bytes) -> None:
        self._target = target  # policy.tee_target: the key inside, never logged or shown
        self._geometry = geometry
        self._origin = Fraction(0)  # set by the first picture written
        self._audio_config = audio_config
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._last_audio: int | None = None
        self._source: int | None = None  # the pipeline the packets come from
        self._video_end = Fraction(0)  # where the last picture sent ends, on the session's clock

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def open(self) -> None:
        container: Any = av.open(
            self._target,
            "w",
            format="tee",
            options={"max_interleave_delta": str(INTERLEAVE_MICROSECONDS)},
        )
        self._container = container
        width, height, fps = (
            self._geometry.width,
            self._geometry.height,
            self._geometry.fps,
        )
        self._video = container.add_mux_stream("h264", rate=fps, width=width, height=height)
        self._video.time_base = TIME_BASE
        sound = aac_lc_config(self._audio_config) if self._audio_config else None
        if sound is not None:
            rate, channels = sound
            layout = "stereo" if channels == 2 else "mono"
            self._audio = container.add_stream("aac", rate=rate, layout=layout)
            self._audio.time_base = Fraction(1, rate)
        container.start_encoding()  # connects, publishes, writes the FLV header

    def write(self, item: Item) -> int:
        """Send one packet (0 bytes: not sent, as sound before the first picture)."""
        if item.audio:
            return self._write_audio(item)
        packet = item.packet
        if item.source != self._source:
            if self._source is None:  # the session's first picture: 0 on its clock
                self._origin = packet.dts * TIME_BASE
            else:  # a restarted stream: its clock goes on from here
                self._origin = continued_origin(packet.dts * TIME_BASE, self._video_end)
            self._source = item.source
        pts = rebased(packet.pts, TIME_BASE, self._origin)
        dts = rebased(packet.dts, TIME_BASE, self._origin)
        if pts is None or dts is None:
            return 0
        out = as_av_packet(packet, item.extradata, self._video)
        out.pts, out.dts = pts, dts
        self._container.mux(out)
        self._video_end = max(self._video_end, (pts + packet.duration) * TIME_BASE)
        return out.size

    def _write_audio(self, item: Item) -> int:
        if self._audio is None or item.source != self._source:
            return 0  # no sound track, or sound of a pipeline whose pictures are not here
        packet = item.packet
        pts = rebased(packet.pts, packet.time_base, self._origin)
        if pts is None or (self._last_audio is not None and pts <= self._last_audio):
            return 0
        self._last_audio = pts
        out = as_audio_packet(packet, self._audio)
        out.pts = out.dts = pts
        self._container.mux(out)
        return out.size

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                container.close()

"""Opus for the WebRTC viewers, encoded once per stream in its audio thread (PyAV's libopus).

`OpusStage` takes the same stamped PCM the AAC encoder takes and re-buffers it into 20 ms Opus
frames (960 samples at 48 kHz, stereo) on the same clock: a packet's pts, in 1/48000, is its
first sample's time on the video's clock (less the encoder's look-ahead, as FFmpeg stamps it).
The encoder exists only while someone listens: `stop()` drops it, the next `feed` makes it anew.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from fractions import Fraction
from typing import cast

import av
from av.audio.codeccontext import AudioCodecContext

from edged.media.audio import LAYOUT
from edged.media.packets import EncodedPacket

OPUS_CODEC = "libopus"
OPUS_RATE = 48_000  # Opus over RTP is always 48 kHz (RFC 7587)
OPUS_FRAME = 960  # 20 ms, the frame WebRTC peers expect
OPUS_BITRATE = 96_000  # stereo stage sound, well under a LAN's care
OPUS_FORMAT = "flt"  # libopus takes interleaved samples (s16 or flt)
TIME_BASE = Fraction(1, OPUS_RATE)


def encoded_packets(
    packets: Iterable[av.Packet], time_base: Fraction, frame: int, sequence: int
) -> list[EncodedPacket]:
    """An audio encoder's packets as `EncodedPacket`s, numbered from `sequence`; each decodes
    alone (a keyframe), lasts `frame` samples unless FFmpeg says otherwise, and has its dts at
    its pts unless FFmpeg says otherwise (AAC here and Opus both)."""
    out = []
    for number, packet in enumerate(packets, sequence):
        pts = packet.pts if packet.pts is not None else 0
        out.append(
            EncodedPacket(
                data=bytes(packet),
                pts=pts,
                dts=packet.dts if packet.dts is not None else pts,
                duration=packet.duration or frame,
                time_base=time_base,
                keyframe=True,
                sequence=number,
                wallclock=time.time(),
            )
        )
    return out


class OpusEncoder:
    """libopus (or `codec`) at 48 kHz stereo, `OPUS_FRAME` samples a frame; every packet decodes
    alone (so each is a keyframe for the viewers' feeds)."""

    def __init__(self, bitrate: int = OPUS_BITRATE, codec: str = OPUS_CODEC) -> None:
        context = cast(AudioCodecContext, av.CodecContext.create(codec, "w"))
        context.sample_rate = OPUS_RATE
        context.layout = LAYOUT
        context.format = OPUS_FORMAT
        context.bit_rate = bitrate
        context.time_base = TIME_BASE
        context.options = {"application": "audio", "frame_duration": "20"}
        context.open()
        self._context = context
        self._sequence = 0

    def encode(self, frame: av.AudioFrame) -> list[EncodedPacket]:
        out = encoded_packets(self._context.encode(frame), TIME_BASE, OPUS_FRAME, self._sequence)
        self._sequence += len(out)
        return out


def opus_pts(pts: int, rate: int) -> int:
    """A pts counted in samples at `rate` as a pts at 48 kHz."""
    return pts if rate == OPUS_RATE else round(pts * OPUS_RATE / rate)


class OpusStage:
    """The stream's PCM (frames of any length at `rate`, each with the pts of its first sample)
    as Opus packets. A frame that does not follow the last one (the timeline started again)
    starts the re-buffering again at its pts; the samples held before it are dropped. `codec`
    is FFmpeg's name of the encoder (libopus; a test names one that does not exist)."""

    def __init__(self, rate: int, codec: str = OPUS_CODEC) -> None:
        self.rate = rate
        self.codec = codec
        self._encoder: OpusEncoder | None = None
        self._next_pts: int | None = None  # the pts (at `rate`) the next frame should have
        self._restart(0)  # its resampler, its fifo and the pts (at 48 kHz) of the fifo's head

    @property
    def running(self) -> bool:
        return self._encoder is not None

    def feed(self, frame: av.AudioFrame, pts: int) -> list[EncodedPacket]:
        """Take a frame (its pts and time base are overwritten); the packets now whole."""
        if self._encoder is None:
            self._encoder = OpusEncoder(codec=self.codec)
        if pts != self._next_pts:
            self._restart(pts)
        self._next_pts = pts + frame.samples
        frame.pts = None
        for part in self._resampler.resample(frame):
            part.pts = None
            self._fifo.write(part)
        packets: list[EncodedPacket] = []
        while self._fifo.samples >= OPUS_FRAME:
            chunk = self._fifo.read(OPUS_FRAME)
            if chunk is None:
                break
            chunk.pts, chunk.time_base = self._head_pts, TIME_BASE
            self._head_pts += OPUS_FRAME
            packets.extend(self._encoder.encode(chunk))
        return packets

    def stop(self) -> None:
        """Nobody listens: drop the encoder and what waits for it (no flush: nobody wants it)."""
        self._encoder = None
        self._next_pts = None

    def _restart(self, pts: int) -> None:
        self._resampler = av.AudioResampler(OPUS_FORMAT, LAYOUT, OPUS_RATE)
        self._fifo = av.AudioFifo()
        self._head_pts = opus_pts(pts, self.rate)

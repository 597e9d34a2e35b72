"""A stream's sound through PyAV: the ALSA input (or a lavfi stand-in), resampled, re-buffered
into AAC frames, stamped on the video's clock (audio.py's `AudioTimeline`) and encoded once; the
same stamped frames encoded once more as Opus for the WebRTC viewers (opus.py) while any listen;
the level of what the source delivers (and the silence filling its gaps) each second (level.py).

One thread per stream does it all (an AAC frame costs well under a millisecond); it never touches
the video: a source that fails or ends only reports why, and the stream goes on without sound.
The recordings' AAC never depends on the extras: an Opus stage or a level meter that fails is
logged once and stops for the life of the thread, the sound goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
from av.audio.codeccontext import AudioCodecContext
from av.codec.context import Flags

from edged.errors import MediaError
from edged.media.audio import LAYOUT, AudioSpec, AudioTimeline
from edged.media.level import SAMPLE_BYTES, LevelMeter, peak
from edged.media.opus import OpusStage, encoded_packets
from edged.media.packets import EncodedPacket

logger = logging.getLogger(__name__)

AAC_FRAME = 1024  # samples per AAC-LC frame
SAMPLE_FORMAT = "fltp"  # what FFmpeg's native AAC encoder takes
OPEN_TIMEOUT_SECONDS = 5.0
# A stop reads on until the sound reaches the video's end (a source delivers it in real time, or
# at once when this thread had fallen behind), at most this much longer.
STOP_WAIT_SECONDS = 1.0
# The source's buffers are gathered to this much sound before they are resampled, placed, metered
# and encoded: the work after each wake of the thread costs several times its warm cost, and a
# sound card read through FFmpeg delivers its smallest period (about 1 ms on USB audio).
GATHER_SECONDS = 0.04


def open_audio(spec: AudioSpec) -> av.container.InputContainer:
    """Open the ALSA device or the lavfi graph (blocking)."""
    try:
        if spec.kind == "alsa":
            options = {"sample_rate": str(spec.sample_rate)}
            return av.open(
                spec.location, format="alsa", options=options, timeout=OPEN_TIMEOUT_SECONDS
            )
        return av.open(spec.location, format="lavfi")
    except (av.FFmpegError, OSError) as error:
        raise MediaError(f"cannot open audio {spec.label}: {error}") from error


class AacEncoder:
    """FFmpeg's native AAC-LC encoder; `encode` takes AAC_FRAME samples stamped with their pts."""

    def __init__(self, spec: AudioSpec) -> None:
        context: AudioCodecContext = av.CodecContext.create("aac", "w")
        context.sample_rate = spec.sample_rate
        context.layout = LAYOUT
        context.format = SAMPLE_FORMAT
        context.bit_rate = spec.bitrate
        context.time_base = Fraction(1, spec.sample_rate)
        context.flags |= Flags.global_header
        context.open()
        self._context = context
        self.time_base = Fraction(1, spec.sample_rate)
        self.extradata = bytes(context.extradata or b"")
        self._sequence = 0

    def encode(self, frame: av.AudioFrame | None) -> list[EncodedPacket]:
        packets = self._context.encode(frame)
        out = encoded_packets(packets, self.time_base, AAC_FRAME, self._sequence)
        self._sequence += len(out)
        return out


def silence(samples: int, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame(format=SAMPLE_FORMAT, layout=LAYOUT, samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = rate
    return frame


def may_stop(reached: float | None, until: float | None, now: float, deadline: float) -> bool:
    """Whether a stopping audio thread stops reading: its sound, stamped up to `reached` seconds,
    has reached `until` (the video's end), there is nothing to wait for, or it is `deadline`."""
    if reached is None or until is None:
        return True
    return reached >= until or now >= deadline


def never() -> bool:
    return False


class AudioCapture:
    """The audio thread of one stream.

    `origin()` is the monotonic time of the video's pts 0 (None until the first video frame);
    `deliver` gets each AAC packet, `dropped(stage, samples)` each loss (in samples at the
    stream's rate), `failed(reason)` the end of a source that was not asked to stop;
    `deliver_opus` each Opus packet of `opus` (an `OpusStage`, libopus unless given) while
    `opus_wanted()` says someone listens; `level(dbfs)` the peak of each second of sound. All are
    called in this thread.
    """

    def __init__(
        self,
        stream: str,
        spec: AudioSpec,
        origin: Callable[[], float | None],
        deliver: Callable[[EncodedPacket, bytes], None],
        dropped: Callable[[str, int], None],
        failed: Callable[[str], None],
        *,
        deliver_opus: Callable[[EncodedPacket], None] | None = None,
        opus_wanted: Callable[[], bool] = never,
        level: Callable[[float], None] | None = None,
        opus: OpusStage | None = None,
    ) -> None:
        self.stream = stream
        self.spec = spec
        self._origin = origin
        self._deliver = deliver
        self._dropped = dropped
        self._failed = failed
        self._deliver_opus = deliver_opus
        self._opus_wanted = opus_wanted
        self._opus = opus if opus is not None else OpusStage(spec.sample_rate)
        self._opus_failed = False  # Opus failed once: never again in this thread's life
        self._level = level
        self._meter = LevelMeter(spec.sample_rate)
        self._stopping = threading.Event()
        self._until: float | None = None  # where a stop lets the sound end (the video's end)
        self._stop_deadline = 0.0
        self._timeline = AudioTimeline(spec.sample_rate)
        self._fifo = av.AudioFifo()
        self._gathered = av.AudioFifo()  # the source's buffers, as delivered, until GATHER_SECONDS
        self._gather = round(GATHER_SECONDS * spec.sample_rate)
        self._gathered_end = 0.0  # when the newest gathered buffer came (seconds on the clock)
        self._resampler = av.AudioResampler(SAMPLE_FORMAT, LAYOUT, spec.sample_rate)
        self._head_pts = 0  # the pts of the first sample in the fifo
        self._encoder: AacEncoder | None = None
        self._thread = threading.Thread(target=self._run, name=f"audio-{stream}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, until: float | None = None) -> None:
        """Stop reading once the sound reaches `until` (seconds on the clock: the video's end, so
        the last pictures keep their sound), at most STOP_WAIT_SECONDS from now; wait for the
        thread (blocking: call it in a thread)."""
        self._until = until
        self._stop_deadline = time.monotonic() + STOP_WAIT_SECONDS
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        try:
            reason = self._capture()
        except Exception as error:  # a bug, not the source: logged whole, and the loss reported
            logger.exception("stream %s: the audio thread failed", self.stream)
            reason = f"audio thread failed ({type(error).__name__}, see the log)"
        if reason != "stopped" and not self._stopping.is_set():
            self._failed(reason)

    def _capture(self) -> str:
        """Read, encode and deliver until stopped or the source ends or fails: why it ended."""
        try:
            source = open_audio(self.spec)
        except MediaError as error:
            return str(error)
        reason = "stopped"
        try:
            self._encoder = AacEncoder(self.spec)
            for frame in source.decode(audio=0):
                origin = self._origin()
                if origin is not None:  # before the first video frame there is no clock yet
                    self._gather_frame(frame, time.monotonic() - origin)
                if self._stopping.is_set() and self._may_stop():
                    break
            else:
                reason = "audio source ended"
            if reason == "stopped":
                self._flush()  # the sound of the last frames is still in the encoder
        except (av.FFmpegError, OSError, ValueError, MediaError) as error:
            reason = f"audio source failed: {error}"
        finally:
            source.close()
        return reason

    def _may_stop(self) -> bool:
        self._take_gathered()  # the sound gathered counts towards the end
        placed = self._timeline.next_pts
        reached = None if placed is None else placed / self.spec.sample_rate
        return may_stop(reached, self._until, time.monotonic(), self._stop_deadline)

    def _gather_frame(self, frame: av.AudioFrame, end: float) -> None:
        """Keep a captured buffer; take what was gathered once it is GATHER_SECONDS long."""
        frame.pts = None
        self._gathered.write(frame)
        self._gathered_end = end
        if self._gathered.samples >= self._gather:
            self._take_gathered()

    def _take_gathered(self) -> None:
        if self._gathered.samples and (frame := self._gathered.read()) is not None:
            self._take(frame, self._gathered_end)

    def _take(self, frame: av.AudioFrame, end: float) -> None:
        """Resample one captured buffer, place it on the timeline, encode whole AAC frames."""
        frame.pts = None
        frames = self._resampler.resample(frame)
        samples = sum(part.samples for part in frames)
        if not samples:
            return
        stamp = self._timeline.place(end, samples, self._fifo.samples)
        self._measure(stamp.silence, frames)
        if stamp.restart:
            if self._fifo.samples:
                self._dropped("sync", self._fifo.samples)
                self._fifo.read(self._fifo.samples)
            self._head_pts = stamp.start - stamp.silence
        if stamp.missing:
            self._dropped("capture", stamp.missing)
        if stamp.silence:
            self._fifo.write(silence(stamp.silence, self.spec.sample_rate))
        for part in frames:
            part.pts = None
            self._fifo.write(part)
        if stamp.drop:
            self._fifo.read(stamp.drop)
            self._dropped("sync", stamp.drop)
        self._encode_whole_frames()

    def _encode_whole_frames(self) -> None:
        if self._encoder is None or not self._timeline.settled:
            return  # the first half second waits: a late start is corrected in its silence
        while self._fifo.samples >= AAC_FRAME:
            chunk = self._fifo.read(AAC_FRAME)
            if chunk is None:
                return
            pts = chunk.pts = self._head_pts
            chunk.time_base = self._encoder.time_base
            self._head_pts += AAC_FRAME
            for packet in self._encoder.encode(chunk):
                self._deliver(packet, self._encoder.extradata)
            self._encode_opus(chunk, pts)

    def _encode_opus(self, chunk: av.AudioFrame, pts: int) -> None:
        """The AAC frame just encoded, as Opus too while a WebRTC viewer listens; after Opus
        failed, each frame a viewer does not hear is counted lost ("opus")."""
        if self._deliver_opus is None:
            return
        samples = chunk.samples
        try:
            if not self._opus_wanted():
                if self._opus.running:
                    self._opus.stop()
            elif self._opus_failed:
                self._dropped("opus", samples)
            else:
                for packet in self._opus.feed(chunk, pts):
                    self._deliver_opus(packet)
        except Exception:  # libopus missing, a bad frame: the recordings' sound goes on
            logger.exception(
                "stream %s: Opus failed; WebRTC viewers get no sound until the stream restarts",
                self.stream,
            )
            self._opus_failed = True
            self._opus.stop()
            self._dropped("opus", samples)

    def _measure(self, silence: int, frames: list[av.AudioFrame]) -> None:
        """The level of the sound: the peak of each second (level.py) of the `silence` that
        fills a gap before the source's buffer, then of what the source delivered."""
        if self._level is None:
            return
        try:
            if silence and (level := self._meter.add(silence, 0.0)) is not None:
                self._level(level)
            for part in frames:
                size = part.samples * SAMPLE_BYTES
                # One peak over every channel's samples: a fixed cost per call, not per plane.
                amplitude = peak(b"".join(memoryview(plane)[:size] for plane in part.planes))
                level = self._meter.add(part.samples, amplitude)
                if level is not None:
                    self._level(level)
        except Exception:  # the meter is an extra: the recordings' sound goes on without it
            logger.exception(
                "stream %s: the level meter failed; no level until the stream restarts",
                self.stream,
            )
            self._level = None

    def _flush(self) -> None:
        """Encode what the fifo holds (its last frame padded with silence), drain the encoder."""
        if self._encoder is None or self._timeline.next_pts is None:
            return
        short = -self._fifo.samples % AAC_FRAME
        if short:
            self._fifo.write(silence(short, self.spec.sample_rate))
        self._timeline.settled = True
        self._encode_whole_frames()
        for packet in self._encoder.encode(None):
            self._deliver(packet, self._encoder.extradata)

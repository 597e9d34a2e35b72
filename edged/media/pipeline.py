"""One stream: capture thread -> bounded frame queue -> encoder thread -> fan-out to outputs.

Every frame is counted where it goes: captured, encoded, or dropped with its stage. No stage can
stall another: a full queue drops (and counts) instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Protocol, runtime_checkable

import av

from edged.errors import MediaError
from edged.media.audio import AudioSpec
from edged.media.audio_capture import AudioCapture
from edged.media.encoders import TIME_BASE, Encoder
from edged.media.level import FLOOR_DBFS
from edged.media.packets import EncodedPacket
from edged.media.sources import Source
from edged.metrics import StreamMetrics

logger = logging.getLogger(__name__)

FRAME_QUEUE_SIZE = 8
RATE_WINDOW_SECONDS = 5.0
# A frame whose wall-clock stamp is this far from the wall clock read at its capture means the
# clock stepped (NTP reached a box that booted to a saved time) or the source fell behind.
WALL_CLOCK_TOLERANCE_SECONDS = 2.0
AUDIO_STAGES = ("capture", "sync", "output", "opus")  # where audio samples are lost (metrics.py)


class StreamState(StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


class Output(Protocol):
    """A consumer of encoded packets; `offer` never blocks and says whether it took the packet."""

    name: str

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class AudioOutput(Protocol):
    """An output that also takes the stream's AAC packets (the recorder); `offer_audio` never
    blocks. `end_audio` says the sound is gone for good (the stream goes on video-only)."""

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool: ...

    def end_audio(self) -> None: ...


@runtime_checkable
class OpusOutput(Protocol):
    """An output that takes the stream's Opus packets (the live hub, for its WebRTC viewers);
    `offer_opus` never blocks. Opus is encoded only while some output's `audio_viewers` is not
    empty (read from the audio thread: a length, atomic)."""

    @property
    def audio_viewers(self) -> Collection[object]: ...

    def offer_opus(self, packet: EncodedPacket) -> bool: ...


@dataclass(frozen=True)
class FrameCounts:
    captured: int
    encoded: int
    dropped_capture: int
    dropped_encode: int
    dropped_output: int
    encoded_bytes: int


class _Tally:
    """Exact counters shared by the threads; the Prometheus series follow them."""

    def __init__(self, stream: str, metrics: StreamMetrics) -> None:
        self._lock = threading.Lock()
        self._stream = stream
        self._metrics = metrics
        self.captured = self.encoded = self.encoded_bytes = 0
        self.dropped = {"capture": 0, "encode": 0, "output": 0}
        self._window: deque[tuple[float, int]] = deque()

    def capture(self) -> None:
        with self._lock:
            self.captured += 1
        self._metrics.captured.labels(self._stream).inc()

    def drop(self, stage: str, frames: int = 1) -> None:
        with self._lock:
            self.dropped[stage] += frames
        self._metrics.dropped.labels(self._stream, stage).inc(frames)

    def encode(self, size: int, now: float) -> None:
        with self._lock:
            self.encoded += 1
            self.encoded_bytes += size
            self._window.append((now, size))
            while self._window and self._window[0][0] < now - RATE_WINDOW_SECONDS:
                self._window.popleft()
            frames, total = len(self._window), sum(size for _, size in self._window)
            span = max(now - self._window[0][0], 1e-3) if frames > 1 else RATE_WINDOW_SECONDS
        self._metrics.encoded.labels(self._stream).inc()
        self._metrics.encoded_bytes.labels(self._stream).inc(size)
        if frames > 1:
            self._metrics.fps.labels(self._stream).set(round((frames - 1) / span, 2))
            self._metrics.bitrate.labels(self._stream).set(round(total / span))

    def snapshot(self) -> FrameCounts:
        with self._lock:
            return FrameCounts(
                self.captured,
                self.encoded,
                self.dropped["capture"],
                self.dropped["encode"],
                self.dropped["output"],
                self.encoded_bytes,
            )


def missing_frames(previous: float | None, current: float | None, fps: float) -> int:
    """Frames the source skipped between two timestamps, judged against its nominal rate."""
    if previous is None or current is None or fps <= 0:
        return 0
    return max(round((current - previous) * fps) - 1, 0)


def samples_at(duration: int, time_base: Fraction, rate: int) -> int:
    """A duration counted in `time_base` as samples at `rate` (an Opus packet's 1/48000 as the
    stream's samples, which the audio loss counters count)."""
    return round(duration * time_base * rate)


def wall_anchor(anchor: float, timestamp: float, now: float, tolerance: float) -> float:
    """The wall-clock time of the source's time 0, re-read when the wall clock has left it.

    A frame is stamped `anchor + timestamp`; while that stays within `tolerance` of the wall
    clock (`now`, read at capture) the anchor holds, so stamps keep the source's even spacing.
    After a step of the wall clock the anchor follows it, so names and dates follow the clock
    without a restart; the media's own timestamps (durations) are untouched.
    """
    if abs(anchor + timestamp - now) > tolerance:
        return now - timestamp
    return anchor


class StreamPipeline:
    """A running stream; `start()` launches its threads, `stop()` drains and joins them."""

    def __init__(
        self,
        name: str,
        open_source: Callable[[], Source],
        make_encoder: Callable[[], Encoder],
        metrics: StreamMetrics,
        *,
        frame_queue_size: int = FRAME_QUEUE_SIZE,
        audio: AudioSpec | None = None,
    ) -> None:
        self.name = name
        self._open_source = open_source
        self._make_encoder = make_encoder
        self._metrics = metrics
        self._tally = _Tally(name, metrics)
        self._frames: queue.Queue[tuple[av.VideoFrame, int, float] | None] = queue.Queue(
            frame_queue_size
        )
        self._stopping = threading.Event()
        self._stop_called = False
        self._outputs: list[Output] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self.state = StreamState.STARTING
        self.reason = ""
        self.extradata = b""
        self.encoder_name = ""
        self.decimation = 1  # thermal step-down: encode one frame in N
        self._ended = asyncio.Event()
        self._keyframe_wanted = threading.Event()
        self.audio = audio
        self.audio_failure = ""  # why the stream went video-only
        self._audio_outputs: list[AudioOutput] = []
        self._opus_outputs: list[OpusOutput] = []
        self._audio_capture: AudioCapture | None = None
        self._audio_drops_lock = threading.Lock()
        self.audio_dropped: dict[str, int] = {}  # samples, by stage
        self._origin: float | None = None  # monotonic time of pts 0: the audio's clock too
        self._video_end: int | None = None  # pts: the end of the last frame fanned out
        metrics.stream(name)
        if audio is not None:
            for stage in AUDIO_STAGES:
                metrics.audio_dropped.labels(name, stage)
        else:  # the card of the stream before (unplugged since) must not leave its last level
            metrics.audio_level.remove(name)

    # -- control (event loop) ------------------------------------------------------------------

    def add_output(self, output: Output) -> None:
        self._outputs = [*self._outputs, output]
        if isinstance(output, AudioOutput):
            self._audio_outputs = [*self._audio_outputs, output]
        if isinstance(output, OpusOutput):
            self._opus_outputs = [*self._opus_outputs, output]

    def remove_output(self, output: Output) -> None:
        self._outputs = [o for o in self._outputs if o is not output]
        self._audio_outputs = [o for o in self._audio_outputs if o is not output]  # type: ignore[comparison-overlap]
        self._opus_outputs = [o for o in self._opus_outputs if o is not output]  # type: ignore[comparison-overlap]

    @property
    def has_sound(self) -> bool:
        """The stream has a sound source that has not failed (yet)."""
        return self.audio is not None and not self.audio_failure

    @property
    def counts(self) -> FrameCounts:
        return self._tally.snapshot()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ended.clear()
        for target, role in ((self._capture, "capture"), (self._encode, "encode")):
            thread = threading.Thread(target=target, name=f"{role}-{self.name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if self.audio is not None:
            self._audio_capture = AudioCapture(
                self.name,
                self.audio,
                lambda: self._origin,
                lambda packet, extradata: self._call(self._fan_out_audio, packet, extradata),
                self._audio_dropped,
                lambda reason: self._call(self._end_audio, reason),
                deliver_opus=lambda packet: self._call(self._fan_out_opus, packet),
                opus_wanted=self._opus_wanted,
                level=self._set_level,
            )
            self._audio_capture.start()

    async def stop(self) -> None:
        """Stop capturing, encode what is queued, flush the encoder, close the outputs (once)."""
        if self._stop_called:
            return
        self._stop_called = True
        self._stopping.set()
        await self._ended.wait()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10)
        self._threads = []
        if self._audio_capture is not None:  # its sound up to the last frame's end, then stop
            until = None if self._video_end is None else float(self._video_end * TIME_BASE)
            await asyncio.to_thread(self._audio_capture.stop, until)
        self._metrics.audio_level.remove(self.name)  # a stopped stream is not listened to
        for output in self._outputs:
            await asyncio.to_thread(output.close)
        self._set_state(StreamState.STOPPED, "stopped")
        counts = self.counts
        logger.info(
            "stream %s final counts: captured %d, encoded %d, dropped capture %d, encode %d, "
            "output %d",
            self.name,
            counts.captured,
            counts.encoded,
            counts.dropped_capture,
            counts.dropped_encode,
            counts.dropped_output,
        )

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def _set_state(self, state: StreamState, reason: str) -> None:
        if state is not self.state:
            logger.info("stream %s: %s -> %s (%s)", self.name, self.state, state, reason)
        self.state, self.reason = state, reason
        self._metrics.up.labels(self.name).set(1 if state is StreamState.UP else 0)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us at shutdown
            self._loop.call_soon_threadsafe(callback, *args)

    # -- capture thread ------------------------------------------------------------------------

    def _capture(self) -> None:
        try:
            source = self._open_source()
        except MediaError as error:
            logger.error("stream %s: %s", self.name, error)
            self._call(self._set_state, StreamState.DOWN, str(error))
            self._frames.put(None)
            return
        fps = source.nominal_fps
        previous: float | None = None
        started = time.monotonic()  # for a source without timestamps
        anchor: float | None = None  # the wall-clock time of the source's time 0
        reanchored = False
        index = 0
        try:
            for frame, seconds in source.frames():
                if self._stopping.is_set():
                    break
                self._tally.capture()
                gap = missing_frames(previous, seconds, fps)
                if gap:
                    self._tally.drop("capture", gap)
                previous = seconds if seconds is not None else previous
                timestamp = seconds if seconds is not None else time.monotonic() - started
                now = time.time()
                if anchor is None:
                    anchor, self._origin = now - timestamp, time.monotonic() - timestamp
                moved = wall_anchor(anchor, timestamp, now, WALL_CLOCK_TOLERANCE_SECONDS)
                if moved != anchor:
                    logger.log(
                        logging.DEBUG if reanchored else logging.INFO,
                        "stream %s: frames now stamped %+.1f s from before (the wall clock "
                        "stepped or the source fell behind)",
                        self.name,
                        moved - anchor,
                    )
                    anchor, reanchored = moved, True
                pts = round(timestamp / TIME_BASE)
                if index % self.decimation:
                    self._tally.drop("encode")
                else:
                    try:
                        self._frames.put_nowait((frame, pts, anchor + timestamp))
                    except queue.Full:
                        self._tally.drop("encode")
                index += 1
            reason = "stopped" if self._stopping.is_set() else "source ended"
        except (av.FFmpegError, OSError) as error:
            reason = f"source failed: {error}"
            logger.warning("stream %s: %s", self.name, reason)
        finally:
            source.close()
            self._frames.put(None)  # blocking: the encoder always learns the end
        if reason != "stopped":
            self._call(self._set_state, StreamState.DOWN, reason)

    # -- encoder thread ------------------------------------------------------------------------

    def _encode(self) -> None:
        encoder: Encoder | None = None
        try:
            while True:
                item = self._frames.get()
                if item is None:
                    break
                frame, pts, wallclock = item
                if encoder is None:
                    encoder = self._make_encoder()
                    self.encoder_name = encoder.name
                    self._call(self._set_state, StreamState.UP, f"encoding with {encoder.name}")
                if self._keyframe_wanted.is_set():
                    self._keyframe_wanted.clear()
                    encoder.force_keyframe = True
                began = time.perf_counter()
                packets = encoder.encode(frame, pts, wallclock)
                self._metrics.encode_seconds.labels(self.name).observe(time.perf_counter() - began)
                self._tally.encode(sum(len(p.data) for p in packets), time.monotonic())
                self.extradata = encoder.extradata
                for packet in packets:
                    self._call(self._fan_out, packet)
            if encoder is not None:
                for packet in encoder.flush():
                    self._call(self._fan_out, packet)
        except (av.FFmpegError, MediaError, ValueError) as error:
            logger.error("stream %s: encoder failed: %s", self.name, error)
            self._call(self._set_state, StreamState.DOWN, f"encoder failed: {error}")
            while self._frames.get() is not None:  # keep the capture thread from blocking
                pass
        finally:
            self._call(self._ended.set)

    def request_keyframe(self) -> None:
        """An IDR at the next frame (a viewer lost packets); the caller limits the rate."""
        self._keyframe_wanted.set()

    # -- fan-out (event loop) ------------------------------------------------------------------

    def _fan_out(self, packet: EncodedPacket) -> None:
        end = packet.pts + packet.duration
        if self._video_end is None or end > self._video_end:
            self._video_end = end
        for output in self._outputs:
            if not output.offer(packet, self.extradata):
                self._tally.drop("output")

    # -- audio (fan-out on the event loop, counts from the audio thread) ------------------------

    def _fan_out_audio(self, packet: EncodedPacket, extradata: bytes) -> None:
        for output in self._audio_outputs:
            if not output.offer_audio(packet, extradata):
                self._audio_dropped("output", self._samples(packet))

    def _fan_out_opus(self, packet: EncodedPacket) -> None:
        for output in self._opus_outputs:
            if not output.offer_opus(packet):
                self._audio_dropped("output", self._samples(packet))

    def _samples(self, packet: EncodedPacket) -> int:
        rate = self.audio.sample_rate if self.audio is not None else 0
        return samples_at(packet.duration, packet.time_base, rate)

    def _opus_wanted(self) -> bool:
        """Whether a WebRTC viewer listens (called in the audio thread)."""
        return any(output.audio_viewers for output in self._opus_outputs)

    def _set_level(self, dbfs: float) -> None:
        """Each second's level (the audio thread); the series exists from the first one on."""
        self._metrics.audio_level.labels(self.name).set(dbfs)

    def _audio_dropped(self, stage: str, samples: int) -> None:
        with self._audio_drops_lock:
            self.audio_dropped[stage] = self.audio_dropped.get(stage, 0) + samples
        self._metrics.audio_dropped.labels(self.name, stage).inc(samples)

    def _end_audio(self, reason: str) -> None:
        """The sound source failed or ended: the video goes on alone; the reason is shown."""
        logger.warning("stream %s: %s; the stream goes on without sound", self.name, reason)
        self.audio_failure = reason
        self._metrics.audio_level.labels(self.name).set(FLOOR_DBFS)  # nothing to hear
        for output in self._audio_outputs:
            output.end_audio()

"""Live outputs of a stream: the GOP cache, HLS (fMP4 in memory, its sound in the same rendition)
and the viewers' packet feeds (video, and Opus for WebRTC).

The fan-out calls `offer` on the event loop; the HLS muxer (PyAV) works on bytes in memory in a
thread of its own and publishes an immutable window, and the poster is decoded in a thread, once
for every request waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import io
import logging
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import replace
from fractions import Fraction
from typing import Any, Literal

import av

from edged.errors import MediaError
from edged.media.encoders import TIME_BASE, as_audio_packet, as_av_packet
from edged.media.hls_playlist import HlsSegment, HlsWindow, new_run  # and its names, re-exported
from edged.media.hls_playlist import init_name as init_name
from edged.media.hls_playlist import init_run as init_run
from edged.media.hls_playlist import segment_key as segment_key
from edged.media.hls_playlist import segment_name as segment_name
from edged.media.interleave import AUDIO_ENDED, Interleaver, Item
from edged.media.mp4 import MOVFLAGS, take_whole_boxes
from edged.media.packets import EncodedPacket, with_parameter_sets
from edged.media.poster import keyframe_jpeg
from edged.media.viewers import HlsViewers

logger = logging.getLogger(__name__)

GOP_CACHE_MAX_BYTES = 8 * 1024 * 1024
HLS_WINDOW = 6
HLS_QUEUE_PACKETS = 240  # waiting for the muxer thread (8 s at 30 fps)
HLS_QUEUE_AUDIO_PACKETS = 400  # and, for a stream with sound, its AAC packets (8 s at 48 kHz)
# How long the pictures wait (their own time) for the sound's config before the init segment
# is made without it: the audio thread sends its first AAC packet once half a second of sound
# has been placed on the video's clock.
HEADER_AUDIO_WAIT_SECONDS = 2.0
# The tracks are given to the muxer in time order already (HlsSegmenter): its own interleaving
# holds a packet at most this long (microseconds), so a sound that stops never holds the video.
INTERLEAVE_DELTA = "100000"
OWNER_CHECK_SECONDS = 1.0  # how soon an idle muxer thread notices its muxer was dropped
VIEWER_QUEUE_PACKETS = 240
POSTER_SECONDS = 3.0  # a poster is made again from a newer keyframe after this long


class GopCache:
    """The packets since the last keyframe: a new consumer starts decoding at once."""

    def __init__(self, max_bytes: int = GOP_CACHE_MAX_BYTES) -> None:
        self._packets: list[EncodedPacket] = []
        self._bytes = 0
        self._max_bytes = max_bytes

    def add(self, packet: EncodedPacket) -> None:
        if packet.keyframe:
            self._packets, self._bytes = [], 0
        elif not self._packets:
            return  # nothing decodable to attach to
        if self._bytes + len(packet.data) > self._max_bytes:
            self._packets, self._bytes = [], 0  # an absurd GOP: wait for the next keyframe
            return
        self._packets.append(packet)
        self._bytes += len(packet.data)

    def snapshot(self) -> list[EncodedPacket]:
        return list(self._packets)

    @property
    def keyframe(self) -> EncodedPacket | None:
        return self._packets[0] if self._packets else None


class _Sink(io.RawIOBase):
    """A write-only file for the muxer: collects bytes until the segmenter takes them."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        return len(data)


class HeaderStep(enum.Enum):
    WAIT = "wait"  # the sound may still come: the pictures are held
    VIDEO = "video"  # video only
    VIDEO_AND_AUDIO = "video and audio"


def header_step(*, expects_audio: bool, audio_config: bool, held_seconds: float) -> HeaderStep:
    """Which tracks the live init segment declares; decided once, so a player never sees it
    change. The sound's as soon as its config (AudioSpecificConfig) is known; video only for a
    stream without sound (or whose sound ended), or once the pictures held waiting for the
    sound span HEADER_AUDIO_WAIT_SECONDS."""
    if not expects_audio:
        return HeaderStep.VIDEO
    if audio_config:
        return HeaderStep.VIDEO_AND_AUDIO
    if held_seconds >= HEADER_AUDIO_WAIT_SECONDS:
        return HeaderStep.VIDEO
    return HeaderStep.WAIT


AAC_LC = 2  # audio object type
AAC_SAMPLE_RATES: tuple[int, ...] = (  # by sampling frequency index
    *(96000, 88200, 64000, 48000, 44100, 32000, 24000),
    *(22050, 16000, 12000, 11025, 8000, 7350),
)


def aac_lc_config(config: bytes) -> tuple[int, int] | None:
    """(sample rate, channels) of an AAC-LC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), or
    None when it is not one (the live muxer declares AAC-LC mono or stereo only)."""
    if len(config) < 2:
        return None
    bits = int.from_bytes(config[:2], "big")
    kind, index, channels = bits >> 11, (bits >> 7) & 0xF, (bits >> 3) & 0xF
    if kind != AAC_LC or index >= len(AAC_SAMPLE_RATES) or channels not in (1, 2):
        return None
    return AAC_SAMPLE_RATES[index], channels


class HlsSegmenter:
    """fMP4 HLS from encoded packets, without re-encoding: a segment per GOP, the stream's AAC
    in the same fragments as its pictures. Blocking (PyAV): only the muxer thread uses it.

    The two tracks are muxed in time order by the recorder's rules (interleave.Interleaver): an
    AAC packet waits for the pictures to pass its time and a frame waits for the sound to reach
    it (at most a second; the AAC encoder runs ~60 ms behind), so a segment's sound ends where
    its pictures do. The container, and so the init segment, is made once its tracks are known
    (`header_step`); the pictures wait for that, held here."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: int,
        window_size: int = HLS_WINDOW,
        *,
        expects_audio: bool = False,
        stream: str = "",
        window: HlsWindow | None = None,
    ) -> None:
        self.stream = stream
        self._geometry = (width, height, fps)
        self._sink = _Sink()
        self._container: Any = None
        self._video_out: Any = None
        self._audio_out: Any = None
        self._expects_audio = expects_audio
        self._audio_config = b""
        self._tracks = Interleaver()  # the frames and sound held until their turn
        self.window = window or HlsWindow()  # the run's, numbered on from the stream's last
        self._window_size = window_size
        self._started = False  # a keyframe came: the frames after it can be muxed
        self._gop_start: EncodedPacket | None = None
        self._closed_gops: deque[tuple[float, float]] = deque()  # (seconds, wallclock)
        self._header: list[bytes] = []
        self._fragment: list[bytes] = []

    @property
    def has_audio(self) -> bool:
        """Whether the rendition has a sound track (False while that is not decided)."""
        return self._audio_out is not None

    @property
    def dropped_audio(self) -> int:
        """AAC packets let go unmuxed: held past HELD_AUDIO_PACKETS while no pictures came, or
        overlapping the sound already muxed."""
        return self._tracks.dropped_sound

    def add(self, packet: EncodedPacket, extradata: bytes) -> HlsWindow:
        """One frame, muxed once the sound has reached it; the window after it."""
        if not (self._started or packet.keyframe):
            return self.window
        self._started = True
        self._tracks.hold(Item(packet, extradata))
        self._drain()
        return self.window

    def add_audio(self, packet: EncodedPacket, extradata: bytes) -> HlsWindow:
        """One AAC packet, held until the pictures pass its time; the window after it."""
        if not self._expects_audio or (self._container is not None and not self.has_audio):
            return self.window  # no sound in this rendition
        self._audio_config = self._audio_config or extradata
        self._tracks.hold(Item(packet, extradata, audio=True))
        self._drain()
        return self.window

    def end_audio(self) -> HlsWindow:
        """The sound is gone for good: frames stop waiting for it (its track stays, empty)."""
        self._expects_audio = False
        self._drain()
        return self.window

    def _drain(self) -> None:
        """Mux the held frames the sound has reached (all of them when none is coming)."""
        if self._container is None and not self._open():
            return
        waits = self.has_audio and self._expects_audio
        while (item := self._tracks.next(waits=waits)) is not None:
            if item.audio:
                self._mux_audio(item.packet)
            else:
                self._write(item.packet, item.extradata)
        self._collect()

    def _open(self) -> bool:
        """Make the container once its tracks are known; False while it waits for the sound."""
        held = self._tracks.held_span()
        if held is None:
            return False
        first, newest = held
        step = header_step(
            expects_audio=self._expects_audio,
            audio_config=bool(self._audio_config),
            held_seconds=newest - first,
        )
        if step is HeaderStep.WAIT:
            return False
        sound = aac_lc_config(self._audio_config) if step is HeaderStep.VIDEO_AND_AUDIO else None
        if step is HeaderStep.VIDEO_AND_AUDIO and sound is None:
            logger.warning(
                "live %s: the sound's AAC config %s is not AAC-LC mono or stereo; the live HLS "
                "is video only",
                self.stream,
                self._audio_config.hex(),
            )
        elif step is HeaderStep.VIDEO and self._expects_audio:
            logger.info(
                "live %s: no sound within %.0f s of pictures; the live HLS is video only",
                self.stream,
                HEADER_AUDIO_WAIT_SECONDS,
            )
        options = {"movflags": f"{MOVFLAGS}+cmaf"}
        if sound is not None:
            options["max_interleave_delta"] = INTERLEAVE_DELTA
        self._container = av.open(self._sink, "w", format="mp4", options=options)
        width, height, fps = self._geometry
        self._video_out = self._container.add_mux_stream(
            "h264", rate=fps, width=width, height=height
        )
        self._video_out.time_base = TIME_BASE
        if sound is not None:
            # An AAC encoder of the same rate and layout gives the muxer the same
            # AudioSpecificConfig as the stream's encoder; it encodes nothing.
            rate, channels = sound
            layout = "stereo" if channels == 2 else "mono"
            self._audio_out = self._container.add_stream("aac", rate=rate, layout=layout)
            self._audio_out.time_base = Fraction(1, rate)
        self._tracks.drop_sound_before(first)  # the sound from before the first picture
        return True

    def _write(self, packet: EncodedPacket, extradata: bytes) -> None:
        if packet.keyframe:  # the closing fragment's sound, to its end, came before it
            if self._gop_start is not None:
                duration = packet.seconds - self._gop_start.seconds
                self._closed_gops.append((duration, self._gop_start.wallclock))
            self._gop_start = packet
        self._container.mux(as_av_packet(packet, extradata, self._video_out))

    def _mux_audio(self, packet: EncodedPacket) -> None:
        if not self.has_audio:
            return  # a rendition without sound
        self._container.mux(as_audio_packet(packet, self._audio_out))

    def _collect(self) -> None:
        for kind, data in take_whole_boxes(self._sink.buffer):
            if not self.window.init:
                self._header.append(data)
                if kind == b"moov":
                    self.window = replace(self.window, init=b"".join(self._header))
                continue
            self._fragment.append(data)
            # The muxer writes a GOP's fragment when the next keyframe reaches it (with sound,
            # its interleaving may hold that keyframe a moment): one closed GOP, one mdat.
            if kind == b"mdat" and self._closed_gops:
                duration, started = self._closed_gops.popleft()
                data = b"".join(self._fragment)
                self.window = self.window.with_next(data, duration, started, self._window_size)
                self._fragment = []

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, ValueError):
                self._container.close()


class HlsMuxer:
    """A stream's HLS: packets are muxed in a thread of their own (PyAV blocks), started with
    the first keyframe; the loop reads `window`, which that thread replaces whole. A full queue
    drops frames up to the next keyframe (that segment ends early, but plays), or AAC packets
    (a gap in the sound).

    `expects_audio`: the stream has sound; its init segment waits for the sound's config (see
    `header_step`). The sound is offered with `offer_audio` and ended with `end_audio`.
    `previous`: the last window of the stream's run before (a restart), whose numbering this run
    goes on with, and whose segments it keeps listing (and serving) until they slide out."""

    def __init__(
        self,
        stream: str,
        width: int,
        height: int,
        fps: int,
        *,
        window: int = HLS_WINDOW,
        queue_packets: int = HLS_QUEUE_PACKETS,
        expects_audio: bool = False,
        previous: HlsWindow | None = None,
    ) -> None:
        self.stream = stream
        self._geometry = (width, height, fps, window)
        self.run = new_run()  # this muxer's: a restarted stream has a new muxer, a new run
        self.window = previous.following(self.run) if previous else HlsWindow(run=self.run)
        self.dropped = 0
        self._refused_audio = 0  # AAC packets the full queue refused (the loop counts them)
        self._let_go_audio = 0  # and those the muxer thread let go (it sets this)
        # Bounded by `offer*` (one producer: the fan-out on the loop), so that the end-of-sound
        # marker and the final None always fit and no put ever blocks.
        self._queue: queue.Queue[Item | Literal["audio-ended"] | None] = queue.Queue()
        self._limit = queue_packets + (HLS_QUEUE_AUDIO_PACKETS if expects_audio else 0)
        self._expects_audio = expects_audio
        self._thread: threading.Thread | None = None
        self._closed = False
        self._resync = False  # a packet was dropped: the next one queued is a keyframe

    # -- the event loop's side -----------------------------------------------------------------

    @property
    def init(self) -> bytes:
        return self.window.init

    def init_of(self, run: str) -> bytes:
        return self.window.init_of(run)

    @property
    def dropped_audio(self) -> int:
        """AAC packets lost to the live HLS: refused by the full queue, or let go by the muxer."""
        return self._refused_audio + self._let_go_audio

    @property
    def segments(self) -> tuple[HlsSegment, ...]:
        return self.window.segments

    @property
    def target_duration(self) -> int:
        return self.window.target_duration

    def playlist(self) -> str:
        return self.window.playlist()

    def segment(self, run: str, sequence: int) -> HlsSegment | None:
        return self.window.segment(run, sequence)

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        """Queue a frame for the muxer; False when it is dropped."""
        if self._closed:
            return True
        if self._thread is None:
            if not packet.keyframe:
                return True  # nothing to mux before the first keyframe: not a drop
            self._thread = threading.Thread(
                target=_mux_packets,
                args=(weakref.ref(self), self._queue, self.stream, self._geometry),
                kwargs={"expects_audio": self._expects_audio, "window": self.window},
                name=f"hls-{self.stream}",
                daemon=True,
            )
            self._thread.start()
        if (self._resync and not packet.keyframe) or self._queue.qsize() >= self._limit:
            self._resync = True
            self.dropped += 1
            return False
        self._queue.put_nowait(Item(packet, extradata))
        self._resync = False
        return True

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool:
        """Queue an AAC packet for the muxer; False when it is dropped."""
        if self._closed or self._thread is None or not self._expects_audio:
            return True  # sound before the pictures, after its end or the close: not a drop
        if self._queue.qsize() >= self._limit:
            self._refused_audio += 1
            return False
        self._queue.put_nowait(Item(packet, extradata, audio=True))
        return True

    def end_audio(self) -> None:
        """The sound is gone for good: the muxer stops waiting for it."""
        self._expects_audio = False
        if self._thread is not None and not self._closed:
            self._queue.put_nowait(AUDIO_ENDED)

    def close(self) -> None:
        """Mux what is queued and end the thread; idempotent. Blocks: call it from a thread."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)


def _mux_packets(
    owner: weakref.ref[HlsMuxer],
    packets: queue.Queue[Item | Literal["audio-ended"] | None],
    stream: str,
    geometry: tuple[int, int, int, int],
    *,
    expects_audio: bool,
    window: HlsWindow,
) -> None:
    """The muxer thread: until `close` (or until its muxer is dropped without it, so the thread
    never outlives what it works for; it holds the muxer only weakly)."""
    segmenter: HlsSegmenter | None = None
    try:
        while True:
            try:
                item = packets.get(timeout=OWNER_CHECK_SECONDS)
            except queue.Empty:
                if owner() is None:
                    return
                continue
            if item is None:
                return
            try:
                segmenter = segmenter or HlsSegmenter(
                    *geometry, expects_audio=expects_audio, stream=stream, window=window
                )
                window = _mux_item(segmenter, item)
                if not _publish(owner, window, segmenter.dropped_audio):
                    return
            except (av.FFmpegError, ValueError) as error:
                logger.warning("live %s: HLS muxer failed: %s", stream, error)
            except Exception:  # the muxer goes on with the next packet; nothing dies silently
                logger.exception("live %s: HLS muxer failed", stream)
    finally:
        if segmenter is not None:
            segmenter.close()


def _mux_item(segmenter: HlsSegmenter, item: Item | Literal["audio-ended"]) -> HlsWindow:
    if item == AUDIO_ENDED:
        return segmenter.end_audio()
    if item.audio:
        return segmenter.add_audio(item.packet, item.extradata)
    return segmenter.add(item.packet, item.extradata)


def _publish(owner: weakref.ref[HlsMuxer], window: HlsWindow, let_go_audio: int) -> bool:
    muxer = owner()
    if muxer is None:
        return False
    muxer.window = window
    muxer._let_go_audio = let_go_audio  # written by the muxer thread alone
    return True


class PosterStep(enum.Enum):
    CACHED = "cached"  # the poster made lately, or from the keyframe still current, answers
    WAIT = "wait"  # a decode is running: its result answers
    FAILED = "failed"  # the current keyframe did not decode: say so without decoding it again
    DECODE = "decode"


def poster_step(
    *,
    made_age: float | None,
    made_from_current: bool,
    decoding: bool,
    failed_current: bool,
    max_age: float,
) -> PosterStep:
    """What a poster request does. A running decode is shared whatever keyframe it started from:
    it was the latest a moment ago, and one decode at a time bounds the CPU a crowd can cost."""
    if made_age is not None and (made_from_current or made_age < max_age):
        return PosterStep.CACHED
    if decoding:
        return PosterStep.WAIT
    if failed_current:
        return PosterStep.FAILED
    return PosterStep.DECODE


def _decode_poster(keyframe: EncodedPacket, extradata: bytes) -> bytes:
    return keyframe_jpeg(with_parameter_sets(keyframe, extradata))


class LivePoster:
    """A stream's poster: the latest keyframe as JPEG, decoded in a thread, one decode at a time
    shared by every request waiting for it, then kept `max_age` seconds."""

    def __init__(self, stream: str, max_age: float = POSTER_SECONDS) -> None:
        self.stream = stream
        self.max_age = max_age
        self.decodes = 0
        self._jpeg = b""
        self._made_from: EncodedPacket | None = None
        self._made_at: float | None = None
        self._failed: tuple[EncodedPacket, str] | None = None  # (keyframe, why)
        self._decoding: asyncio.Future[bytes] | None = None

    async def jpeg(self, keyframe: EncodedPacket, extradata: bytes, now: float) -> bytes:
        """The poster for a request at monotonic time `now` while `keyframe` is the latest."""
        step = poster_step(
            made_age=None if self._made_at is None else now - self._made_at,
            made_from_current=self._made_from is keyframe,
            decoding=self._decoding is not None,
            failed_current=self._failed is not None and self._failed[0] is keyframe,
            max_age=self.max_age,
        )
        if step is PosterStep.CACHED:
            return self._jpeg
        if step is PosterStep.FAILED and self._failed is not None:
            raise MediaError(self._failed[1])
        if self._decoding is None:
            self._decoding = self._decode(keyframe, extradata, now)
        # A request that goes away leaves the decode to the others (and to the cache).
        return await asyncio.shield(self._decoding)

    def _decode(
        self, keyframe: EncodedPacket, extradata: bytes, now: float
    ) -> asyncio.Future[bytes]:
        self.decodes += 1
        loop = asyncio.get_running_loop()
        decoding = loop.run_in_executor(None, _decode_poster, keyframe, extradata)
        decoding.add_done_callback(functools.partial(self._decoded, keyframe, now))
        return decoding

    def _decoded(
        self, keyframe: EncodedPacket, started: float, done: asyncio.Future[bytes]
    ) -> None:
        self._decoding = None
        if done.cancelled():
            return
        error = done.exception()  # retrieved here, so no waiter is needed to collect it
        if error is None:
            self._jpeg, self._made_from, self._made_at = done.result(), keyframe, started
        elif isinstance(error, MediaError):
            logger.debug("live %s: poster: %s", self.stream, error)
            self._failed = (keyframe, str(error))


class Viewer:
    """One viewer's packet feed: starts at the cached GOP; a viewer who falls behind skips to
    the next keyframe rather than receiving a broken stream."""

    def __init__(self, start: list[EncodedPacket]) -> None:
        self.queue: asyncio.Queue[EncodedPacket] = asyncio.Queue(VIEWER_QUEUE_PACKETS)
        self._waiting_for_keyframe = not start
        self.dropped = 0
        for packet in start:
            self.queue.put_nowait(packet)

    def offer(self, packet: EncodedPacket) -> bool:
        if self._waiting_for_keyframe:
            if not packet.keyframe:
                self.dropped += 1
                return False
            self._waiting_for_keyframe = False
        try:
            self.queue.put_nowait(packet)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
                self.dropped += 1
            self._waiting_for_keyframe = True
            return False
        return True


class LiveHub:
    """An output of a stream that feeds its live views; the web layer reads from it.

    It takes the stream's sound too (pipeline.AudioOutput): AAC into the live HLS, in the same
    rendition as the pictures. `expects_audio`: the stream has sound, so the HLS init segment
    waits for the sound's config (at most HEADER_AUDIO_WAIT_SECONDS of pictures, or until
    `end_audio`); without it the init segment is made at once. `previous`: the stream's last
    HLS window before this hub (a restart), whose numbering its HLS goes on with."""

    def __init__(
        self,
        stream: str,
        width: int,
        height: int,
        fps: int,
        *,
        expects_audio: bool,
        gop_cache: bool = True,
        previous: HlsWindow | None = None,
    ) -> None:
        self.name = f"live-{stream}"
        self.use_gop_cache = gop_cache
        self.stream = stream
        self.gop = GopCache()
        self.hls = HlsMuxer(
            stream, width, height, fps, expects_audio=expects_audio, previous=previous
        )
        self.extradata = b""
        self.viewers: set[Viewer] = set()
        self.audio_viewers: set[Viewer] = set()  # Opus feeds of the WebRTC viewers
        self.hls_viewers = HlsViewers()
        self.poster = LivePoster(stream)
        self.keyframe_at = 0.0

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        self.extradata = extradata
        self.gop.add(packet)
        if packet.keyframe:
            self.keyframe_at = time.time()
        taken = self.hls.offer(packet, extradata)
        for viewer in list(self.viewers):
            taken = viewer.offer(packet) and taken
        return taken

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool:
        """An AAC packet of the stream, for the live HLS; False when it is dropped."""
        return self.hls.offer_audio(packet, extradata)

    def end_audio(self) -> None:
        """The stream's sound is gone for good: the live HLS goes on with the pictures alone."""
        self.hls.end_audio()

    def join(self) -> Viewer:
        viewer = Viewer(self.gop.snapshot() if self.use_gop_cache else [])
        self.viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    # -- Opus for the WebRTC viewers (encoded once per stream, fanned out like the video) -----

    def offer_opus(self, packet: EncodedPacket) -> bool:
        """Give an Opus packet to every audio viewer (event loop, never blocks); False when some
        viewer's queue was full and it dropped the packet. Every Opus packet decodes alone: it
        must be marked `keyframe=True`, or a viewer (which starts waiting for a keyframe) takes
        none of them."""
        taken = True
        for viewer in list(self.audio_viewers):
            taken = viewer.offer(packet) and taken
        return taken

    def join_audio(self) -> Viewer:
        viewer = Viewer([])
        self.audio_viewers.add(viewer)
        return viewer

    def leave_audio(self, viewer: Viewer) -> None:
        self.audio_viewers.discard(viewer)

    def close(self) -> None:
        """End the viewers' feeds (video and audio: nothing more is given to them), then wait
        for the HLS muxer to finish. Blocks: call it from a thread."""
        self.viewers, self.audio_viewers = set(), set()
        self.hls.close()

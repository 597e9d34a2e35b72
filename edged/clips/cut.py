"""Cutting a clip out of recorded segments with PyAV (blocking: the clip worker process runs it).

`cut_original` copies the recorded packets, video and sound, without re-encoding, from the
keyframe at or before the start; `cut_vertical` decodes, runs the 9:16 filter graph and encodes
H.264 (the board's encoders in their order, libx264 last) and AAC, frame-accurate. Both go across
segment boundaries: a packet's place in the clip is its segment's wall-clock start plus its time
in the segment, kept strictly increasing where two segments' edges overlap by a few
milliseconds.
"""

from __future__ import annotations

import errno
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.filter

from edged.clips.plan import (
    FilterPlan,
    Geometry,
    filter_plan,
    keyframe_at_or_before,
    vertical_geometry,
)
from edged.errors import EdgedError
from edged.media.encoders import (
    TIME_BASE,
    Encoder,
    EncoderSettings,
    as_av_packet,
    candidates,
    probe,
)

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]
AUDIO_BITRATE = 128_000


class CutError(EdgedError):
    """A cut that failed; `kind` says why: "gone" (a source segment was deleted), "space" (the
    disk is full), "media" (the recording cannot be cut so)."""

    def __init__(self, message: str, kind: str = "media") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Source:
    """A recorded segment: its file and the wall-clock time of its first frame."""

    path: str
    start: float


@dataclass(frozen=True)
class CutResult:
    start: float  # wall-clock time of the clip's first frame
    end: float  # of the end of its last frame
    frames: int
    audio: bool
    encoder: str  # "copy" for an original
    width: int
    height: int


def no_space(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def open_source(source: Source) -> Any:
    """A segment opened for reading; CutError "gone" when retention (or anyone) deleted it."""
    try:
        container = av.open(source.path)
    except FileNotFoundError:
        raise CutError(
            f"source segment {Path(source.path).name} was deleted before the cut", "gone"
        ) from None
    except (av.FFmpegError, OSError) as error:
        raise CutError(f"source segment {Path(source.path).name} cannot be read: {error}") from None
    for stream in (*container.streams.video[:1], *container.streams.audio[:1]):
        stream.codec_context.thread_count = 1  # one thread: the live streams come first
    return container


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _origin(container: Any) -> float:
    """The time in the file of its first video frame (the segment's wall-clock start)."""
    video = container.streams.video[0]
    start = _seconds(video.start_time, video.time_base)
    return start or 0.0


class Timeline:
    """Times on the clip, in ticks of `time_base`, never going back: where two segments' edges
    overlap, a packet is moved on to the end of the one before, or left out when it lies wholly
    before it."""

    def __init__(self, time_base: Fraction, origin: float) -> None:
        self.time_base = time_base
        self.origin = origin  # the wall-clock time that is 0 on the clip
        self.next = 0

    def place(self, moment: float, duration: int) -> int | None:
        ticks = round((moment - self.origin) / self.time_base)
        if ticks + max(duration, 1) <= self.next:
            return None
        ticks = max(ticks, self.next)
        self.next = ticks + max(duration, 1)
        return ticks


# -- original: packets copied -------------------------------------------------------------------


def keyframe_times(source: Source, until: float = math.inf) -> list[float]:
    """Wall-clock times of a segment's keyframes, read no further than `until`."""
    with open_source(source) as container:
        video = container.streams.video[0]
        origin = _origin(container)
        times = []
        for packet in container.demux(video):
            moment = _seconds(packet.pts, packet.time_base)
            if moment is None:
                continue
            if source.start + moment - origin > until:
                break
            if packet.is_keyframe:
                times.append(source.start + moment - origin)
        return times


def _size(container: Any) -> tuple[int, int]:
    context = container.streams.video[0].codec_context
    return context.width, context.height


class _Copier:
    """The output of an original cut: a video and a sound track made from the first segment's."""

    def __init__(self, out: Any, first: Any, begin: float, end: float) -> None:
        self.out = out
        self.size = _size(first)
        self.video = out.add_stream_from_template(first.streams.video[0])
        self.audio = (
            out.add_stream_from_template(first.streams.audio[0]) if first.streams.audio else None
        )
        self.end = end
        self.video_line = Timeline(first.streams.video[0].time_base, begin)
        self.audio_line = Timeline(
            first.streams.audio[0].time_base if first.streams.audio else TIME_BASE, begin
        )
        self.frames = 0
        self.last_end = begin

    def copy(self, source: Source, container: Any, progress: Callable[[float], None]) -> None:
        if _size(container) != self.size:
            width, height = _size(container)
            raise CutError(
                f"the picture changes size at {Path(source.path).name} ({self.size[0]}x"
                f"{self.size[1]} to {width}x{height}); cut the vertical variant instead"
            )
        streams = [container.streams.video[0], *container.streams.audio[:1]]
        origin = _origin(container)
        for packet in container.demux(streams):
            moment = _seconds(packet.pts, packet.time_base)
            if packet.dts is None or moment is None:
                continue
            moment = source.start + moment - origin
            if moment >= self.end:
                continue  # past the end: the other track may still be short of it
            if packet.stream.type == "video":
                self._video(packet, moment)
                progress(moment)
            elif self.audio is not None:
                self._audio(packet, moment)

    def _video(self, packet: Any, moment: float) -> None:
        if moment < self.video_line.origin - 1e-6:
            return  # before the keyframe the clip starts with
        ticks = self.video_line.place(moment, packet.duration or 0)
        if ticks is None:
            return
        packet.pts = packet.dts = ticks
        packet.stream = self.video
        self.out.mux(packet)
        self.frames += 1
        self.last_end = moment + float((packet.duration or 0) * self.video_line.time_base)

    def _audio(self, packet: Any, moment: float) -> None:
        if moment < self.audio_line.origin - 1e-6:
            return
        ticks = self.audio_line.place(moment, packet.duration or 0)
        if ticks is None:
            return
        packet.pts = packet.dts = ticks
        packet.stream = self.audio
        self.out.mux(packet)


def cut_original(
    sources: Sequence[Source],
    start: float,
    end: float,
    target: Path,
    progress: Progress = lambda fraction: None,
) -> CutResult:
    """Copy the packets from the keyframe at or before `start` to the last frame before `end`."""
    first = keyframe_times(sources[0], until=max(start, sources[0].start + 0.001))
    begin = keyframe_at_or_before(first, start)
    span = max(end - begin, 1e-6)
    with av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        copier: _Copier | None = None
        for source in sources:
            with open_source(source) as container:
                if copier is None:
                    copier = _Copier(out, container, begin, end)
                copier.copy(source, container, lambda t: progress(min(1.0, (t - begin) / span)))
    if copier is None or copier.frames == 0:
        raise CutError("no frame of the range was found in its segments")
    width, height = copier.size
    return CutResult(
        begin, copier.last_end, copier.frames, copier.audio is not None, "copy", width, height
    )


# -- vertical: decoded, filtered, encoded -------------------------------------------------------


def _link(graph: av.filter.Graph, nodes: Sequence[Any]) -> None:
    for before, after in itertools.pairwise(nodes):
        before.link_to(after)


def build_graph(plan: FilterPlan, template: Any, threads: int = 1) -> av.filter.Graph:
    """The PyAV filter graph of `plan`, fed frames shaped as `template` (on TIME_BASE)."""
    graph = av.filter.Graph()
    graph.threads = threads
    source = graph.add_buffer(
        width=template.width,
        height=template.height,
        format=template.format.name,
        time_base=TIME_BASE,
    )
    sink = graph.add("buffersink")
    if plan.chain:
        _link(graph, [source, *(graph.add(name, args) for name, args in plan.chain), sink])
    else:
        split = graph.add("split", "2")
        background = [graph.add(name, args) for name, args in plan.background]
        foreground = [graph.add(name, args) for name, args in plan.foreground]
        overlay = graph.add(*plan.overlay)
        tail = [graph.add(name, args) for name, args in plan.tail]
        source.link_to(split)
        split.link_to(background[0], 0, 0)
        split.link_to(foreground[0], 1, 0)
        _link(graph, background)
        _link(graph, foreground)
        background[-1].link_to(overlay, 0, 0)
        foreground[-1].link_to(overlay, 0, 1)
        _link(graph, [overlay, *tail, sink])
    graph.configure()
    return graph


def bitrate(width: int, height: int, fps: int) -> int:
    """0.1 bit per pixel per frame: 6.2 Mbit/s at 1080x1920, 30 fps."""
    return max(500_000, round(width * height * fps * 0.1))


def open_encoder(encoders: Sequence[str], settings: EncoderSettings) -> Encoder:
    """The first of the board's encoders (libx264 last) that encodes frames here, one thread."""
    failures = []
    for name in candidates(encoders):
        verdict = probe(name, settings)
        if verdict.ok:
            return Encoder(name, settings, threads=1)
        failures.append(f"{name}: {verdict.reason}")
    raise CutError(f"no H.264 encoder works for {settings.width}x{settings.height}: {failures}")


AUDIO_WARM_UP = 0.1  # seconds of sound decoded before the start: AAC frames overlap their last


def _frames(container: Any, source: Source, decode_from: float) -> Iterator[Any]:
    """The decoded frames of a segment, from the keyframe at `decode_from` (a wall-clock time;
    the packets before it are not decoded: a late start in a long segment costs nothing)."""
    streams = [container.streams.video[0], *container.streams.audio[:1]]
    origin = _origin(container)
    for packet in container.demux(streams):
        moment = _seconds(packet.pts, packet.time_base)
        if moment is not None and packet.stream.type == "video":
            if source.start + moment - origin < decode_from - 1e-6:
                continue
        elif moment is not None and source.start + moment - origin < decode_from - AUDIO_WARM_UP:
            continue
        yield from packet.decode()


class _Encoding:
    """The output of a vertical cut: frames through the graph and the encoder; sound to AAC."""

    def __init__(
        self, out: Any, first: Any, geometry: Geometry, encoders: Sequence[str], start: float
    ) -> None:
        video = first.streams.video[0]
        self.fps = max(1, round(float(video.average_rate or video.guessed_rate or 30)))
        self.geometry = geometry
        settings = EncoderSettings(
            geometry.width,
            geometry.height,
            self.fps,
            bitrate(geometry.width, geometry.height, self.fps),
        )
        self.encoder = open_encoder(encoders, settings)
        self.out = out
        self.video = out.add_mux_stream(
            "h264", rate=self.fps, width=geometry.width, height=geometry.height
        )
        self.video.time_base = TIME_BASE
        self.audio: Any = None
        if first.streams.audio:
            rate = first.streams.audio[0].codec_context.sample_rate or 48000
            self.audio = out.add_stream("aac", rate=rate, layout="stereo")
            self.audio.bit_rate = AUDIO_BITRATE
            self.audio.codec_context.thread_count = 1
        rate = self.audio.rate if self.audio is not None else 48000
        self.video_line = Timeline(TIME_BASE, start)
        self.audio_line = Timeline(Fraction(1, rate), start)
        self.graph: av.filter.Graph | None = None
        self.frames = 0
        self.last = float("-inf")

    def picture(self, frame: Any, pts: int) -> None:
        size = (self.geometry.source_width, self.geometry.source_height)
        if (frame.width, frame.height) != size:  # a thermal step-down changed the recording's
            frame = frame.reformat(*size)
        if self.graph is None:
            self.graph = build_graph(filter_plan(self.geometry), frame)
        frame.pts, frame.time_base = pts, TIME_BASE
        self.graph.push(frame)
        self._drain_graph(self.graph)

    def _drain_graph(self, graph: av.filter.Graph) -> None:
        while True:
            try:
                shaped: Any = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            if shaped.pts is not None:
                self._encode(shaped, shaped.pts)

    def _encode(self, frame: Any, pts: int) -> None:
        for packet in self.encoder.encode(frame, pts, 0.0):
            self.out.mux(as_av_packet(packet, self.encoder.extradata, self.video))
        self.frames += 1

    def sound(self, frame: Any, pts: int) -> None:
        frame.pts, frame.time_base = pts, Fraction(1, frame.sample_rate)
        for packet in self.audio.encode(frame):
            self.out.mux(packet)

    def finish(self) -> None:
        if self.graph is not None:
            self.graph.push(None)
            self._drain_graph(self.graph)
        for packet in self.encoder.flush():
            self.out.mux(as_av_packet(packet, self.encoder.extradata, self.video))
        if self.audio is not None:
            for packet in self.audio.encode(None):
                self.out.mux(packet)


def _encode_source(
    encoding: _Encoding,
    source: Source,
    container: Any,
    window: tuple[float, float, float],
    progress: Callable[[float], None],
) -> None:
    decode_from, start, end = window
    origin = _origin(container)
    video_line, audio_line = encoding.video_line, encoding.audio_line
    step = round(1 / (encoding.fps * TIME_BASE))
    for frame in _frames(container, source, decode_from):
        if frame.time is None:
            continue
        moment = source.start + frame.time - origin
        if moment < start - 1e-6 or moment >= end:
            continue
        if isinstance(frame, av.VideoFrame):
            pts = video_line.place(moment, step)
            if pts is not None:
                encoding.picture(frame, pts)
                progress(moment)
        elif encoding.audio is not None:
            pts = audio_line.place(moment, frame.samples)
            if pts is not None:
                encoding.sound(frame, pts)


def cut_vertical(
    sources: Sequence[Source],
    start: float,
    end: float,
    target: Path,
    *,
    mode: str = "fill",
    x_offset: int | None = None,
    encoders: Sequence[str] = (),
    progress: Progress = lambda fraction: None,
) -> CutResult:
    """Decode from the keyframe before `start`, keep the frames shown in [start, end), reshape
    them to 9:16 and encode."""
    span = max(end - start, 1e-6)
    first = keyframe_times(sources[0], until=max(start, sources[0].start + 0.001))
    decode_from = keyframe_at_or_before(first, start)
    with av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        encoding: _Encoding | None = None
        for source in sources:
            with open_source(source) as container:
                if encoding is None:
                    width, height = _size(container)
                    geometry = vertical_geometry(width, height, mode, x_offset)
                    encoding = _Encoding(out, container, geometry, encoders, start)
                _encode_source(
                    encoding,
                    source,
                    container,
                    (decode_from, start, end),
                    lambda t: progress(min(1.0, (t - start) / span)),
                )
        if encoding is not None:
            encoding.finish()
    if encoding is None or encoding.frames == 0:
        raise CutError("no frame of the range was found in its segments")
    return CutResult(
        start,
        start + float(encoding.video_line.next * TIME_BASE),
        encoding.frames,
        encoding.audio is not None,
        encoding.encoder.name,
        encoding.geometry.width,
        encoding.geometry.height,
    )

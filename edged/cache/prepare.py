"""Fast-start preparation of a clip with PyAV (blocking: run it in a thread).

A clip is validated (a decodable video, a known duration, not truncated), then remuxed without
re-encoding into fragmented MP4 whose metadata comes first and whose first fragment is the first
keyframe alone (see faststart.py), so a phone can start from the first bytes. What a phone
cannot play (not H.264, odd pixel formats, audio that is not AAC) is transcoded once to
H.264/AAC, with the board's encoders in their order (the stream pipeline's wrapper, so the same
hardware quirks are handled) and libx264 as the last resort.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from edged.cache.faststart import split_first_fragment
from edged.errors import EdgedError, MediaError
from edged.media.encoders import (
    LAST_RESORT,
    TIME_BASE,
    Encoder,
    EncoderSettings,
    as_av_packet,
    candidates,
)
from edged.media.mp4 import MOVFLAGS, top_level_boxes
from edged.media.poster import frame_jpeg

logger = logging.getLogger(__name__)

PLAYABLE_PIXELS = ("yuv420p", "yuvj420p")
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")  # the uuid box of a C2PA manifest
TRUNCATION_TOLERANCE = 0.9


class PrepareError(EdgedError, ValueError):
    """The file cannot be served: not media, corrupt, truncated or without a duration."""


@dataclass(frozen=True)
class Prepared:
    duration: float
    video_codec: str
    audio_codec: str
    width: int
    height: int
    transcoded: bool
    encoder: str  # the H.264 encoder of a transcode, "" for a remux
    head_size: int  # bytes up to the end of the first fragment: all a player needs to start
    poster: bytes  # the first frame as JPEG


def _open(source: Path) -> Any:
    try:
        return av.open(str(source))
    except (av.FFmpegError, UnicodeDecodeError, OSError) as error:
        raise PrepareError(f"{source.name} is not a media file PyAV can open: {error}") from error


def _inspect(container: Any, name: str) -> tuple[Any, Any, float]:
    if not container.streams.video:
        raise PrepareError(f"{name} has no video stream")
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    duration = float(container.duration) / av.time_base if container.duration else 0.0
    if duration <= 0 and video.duration and video.time_base:
        duration = float(video.duration * video.time_base)
    if duration <= 0:
        raise PrepareError(f"{name} has no known duration")
    return video, audio, duration


def _check_whole(container: Any, video: Any, duration: float, name: str) -> Any:
    """Demux every packet and decode the first frame; a truncated file ends early."""
    first_frame = None
    last = 0.0
    try:
        for packet in container.demux(video):
            if packet.pts is not None and packet.time_base is not None:
                last = max(last, float(packet.pts * packet.time_base))
            if first_frame is None and packet.size:
                frames = packet.decode()
                if frames:
                    first_frame = frames[0]
    except av.FFmpegError as error:
        raise PrepareError(f"{name} is corrupt: {error}") from error
    if first_frame is None:
        raise PrepareError(f"{name} has no decodable video frame")
    start = float(video.start_time * video.time_base) if video.start_time else 0.0
    if last - start < duration * TRUNCATION_TOLERANCE - 1.0:
        raise PrepareError(
            f"{name} is truncated: its video ends at {last - start:.1f} s of {duration:.1f} s"
        )
    return first_frame


def _remux(source: Path, target: Path) -> None:
    with (
        av.open(str(source)) as inp,
        av.open(str(target), "w", format="mp4", options={"movflags": MOVFLAGS}) as out,
    ):
        streams = [inp.streams.video[0], *inp.streams.audio[:1]]
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(streams):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def _bitrate(width: int, height: int, fps: int) -> int:
    """0.1 bit per pixel per frame: 6.2 Mbit/s at 1080p30, plenty for a phone's screen."""
    return max(500_000, round(width * height * fps * 0.1))


def _transcode_with(source: Path, target: Path, name: str) -> None:
    """Transcode with one encoder through the pipeline's wrapper (its quirks handled there)."""
    with (
        av.open(str(source)) as inp,
        av.open(str(target), "w", format="mp4", options={"movflags": MOVFLAGS}) as out,
    ):
        video_in = inp.streams.video[0]
        fps = max(1, round(float(video_in.average_rate or 30)))
        width = video_in.codec_context.width // 2 * 2
        height = video_in.codec_context.height // 2 * 2
        encoder = Encoder(name, EncoderSettings(width, height, fps, _bitrate(width, height, fps)))
        video_out: Any = out.add_mux_stream("h264", rate=fps, width=width, height=height)
        video_out.time_base = TIME_BASE
        audio_in = inp.streams.audio[0] if inp.streams.audio else None
        audio_out: Any = out.add_stream("aac", rate=audio_in.rate or 48000) if audio_in else None
        step = round(1 / (fps * TIME_BASE))
        start: float | None = None
        last = -step
        frame: Any
        for frame in inp.decode(*([video_in] + ([audio_in] if audio_in else []))):
            if isinstance(frame, av.VideoFrame):
                if frame.time is None:
                    shown = last + step
                else:
                    start = frame.time if start is None else start
                    shown = round((frame.time - start) / TIME_BASE)
                last = max(last + 1, shown)  # strictly increasing, as the encoder wants
                for packet in encoder.encode(frame, last, time.time()):
                    out.mux(as_av_packet(packet, encoder.extradata, video_out))
            elif audio_out is not None:
                frame.pts = None
                for packet in audio_out.encode(frame):
                    out.mux(packet)
        for packet in encoder.flush():
            out.mux(as_av_packet(packet, encoder.extradata, video_out))
        if audio_out is not None:
            for packet in audio_out.encode(None):
                out.mux(packet)


def _transcode(source: Path, target: Path, encoders: Sequence[str]) -> str:
    """Transcode with the first of `encoders` that works (libx264 last); the one used."""
    failures = []
    for name in candidates(encoders):
        try:
            _transcode_with(source, target, name)
            return name
        except (av.FFmpegError, MediaError, ValueError) as error:
            target.unlink(missing_ok=True)
            failures.append(f"{name}: {error}")
            logger.warning(
                "transcoding %s with %s failed, trying the next: %s", source.name, name, error
            )
    raise PrepareError(f"{source.name} could not be transcoded: {'; '.join(failures)}")


def head_size(path: Path) -> int:
    """Bytes up to the end of the first complete moof+mdat (or the whole file if shorter)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        boxes = top_level_boxes(handle, size)
    end = 0
    for index, (kind, offset, length) in enumerate(boxes):
        end = offset + length
        if kind == b"mdat" and index > 0 and boxes[index - 1][0] == b"moof":
            break
    return end


def carries_manifest(path: Path) -> bool:
    """True when `path` holds a top-level C2PA manifest box (a signed clip: kept as it is)."""
    with path.open("rb") as handle:
        for kind, offset, length in top_level_boxes(handle, path.stat().st_size):
            if kind == b"uuid" and length >= 24:
                handle.seek(offset + 8)
                if handle.read(16) == C2PA_UUID:
                    return True
    return False


def prepare(source: Path, target: Path, encoders: Sequence[str] = (LAST_RESORT,)) -> Prepared:
    """Validate `source` and write the fast-start version to `target`.

    `encoders` are the board's H.264 encoders, best first, for media a phone cannot play.
    """
    with _open(source) as container:
        video, audio, duration = _inspect(container, source.name)
        video_codec = video.codec_context.name
        pixels = video.codec_context.format.name if video.codec_context.format else ""
        audio_codec = audio.codec_context.name if audio is not None else ""
        width, height = video.codec_context.width, video.codec_context.height
        first = _check_whole(container, video, duration, source.name)
        poster = frame_jpeg(first)
    playable = video_codec == "h264" and pixels in PLAYABLE_PIXELS and audio_codec in ("", "aac")
    encoder = ""
    kept = playable and carries_manifest(source)
    try:
        if kept:  # a signed clip's manifest covers these very bytes: never rewritten
            shutil.copyfile(source, target)
        elif playable:
            _remux(source, target)
        else:
            encoder = _transcode(source, target, encoders)
    except av.FFmpegError as error:
        target.unlink(missing_ok=True)
        raise PrepareError(f"{source.name} could not be prepared: {error}") from error
    if not kept:
        split_first_fragment(target)
    return Prepared(
        duration=round(duration, 3),
        video_codec="h264",
        audio_codec="aac" if audio_codec else "",
        width=width,
        height=height,
        transcoded=not playable,
        encoder=encoder,
        head_size=head_size(target),
        poster=poster,
    )

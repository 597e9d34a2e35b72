"""Where frames come from: a V4L2 device, an RTSP URL, a file (looped) or the test pattern.

A thin adapter over PyAV's demuxers; blocking, read by the stream's capture thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import av

from edged.devices.capabilities import Mode
from edged.errors import MediaError

USB2_RAW_LIMIT = 1280 * 720  # raw YUYV above 720p does not fit USB 2 at 30 fps


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "v4l2", "rtsp", "file", "pattern"
    location: str
    width: int
    height: int
    fps: int
    options: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.kind in ("v4l2", "rtsp", "pattern")


def pattern(width: int, height: int, fps: int) -> SourceSpec:
    """The built-in test pattern: lavfi testsrc2 paced to the wall clock."""
    graph = f"testsrc2=size={width}x{height}:rate={fps},realtime"
    return SourceSpec("pattern", graph, width, height, fps)


def choose_mode(
    modes: tuple[Mode, ...], width: int, height: int, fps: int, usb2: bool
) -> Mode | None:
    """The device mode closest to the wanted one; MJPEG over raw YUYV above 720p on USB 2."""
    if not modes:
        return None

    def score(mode: Mode) -> tuple[float, ...]:
        raw = mode.pixel_format.upper() in ("YUYV", "YUYV422", "YUV422", "NV12")
        too_big_for_raw = usb2 and raw and mode.width * mode.height > USB2_RAW_LIMIT
        size_miss = abs(mode.width * mode.height - width * height) / (width * height)
        fps_miss = max(fps - mode.max_fps, 0) / fps
        mjpeg = mode.pixel_format.upper() in ("MJPG", "MJPEG")
        return (too_big_for_raw, round(size_miss, 2), round(fps_miss, 2), not mjpeg)

    return min(modes, key=score)


def v4l2(node: str, mode: Mode | None, width: int, height: int, fps: int) -> SourceSpec:
    options = {"framerate": str(fps), "video_size": f"{width}x{height}"}
    if mode is not None:
        options["video_size"] = f"{mode.width}x{mode.height}"
        options["framerate"] = str(min(fps, int(mode.max_fps)) or fps)
        options["input_format"] = (
            "mjpeg" if mode.pixel_format.upper() in ("MJPG", "MJPEG") else ("yuyv422")
        )
    return SourceSpec("v4l2", node, width, height, fps, options)


class Source:
    """An opened source; `frames()` yields (frame, seconds since the source started)."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._container = self._open()

    def _open(self) -> av.container.InputContainer:
        spec = self.spec
        try:
            if spec.kind == "v4l2":
                return av.open(spec.location, format="v4l2", options=spec.options, timeout=5.0)
            if spec.kind == "pattern":
                return av.open(spec.location, format="lavfi")
            if spec.kind == "rtsp":
                options = {"rtsp_transport": "tcp", **spec.options}
                return av.open(spec.location, options=options, timeout=10.0)
            return av.open(spec.location)
        except (av.FFmpegError, OSError) as error:
            raise MediaError(f"cannot open {spec.kind} source {spec.location}: {error}") from error

    @property
    def nominal_fps(self) -> float:
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return float(rate) if rate else float(self.spec.fps)

    def frames(self) -> Iterator[tuple[av.VideoFrame, float | None]]:
        """Frames as they come; a file loops and is paced to real time."""
        offset = 0.0
        started = time.monotonic()
        while True:
            last = 0.0
            stream = self._container.streams.video[0]
            for frame in self._container.decode(stream):
                seconds = None if frame.time is None else frame.time + offset
                if self.spec.kind == "file" and seconds is not None:
                    delay = started + seconds - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if seconds is not None:
                    last = seconds
                yield frame, seconds
            if self.spec.kind != "file":
                return
            offset = last + 1 / self.nominal_fps
            self._container.close()
            self._container = self._open()

    def close(self) -> None:
        self._container.close()

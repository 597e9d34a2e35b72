"""The reference for bench/edge_crowd.py: a live HLS stream that nginx serves as static files,
with no edged behind it.

`record` takes one window of the box's live stream (its init segment and its segments, as the box
serves them: the same pictures, bitrate and sizes). `Replay` then publishes them again, one
segment per EXTINF duration on the monotonic clock, in a directory: the next segment's file first,
then the playlist (a window of HLS_WINDOW segments, the box's tags), each written under a
temporary name and renamed, so nginx never serves half a file. The recorded segments come round
again under new sequence numbers (segment-<run>-<n>.m4s); old ones stay on disk, as they stay in
the edge's cache. How late each publication was is kept (the writer's own lateness).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hls_crowd import parse_playlist

HLS_WINDOW = 6  # edged/media/live.py's
RUN = "5eed0000"  # the replay's run: 8 hex digits, as the box's names have


@dataclass(frozen=True)
class Recording:
    init: bytes
    segments: tuple[bytes, ...]
    durations: tuple[float, ...]
    target_duration: int


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
        return bytes(response.read())


def record(base: str) -> Recording:
    """One window of the live stream at `base` (http://host:port/live/<stream>)."""
    playlist = parse_playlist(download(base + "/index.m3u8").decode())
    return Recording(
        init=download(f"{base}/{playlist.init}"),
        segments=tuple(download(f"{base}/{segment.uri}") for segment in playlist.segments),
        durations=tuple(segment.duration for segment in playlist.segments),
        target_duration=round(playlist.target_duration),
    )


def segment_name(sequence: int) -> str:
    return f"segment-{RUN}-{sequence}.m4s"


def playlist_text(
    target_duration: int, window: list[tuple[int, float]], started: dict[int, float]
) -> str:
    """The media playlist over `window` ((sequence, duration) pairs), with the box's tags."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{window[0][0]}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="init-{RUN}.mp4"',
    ]
    for sequence, duration in window:
        stamp = datetime.fromtimestamp(started[sequence], UTC).isoformat(timespec="milliseconds")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{stamp.replace('+00:00', 'Z')}")
        lines.append(f"#EXTINF:{duration:.3f},")
        lines.append(segment_name(sequence))
    return "\n".join(lines) + "\n"


def write_whole(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    temporary.replace(path)


@dataclass
class Replay:
    """Publishes `recording` into `directory` as a live stream, in a thread, until stopped."""

    recording: Recording
    directory: Path
    lateness: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_whole(self.directory / f"init-{RUN}.mp4", self.recording.init)
        self._thread = threading.Thread(target=self._run, name="hls-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _publish(
        self, sequence: int, window: list[tuple[int, float]], wall: dict[int, float]
    ) -> None:
        count = len(self.recording.segments)
        duration = self.recording.durations[sequence % count]
        write_whole(
            self.directory / segment_name(sequence), self.recording.segments[sequence % count]
        )
        wall[sequence] = time.time() - duration  # the wall clock of its first frame, as the box's
        window.append((sequence, duration))
        del window[:-HLS_WINDOW]
        text = playlist_text(self.recording.target_duration, window, wall)
        write_whole(self.directory / "index.m3u8", text.encode())

    def _run(self) -> None:
        """A full window at once (the box's is full when the crowd comes), then one segment per
        duration, each at its moment on the monotonic clock."""
        window: list[tuple[int, float]] = []
        wall: dict[int, float] = {}
        for sequence in range(HLS_WINDOW):
            self._publish(sequence, window, wall)
        due, sequence = time.monotonic(), HLS_WINDOW
        while True:
            due += self.recording.durations[sequence % len(self.recording.durations)]
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.lateness.append(time.monotonic() - due)
            self._publish(sequence, window, wall)
            sequence += 1

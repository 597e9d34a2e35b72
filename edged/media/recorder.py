"""The recorder: fragmented MP4 segments in the spool, a fragment per GOP, crash-safe.

Packets reach it through a bounded queue and are written by its own thread. Each keyframe ends a
fragment, which is flushed and synced, so a power cut loses at most the fragment in progress; a
segment left unfinished is cut back to its last whole fragment and kept on the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import av

from edged.fileio import file_sha256, write_atomically
from edged.media.encoders import TIME_BASE, as_av_packet
from edged.media.mp4 import whole_prefix
from edged.media.packets import EncodedPacket

logger = logging.getLogger(__name__)

PART_SUFFIX = ".mp4.part"
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


@dataclass(frozen=True)
class Segment:
    """A closed recording and the facts of its sidecar JSON."""

    path: str
    stream: str
    sha256: str
    size: int
    start: float
    end: float
    frames: int
    device: str
    encoder: str
    node: str
    event: str
    recovered: bool = False

    @property
    def sidecar(self) -> Path:
        return Path(self.path).with_suffix(".json")


def write_sidecar(segment: Segment) -> None:
    document = asdict(segment)
    document["file"] = Path(segment.path).name
    document["start"] = datetime.fromtimestamp(segment.start, UTC).isoformat()
    document["end"] = datetime.fromtimestamp(segment.end, UTC).isoformat()
    write_atomically(segment.sidecar, json.dumps(document, indent=2, sort_keys=True).encode())


def segment_from_sidecar(sidecar: Path) -> Segment:
    document = json.loads(sidecar.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Segment)}
    values = {key: value for key, value in document.items() if key in fields}
    values["start"] = datetime.fromisoformat(document["start"]).timestamp()
    values["end"] = datetime.fromisoformat(document["end"]).timestamp()
    return Segment(**values)


def recover(spool: Path, identity: Mapping[str, str]) -> list[Segment]:
    """Finish every `*.mp4.part` a crash left: cut to its last whole fragment, keep, describe."""
    recovered = []
    for part in sorted(spool.glob(f"*/*{PART_SUFFIX}")):
        size = part.stat().st_size
        with part.open("rb") as handle:
            end, fragments = whole_prefix(handle, size)
        if fragments == 0:
            logger.warning("recording %s has no whole fragment; removed", part)
            part.unlink()
            continue
        os.truncate(part, end)
        final = part.with_name(part.name.removesuffix(PART_SUFFIX) + ".mp4")
        part.replace(final)
        frames, start, finish = _probe(final)
        segment = Segment(
            path=str(final),
            stream=part.parent.name,
            sha256=file_sha256(final),
            size=end,
            start=start,
            end=finish,
            frames=frames,
            device=identity.get("device", ""),
            encoder=identity.get("encoder", ""),
            node=identity.get("node", ""),
            event=identity.get("event", ""),
            recovered=True,
        )
        write_sidecar(segment)
        logger.info(
            "recovered %s after a crash: %d fragments, %d of %d bytes kept",
            final,
            fragments,
            end,
            size,
        )
        recovered.append(segment)
    return recovered


def _probe(path: Path) -> tuple[int, float, float]:
    """(frames, start, end) of a recovered file; times from its name and duration."""
    started = path.stat().st_mtime
    frames = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        last = 0.0
        for packet in container.demux(stream):
            if packet.size:
                frames += 1
                if packet.pts is not None and packet.time_base is not None:
                    last = float(packet.pts * packet.time_base)
    with contextlib.suppress(ValueError):
        started = (
            datetime.strptime(path.stem.split("-")[0], "%Y%m%dT%H%M%SZ")
            .replace(tzinfo=UTC)
            .timestamp()
        )
    return frames, started, started + last


class Recorder:
    """An output of a stream that writes segments; `on_segment` hears of each closed one."""

    def __init__(
        self,
        stream: str,
        spool: Path,
        *,
        width: int,
        height: int,
        fps: int,
        segment_seconds: float,
        identity: Callable[[], Mapping[str, str]],
        on_segment: Callable[[Segment], None],
        queue_seconds: float = 30.0,
    ) -> None:
        self.name = f"recorder-{stream}"
        self.stream = stream
        self._directory = spool / stream
        self._directory.mkdir(parents=True, exist_ok=True)
        self._size = (width, height)
        self._fps = fps
        self._segment_ticks = round(segment_seconds / TIME_BASE)
        self._identity = identity
        self._on_segment = on_segment
        self._queue: queue.Queue[tuple[EncodedPacket, bytes] | None] = queue.Queue(
            max(1, round(queue_seconds * fps))
        )
        self.active = True  # retention clears it when the disk is full
        self.frames_written = 0
        self._file: BinaryIO | None = None
        self._container: Any = None
        self._stream_out: Any = None
        self._part: Path | None = None
        self._segment_start_pts = 0
        self._segment_started = 0.0
        self._segment_frames = 0
        self._last_pts = 0
        self._last_wallclock = 0.0
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        if not self.active:
            return True  # deliberately not recording: not a drop
        try:
            self._queue.put_nowait((packet, extradata))
        except queue.Full:
            return False
        return True

    def close(self) -> None:
        """Write what is queued, finish the segment; idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            packet, extradata = item
            try:
                self._write(packet, extradata)
            except (av.FFmpegError, OSError) as error:
                logger.error("recorder %s: cannot write %s: %s", self.stream, self._part, error)
                self._abandon()
        self._finish()

    def _write(self, packet: EncodedPacket, extradata: bytes) -> None:
        if self._container is None:
            if not packet.keyframe:
                return  # a segment starts on a keyframe
            self._open(packet)
        elif packet.keyframe and packet.pts - self._segment_start_pts >= self._segment_ticks:
            self._finish()
            self._open(packet)
        self._container.mux(as_av_packet(packet, extradata, self._stream_out))
        if packet.keyframe and self._file is not None:
            # The previous fragment is complete now: make it survive a power cut.
            self._file.flush()
            os.fsync(self._file.fileno())
        self._segment_frames += 1
        self.frames_written += 1
        self._last_pts = packet.pts
        self._last_wallclock = packet.wallclock

    def _open(self, packet: EncodedPacket) -> None:
        stamp = datetime.fromtimestamp(packet.wallclock, UTC).strftime("%Y%m%dT%H%M%SZ")
        self._part = self._directory / f"{stamp}-{packet.sequence:08d}{PART_SUFFIX}"
        self._file = self._part.open("wb")
        self._container = av.open(
            self._file, "w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"}
        )
        width, height = self._size
        self._stream_out = self._container.add_mux_stream(
            "h264", rate=self._fps, width=width, height=height
        )
        self._stream_out.time_base = TIME_BASE
        self._segment_start_pts = packet.pts
        self._segment_started = packet.wallclock
        self._segment_frames = 0

    def _abandon(self) -> None:
        """After a write error: close what can be closed; the next start recovers the file."""
        try:
            if self._container is not None:
                self._container.close()
        except (av.FFmpegError, OSError):
            pass
        if self._file is not None:
            self._file.close()
        self._container = self._file = None

    def _finish(self) -> None:
        if self._container is None or self._part is None or self._file is None:
            return
        self._container.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._part.with_name(self._part.name.removesuffix(PART_SUFFIX) + ".mp4")
        self._part.replace(final)
        identity = self._identity()  # read now, not at the stream's start: a reload may change it
        segment = Segment(
            path=str(final),
            stream=self.stream,
            sha256=file_sha256(final),
            size=final.stat().st_size,
            start=self._segment_started,
            end=self._last_wallclock + 1 / self._fps,
            frames=self._segment_frames,
            device=identity.get("device", ""),
            encoder=identity.get("encoder", ""),
            node=identity.get("node", ""),
            event=identity.get("event", ""),
        )
        write_sidecar(segment)
        self._container = self._file = None
        logger.info("recorded %s: %d frames, %d bytes", final.name, segment.frames, segment.size)
        started = time.perf_counter()
        self._on_segment(segment)
        if time.perf_counter() - started > 1:
            logger.warning("recorder %s: segment hand-off took over a second", self.stream)

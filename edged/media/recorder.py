"""The recorder: fragmented MP4 segments in the spool, a fragment per GOP, crash-safe.

Packets reach it through a bounded queue and are written by its own thread. Each keyframe ends a
fragment, which is flushed and synced, so a power cut loses at most the fragment in progress; a
segment left unfinished is cut back to its last whole fragment and kept on the next start.

Segment names are `<UTC second>-<boot>-<number>`: the wall clock when the segment opened, the
daemon start it belongs to (a counter kept in the data dir) and its number in that start. A box
without a real-time clock that boots twice to the same saved time still never repeats a name,
and no file is ever replaced: a name found taken is passed over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

import av

from edged.fileio import file_sha256, write_atomically
from edged.media.audio import LAYOUT, AudioSpec
from edged.media.encoders import TIME_BASE, as_audio_packet, as_av_packet
from edged.media.interleave import (
    AUDIO_ENDED,
    MAX_AUDIO_WAIT_SECONDS,
    Interleaver,
    Item,
    segment_may_close,
)
from edged.media.mp4 import MOVFLAGS, whole_prefix
from edged.media.packets import EncodedPacket

logger = logging.getLogger(__name__)

PART_SUFFIX = ".mp4.part"
BOOT_FILE = "boot"  # in the data dir: how many times the daemon has started
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(
    r"(?P<stamp>\d{8}T\d{6}Z)-(?P<boot>\d{6,})-(?P<number>\d{6,})(?:-\d+)?", re.ASCII
)
_COUNTER = re.compile(r"\s*(\d+)\s*", re.ASCII)
CLOSE_SEGMENT: Final = "close-segment"  # queued when recording stops: finish the open segment
SOUND_LATE: Final = "sound-late"  # a closing segment waited MAX_AUDIO_WAIT_SECONDS for its sound
AUDIO_PACKETS_PER_SECOND = 50  # AAC frames at 48 kHz: 46.9 a second
# The muxer holds a track's packets back until every track has some, for at most this long (in
# microseconds; FFmpeg's default is 10 s): a sound card gone quiet must not hold the video back.
MAX_INTERLEAVE_DELTA = "1000000"
SidecarSigner = Callable[[dict[str, Any]], dict[str, Any]]  # a sidecar in, the same signed out


# -- names -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentName:
    """What a segment's name says: when it opened, in which daemon start, its number there."""

    opened: float
    boot: int
    number: int

    @property
    def stem(self) -> str:
        stamp = datetime.fromtimestamp(self.opened, UTC).strftime(STAMP_FORMAT)
        return f"{stamp}-{self.boot:06d}-{self.number:06d}"


def parse_segment_name(stem: str) -> SegmentName | None:
    """The parts of a segment name (without `.mp4`), or None for a name of another form."""
    match = _NAME.fullmatch(stem)
    if match is None:
        return None
    opened = datetime.strptime(match["stamp"], STAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    return SegmentName(opened, int(match["boot"]), int(match["number"]))


def next_boot(saved: str | None, spool_names: Iterator[str]) -> int:
    """This start's boot number: one past the saved counter and past every boot in the spool.

    The spool is consulted too so that a lost or damaged counter file cannot bring back a boot
    number whose names are still on the box.
    """
    counted = _COUNTER.fullmatch(saved) if saved is not None else None
    highest = int(counted[1]) if counted is not None else 0
    for stem in spool_names:
        name = parse_segment_name(stem)
        if name is not None:
            highest = max(highest, name.boot)
    return highest + 1


def take_boot(data_dir: Path, spool: Path) -> int:
    """Count this daemon start in `<data dir>/boot` (0600, replaced atomically); blocking."""
    counter = data_dir / BOOT_FILE
    try:
        saved: str | None = counter.read_text(encoding="ascii")
    except FileNotFoundError:
        saved = None
    except (OSError, UnicodeDecodeError) as error:
        logger.warning(
            "boot counter %s unreadable (%s); counting on from the spool", counter, error
        )
        saved = None
    if saved is not None and _COUNTER.fullmatch(saved) is None:
        logger.warning("boot counter %s holds %r; counting on from the spool", counter, saved[:20])
    names = (path.name.split(".")[0] for path in spool.glob("*/*"))
    boot = next_boot(saved, names)
    write_atomically(counter, f"{boot}\n".encode("ascii"), mode=0o600)  # never a recording
    return boot


def publish(part: Path, final: Path) -> Path:
    """Give a finished `part` its final name without replacing anything; the name it got.

    A name already taken (it never should be) gets `-2`, `-3`, ... before `.mp4`; a name that
    is the part itself (a crash between link and unlink) is kept as it is.
    """
    for attempt in itertools.count(1):
        target = final if attempt == 1 else final.with_name(f"{final.stem}-{attempt}{final.suffix}")
        try:
            os.link(part, target)  # fails if the target exists: never replaces
        except FileExistsError:
            if os.path.samefile(part, target):
                part.unlink()
                return target
            continue
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                continue
            part.rename(target)
            return target
        part.unlink()
        if attempt > 1:
            logger.warning("%s was taken; the recording is %s", final.name, target.name)
        return target
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class SegmentIdentity:
    """Who recorded a segment: the box and its event (read when the segment closes: a reload may
    change the event), the device and the encoder."""

    node: str = ""
    event: str = ""
    device: str = ""
    encoder: str = ""
    audio_device: str | None = None
    # The box's signature on each sidecar (edged.provenance.sidecar.signed, with its key).
    sign_sidecar: SidecarSigner | None = dataclasses.field(default=None, compare=False)


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
    boot: int = 0  # the daemon start that recorded it (see the module's note on names)
    clock_synchronized: bool | None = None  # the system clock's state when the segment opened
    audio_device: str | None = None  # the sound's source; None: the segment has no sound

    @property
    def sidecar(self) -> Path:
        return Path(self.path).with_suffix(".json")


def write_sidecar(segment: Segment, sign: SidecarSigner | None = None) -> None:
    document = asdict(segment)
    document["file"] = Path(segment.path).name
    document["start"] = datetime.fromtimestamp(segment.start, UTC).isoformat()
    document["end"] = datetime.fromtimestamp(segment.end, UTC).isoformat()
    if sign is not None:
        document = sign(document)
    write_atomically(segment.sidecar, json.dumps(document, indent=2, sort_keys=True).encode())


def segment_from_sidecar(sidecar: Path) -> Segment:
    document = json.loads(sidecar.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Segment)}
    values = {key: value for key, value in document.items() if key in fields}
    values["start"] = datetime.fromisoformat(document["start"]).timestamp()
    values["end"] = datetime.fromisoformat(document["end"]).timestamp()
    return Segment(**values)


def recover(spool: Path, identity: SegmentIdentity) -> list[Segment]:
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
        final = publish(part, part.with_name(part.name.removesuffix(PART_SUFFIX) + ".mp4"))
        frames, start, finish, sound = _probe(final)
        name = parse_segment_name(final.stem)
        segment = Segment(
            path=str(final),
            stream=part.parent.name,
            sha256=file_sha256(final),
            size=end,
            start=start,
            end=finish,
            frames=frames,
            device=identity.device,
            encoder=identity.encoder,
            node=identity.node,
            event=identity.event,
            recovered=True,
            boot=name.boot if name is not None else 0,
            audio_device=(identity.audio_device or "unknown") if sound else None,
        )
        write_sidecar(segment, identity.sign_sidecar)
        logger.info(
            "recovered %s after a crash: %d fragments, %d of %d bytes kept",
            final,
            fragments,
            end,
            size,
        )
        recovered.append(segment)
    return recovered


def _probe(path: Path) -> tuple[int, float, float, bool]:
    """(frames, start, end, has sound) of a recovered file; times from its name and duration."""
    started = path.stat().st_mtime
    frames = 0
    with av.open(str(path)) as container:
        sound = bool(container.streams.audio)
        stream = container.streams.video[0]
        last = 0.0
        for packet in container.demux(stream):
            if packet.size:
                frames += 1
                if packet.pts is not None and packet.time_base is not None:
                    last = float(packet.pts * packet.time_base)
    with contextlib.suppress(ValueError):
        started = (
            datetime.strptime(path.stem.split("-")[0], STAMP_FORMAT).replace(tzinfo=UTC).timestamp()
        )
    return frames, started, started + last, sound


class Recorder:
    """An output of a stream that writes segments; `on_segment` hears of each closed one.

    `boot` and `numbers` make the names unique (the manager keeps one numbering per stream for
    the whole daemon start, so a restarted stream does not count from 0 again); `clock_state`
    tells whether the system clock is synchronized, asked when a segment opens; `clock` is the
    monotonic clock a stop's wait for its sound is timed by.
    """

    def __init__(
        self,
        stream: str,
        spool: Path,
        *,
        width: int,
        height: int,
        fps: int,
        segment_seconds: float,
        identity: Callable[[], SegmentIdentity],
        on_segment: Callable[[Segment], None],
        queue_seconds: float = 30.0,
        boot: int = 0,
        numbers: Iterator[int] | None = None,
        clock_state: Callable[[], bool | None] = lambda: None,
        active: bool = True,
        audio: AudioSpec | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._boot = boot
        self._numbers = numbers if numbers is not None else itertools.count()
        self._clock_state = clock_state
        self._clock = clock  # monotonic seconds: the deadline of a stop's wait for its sound
        # Packets are bounded by `offer()` (a full queue drops the packet, counted by the
        # pipeline); the close marker and the final None always fit, so no setter ever blocks.
        self._queue: queue.Queue[Item | Literal["close-segment", "audio-ended"] | None] = (
            queue.Queue()
        )
        self._audio = audio  # None: no sound, or it is gone (segments opened after are silent)
        rate = fps + (AUDIO_PACKETS_PER_SECOND if audio is not None else 0)
        self._queue_limit = max(1, round(queue_seconds * rate))
        self._audio_out: Any = None
        self._tracks = Interleaver()  # the frames and sound held until their turn
        self._active = active
        self._active_lock = threading.Lock()
        self._closes_pending = 0  # stops not yet done: sound is still taken for their segment
        self._closing: float | None = None  # monotonic deadline while a stop waits for the sound
        self.frames_written = 0
        self._file: BinaryIO | None = None
        self._container: Any = None
        self._stream_out: Any = None
        self._part: Path | None = None
        self._segment_start_pts = 0
        self._segment_started = 0.0
        self._segment_synchronized: bool | None = None
        self._segment_frames = 0
        self._last_pts = 0
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        """Whether packets are recorded; retention clears it when the disk is full."""
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        """Stopping closes the open segment after what is queued; resuming opens a new segment
        at the next keyframe. Never blocks: the event loop sets it."""
        with self._active_lock:
            stopping = self._active and not value and self._thread.is_alive()
            self._active = value
            self._closes_pending += int(stopping)
        if stopping:
            self._queue.put_nowait(CLOSE_SEGMENT)

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        if not self._active:
            return True  # deliberately not recording: not a drop
        if self._queue.qsize() >= self._queue_limit:  # one producer: the fan-out on the loop
            return False
        self._queue.put_nowait(Item(packet, extradata))
        return True

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool:
        if not self._active and not self._closes_pending:
            return True  # the sound of frames queued before a stop is still taken
        if self._queue.qsize() >= self._queue_limit:
            return False
        self._queue.put_nowait(Item(packet, extradata, audio=True))
        return True

    def end_audio(self) -> None:
        """The stream's sound is gone: segments opened from now on have no audio track."""
        if self._thread.is_alive():
            self._queue.put_nowait(AUDIO_ENDED)

    def close(self) -> None:
        """Write what is queued, finish the segment; idempotent."""
        if self._thread.is_alive():
            self._queue.put_nowait(None)
            self._thread.join(timeout=30)

    def _next(self) -> Item | str | None:
        """The next item; SOUND_LATE when a closing segment's wait for its sound is over, even
        while packets keep coming."""
        if self._closing is None:
            return self._queue.get()
        remaining = self._closing - self._clock()
        if remaining <= 0:
            return SOUND_LATE
        try:
            return self._queue.get(timeout=remaining)
        except queue.Empty:
            return SOUND_LATE

    def _run(self) -> None:
        while True:
            item = self._next()
            try:
                if item is None:
                    self._drain(everything=True)
                elif item == CLOSE_SEGMENT:
                    self._begin_close()
                elif item == SOUND_LATE:
                    self._end_close(late=True)
                elif item == AUDIO_ENDED:
                    self._audio = None
                    self._drain()
                    self._close_when_heard()
                elif isinstance(item, Item):
                    self._take(item)
            except (av.FFmpegError, OSError) as error:
                logger.error("recorder %s: cannot write %s: %s", self.stream, self._part, error)
                self._abandon()
            if item is None:
                break
        self._end_close(late=False)
        self._finish()

    def _begin_close(self) -> None:
        """Recording stopped: the segment ends with the frames queued before, once their sound
        is in (it runs behind the pictures), at most MAX_AUDIO_WAIT_SECONDS from now."""
        self._end_close(late=False)  # an earlier stop still waiting: done now
        self._closing = self._clock() + MAX_AUDIO_WAIT_SECONDS
        self._drain()
        self._close_when_heard()

    def _close_when_heard(self) -> None:
        if self._closing is None:
            return
        waits = self._audio is not None and self._container is not None
        tracks = self._tracks
        if segment_may_close(
            tracks.held_frames, tracks.video_end, tracks.sound_reached, waits=waits
        ):
            self._end_close(late=False)

    def _end_close(self, *, late: bool) -> None:
        """Finish the stopped segment (`late`: without the sound that has not come)."""
        if self._closing is None:
            return
        if late and self._audio is not None:
            logger.info("recorder %s: the sound of the last frames came late", self.stream)
        self._closing = None
        with self._active_lock:
            self._closes_pending -= 1
        self._drain(everything=True)
        self._finish()

    def _take(self, item: Item) -> None:
        if not item.audio:
            self._end_close(late=False)  # recording resumed: these frames are the next segment's
        self._tracks.hold(item)
        self._drain()
        self._close_when_heard()

    def _drain(self, *, everything: bool = False) -> None:
        """Write the frames the sound has reached (all of them: `everything`, or no sound), each
        after the sound before it (see interleave)."""
        waits = self._audio is not None and not everything
        while (item := self._tracks.next(waits=waits)) is not None:
            if item.audio:
                self._mux_audio(item.packet)  # outside a segment: let go
            else:
                self._write(item.packet, item.extradata)

    def _write(self, packet: EncodedPacket, extradata: bytes) -> None:
        if self._container is None:
            if not packet.keyframe or not self._active:
                return  # a segment starts on a keyframe, and only while recording
            self._open(packet)
        elif packet.keyframe and packet.pts - self._segment_start_pts >= self._segment_ticks:
            self._finish()  # its sound, to its end, is written: it came before this frame
            self._open(packet)
        self._container.mux(as_av_packet(packet, extradata, self._stream_out))
        if packet.keyframe and self._file is not None:
            # The previous fragment is complete now: make it survive a power cut.
            self._file.flush()
            os.fsync(self._file.fileno())
        self._segment_frames += 1
        self.frames_written += 1
        self._last_pts = packet.pts

    def _mux_audio(self, packet: EncodedPacket) -> None:
        if self._container is None or self._audio_out is None:
            return
        self._container.mux(as_audio_packet(packet, self._audio_out))

    def _create_part(self, opened: float) -> tuple[Path, BinaryIO]:
        """A new `.mp4.part` under a name no file here has, finished or not."""
        while True:
            stem = SegmentName(opened, self._boot, next(self._numbers)).stem
            part = self._directory / f"{stem}{PART_SUFFIX}"
            if (self._directory / f"{stem}.mp4").exists():
                continue
            try:
                return part, part.open("xb")  # exclusive: never truncates a file
            except FileExistsError:
                continue

    def _open(self, packet: EncodedPacket) -> None:
        self._segment_synchronized = self._clock_state()
        self._part, self._file = self._create_part(packet.wallclock)
        options = {"movflags": MOVFLAGS, "flush_packets": "1"}
        if self._audio is not None:
            options["max_interleave_delta"] = MAX_INTERLEAVE_DELTA
        self._container = av.open(self._file, "w", format="mp4", options=options)
        width, height = self._size
        self._stream_out = self._container.add_mux_stream(
            "h264", rate=self._fps, width=width, height=height
        )
        self._stream_out.time_base = TIME_BASE
        self._audio_out = None
        if self._audio is not None:
            # An encoder of the same settings as the stream's gives the track the same
            # AudioSpecificConfig; the muxer opens it for that and it encodes nothing.
            rate = self._audio.sample_rate
            self._audio_out = self._container.add_stream("aac", rate=rate, layout=LAYOUT)
            self._audio_out.bit_rate = self._audio.bitrate
            self._audio_out.time_base = Fraction(1, rate)
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
        self._container = self._file = self._audio_out = None

    def _finish(self) -> None:
        if self._container is None or self._part is None or self._file is None:
            return
        self._container.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = publish(
            self._part, self._part.with_name(self._part.name.removesuffix(PART_SUFFIX) + ".mp4")
        )
        identity = self._identity()  # read now, not at the stream's start: a reload may change it
        # The wall clock when the segment opened, plus the media's own duration: a clock step
        # during the segment moves neither its start nor its length.
        duration = float((self._last_pts - self._segment_start_pts) * TIME_BASE) + 1 / self._fps
        segment = Segment(
            path=str(final),
            stream=self.stream,
            sha256=file_sha256(final),
            size=final.stat().st_size,
            start=self._segment_started,
            end=self._segment_started + duration,
            frames=self._segment_frames,
            device=identity.device,
            encoder=identity.encoder,
            node=identity.node,
            event=identity.event,
            boot=self._boot,
            clock_synchronized=self._segment_synchronized,
            audio_device=identity.audio_device if self._audio_out is not None else None,
        )
        write_sidecar(segment, identity.sign_sidecar)
        self._container = self._file = self._audio_out = None
        logger.info("recorded %s: %d frames, %d bytes", final.name, segment.frames, segment.size)
        started = time.perf_counter()
        self._on_segment(segment)
        if time.perf_counter() - started > 1:
            logger.warning("recorder %s: segment hand-off took over a second", self.stream)

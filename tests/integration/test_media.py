"""The stream pipeline with real PyAV: encoder choice, exact accounting under drops, recording."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import pytest
from prometheus_client import CollectorRegistry

from edged.config import MediaConfig, StorageConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.errors import MediaError
from edged.media import sources
from edged.media.encoders import Encoder, EncoderSettings, choose, probe
from edged.media.packets import EncodedPacket
from edged.media.pipeline import StreamPipeline
from edged.media.recorder import Recorder, Segment, SegmentIdentity
from edged.media.sources import Source
from edged.media.stream_plan import PATTERN_STREAM
from edged.media.streams import MediaManager
from edged.media.thermal import ThermalReading
from edged.metrics import StreamMetrics
from edged.supervise import Supervisor

pytestmark = pytest.mark.integration

SETTINGS = EncoderSettings(320, 240, 30, 500_000, gop_seconds=0.5)


def decode_frames(path: str) -> int:
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def test_candidate_that_fails_to_open_is_rejected_with_its_reason() -> None:
    choice = choose(["h264_v4l2m2m", "h264_nvenc"], SETTINGS)
    assert choice.winner == "libx264"
    assert not choice.hardware
    reasons = {result.encoder: result for result in choice.results}
    assert not reasons["h264_v4l2m2m"].ok
    assert reasons["h264_v4l2m2m"].reason.startswith("failed to open or encode")
    assert reasons["h264_v4l2m2m"].hardware
    assert reasons["libx264"].ok and reasons["libx264"].fps > 0
    assert not probe("no_such_encoder", SETTINGS).ok
    assert probe("no_such_encoder", SETTINGS).reason == "not in this FFmpeg build"


def test_encoder_makes_closed_gops_on_time() -> None:
    encoder = Encoder("libx264", SETTINGS)
    source = av.open("testsrc2=size=320x240:rate=30", format="lavfi")
    keyframes = []
    step = 3000  # 90 kHz / 30 fps
    for index, frame in enumerate(source.decode(video=0)):
        keyframes += [p.sequence for p in encoder.encode(frame, index * step, 0.0) if p.keyframe]
        if index == 59:
            break
    source.close()
    assert keyframes == [0, 15, 30, 45]
    assert encoder.extradata.startswith(b"\x00\x00\x00\x01\x67")  # SPS first


class SlowOutput:
    """A viewer slower than real time: a tiny queue drained at 5 packets per second."""

    name = "slow"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EncodedPacket] = asyncio.Queue(2)
        self.task = asyncio.create_task(self._drain())
        self._loop = asyncio.get_running_loop()

    async def _drain(self) -> None:
        while True:
            await self.queue.get()
            await asyncio.sleep(0.2)

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        try:
            self.queue.put_nowait(packet)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        """Called from a thread (the pipeline closes its outputs off the loop)."""
        self._loop.call_soon_threadsafe(self.task.cancel)


class SlowEncoder(Encoder):
    """An encoder slower than real time (a board too weak for its settings)."""

    def encode(self, frame: av.VideoFrame, pts: int, wallclock: float) -> list[EncodedPacket]:
        time.sleep(0.06)
        return super().encode(frame, pts, wallclock)


async def run_pipeline(
    tmp_path: Path,
    make_encoder: type[Encoder],
    done: Callable[[StreamPipeline, list[Segment]], bool],
    slow_output: bool,
) -> tuple[StreamPipeline, Recorder, list[Segment]]:
    """Run the pattern through `make_encoder` to a recorder until `done` (or 30 s: a failure)."""
    segments: list[Segment] = []
    metrics = StreamMetrics(CollectorRegistry())
    recorder = Recorder(
        "cam",
        tmp_path,
        width=320,
        height=240,
        fps=30,
        segment_seconds=1.0,
        identity=lambda: SegmentIdentity(node="box"),
        on_segment=segments.append,
    )
    spec = sources.pattern(320, 240, 30)
    pipeline = StreamPipeline(
        "cam", lambda: Source(spec), lambda: make_encoder("libx264", SETTINGS), metrics
    )
    pipeline.add_output(recorder)
    slow = SlowOutput() if slow_output else None
    if slow is not None:
        pipeline.add_output(slow)
    pipeline.start()
    deadline = time.monotonic() + 30
    while not done(pipeline, segments):
        assert time.monotonic() < deadline, f"not done in 30 s: {pipeline.counts}"
        await asyncio.sleep(0.05)
    await pipeline.stop()
    return pipeline, recorder, segments


async def test_slow_output_drops_are_counted_and_the_recorder_loses_nothing(
    tmp_path: Path,
) -> None:
    pipeline, recorder, segments = await run_pipeline(
        tmp_path,
        Encoder,
        lambda pipeline, segments: pipeline.counts.dropped_output > 0 and len(segments) >= 1,
        slow_output=True,
    )
    counts = pipeline.counts
    assert counts.dropped_output > 0
    assert counts.captured == counts.encoded + counts.dropped_encode
    assert recorder.frames_written == counts.encoded
    decoded = sum(decode_frames(segment.path) for segment in segments)
    assert decoded == counts.encoded
    assert sum(segment.frames for segment in segments) == counts.encoded
    assert all(segment.sidecar.exists() for segment in segments)


async def test_slow_encoder_drops_at_encode_and_the_equation_holds(tmp_path: Path) -> None:
    pipeline, _recorder, segments = await run_pipeline(
        tmp_path,
        SlowEncoder,
        lambda pipeline, segments: pipeline.counts.dropped_encode > 0 and len(segments) >= 1,
        slow_output=False,
    )
    counts = pipeline.counts
    assert counts.dropped_encode > 0
    assert counts.captured == counts.encoded + counts.dropped_encode
    assert counts.dropped_output == 0
    assert sum(decode_frames(segment.path) for segment in segments) == counts.encoded


def encoded_packets(count: int, started: float) -> tuple[list[EncodedPacket], bytes]:
    """`count` frames of the test pattern at 30 fps, GOPs of 0.5 s, stamped from `started`;
    and the encoder's SPS/PPS."""
    encoder = Encoder("libx264", SETTINGS)
    source = av.open("testsrc2=size=320x240:rate=30", format="lavfi")
    packets: list[EncodedPacket] = []
    step = 3000  # 90 kHz / 30 fps
    for index, frame in enumerate(source.decode(video=0)):
        if index == count:
            break
        packets += encoder.encode(frame, index * step, started + index / 30)
    packets += encoder.flush()
    source.close()
    return packets, encoder.extradata


def frame_times(path: str) -> list[float]:
    with av.open(path) as container:
        return [float(frame.time) for frame in container.decode(video=0) if frame.time is not None]


def test_recording_stopped_by_a_full_disk_closes_its_segment_and_resumes_in_a_new_one(
    tmp_path: Path,
) -> None:
    segments: list[Segment] = []
    recorder = Recorder(
        "cam",
        tmp_path,
        width=320,
        height=240,
        fps=30,
        segment_seconds=60.0,
        identity=lambda: SegmentIdentity(node="box"),
        on_segment=segments.append,
    )
    packets, extradata = encoded_packets(150, started=1_700_000_000.0)
    for packet in packets[:40]:
        assert recorder.offer(packet, extradata)
    recorder.active = False  # retention: the disk is full
    for packet in packets[40:100]:
        assert recorder.offer(packet, extradata)  # not recorded, and not a drop
    recorder.active = True  # free space is back
    for packet in packets[100:]:
        assert recorder.offer(packet, extradata)
    recorder.close()

    first, second = segments
    assert first.frames == 40  # closed where recording stopped, not left open
    assert second.frames == 150 - 105  # from the first keyframe after the resume (GOP of 15)
    interval = 1 / 30
    for segment in segments:
        times = frame_times(segment.path)
        assert len(times) == segment.frames
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= interval * 1.01, "no hidden gap inside a segment"
        assert segment.end - segment.start == pytest.approx(segment.frames * interval)
        assert Path(segment.sidecar).exists()
    assert second.start == pytest.approx(1_700_000_000.0 + 105 * interval)


def test_stopping_recording_never_blocks_on_a_full_queue(tmp_path: Path) -> None:
    """Issue 13: the event loop stops recording, so the setter must not wait for the recorder
    thread; it used to block while the packet queue was full."""
    stalled, release = threading.Event(), threading.Event()
    segments: list[Segment] = []

    def on_segment(segment: Segment) -> None:  # a hand-off that stalls the recorder thread
        segments.append(segment)
        stalled.set()
        release.wait(60)

    recorder = Recorder(
        "cam",
        tmp_path,
        width=320,
        height=240,
        fps=30,
        segment_seconds=0.5,
        identity=lambda: SegmentIdentity(node="box"),
        on_segment=on_segment,
        queue_seconds=0.2,  # six packets
    )
    packets, extradata = encoded_packets(30, started=1_700_000_000.0)
    try:
        deadline = time.monotonic() + 30
        for packet in packets[:16]:  # the keyframe at 0.5 s closes the first segment
            while not recorder.offer(packet, extradata):
                assert time.monotonic() < deadline, "the recorder never took the packet"
                time.sleep(0.01)
        assert stalled.wait(30)
        accepted = 0
        while recorder.offer(packets[16 + accepted], extradata):
            accepted += 1
        assert accepted == 6  # the queue is full, its thread held

        stopper = threading.Thread(target=setattr, args=(recorder, "active", False))
        stopper.start()
        stopper.join(timeout=30)
        assert not stopper.is_alive(), "stopping recording waited for the recorder thread"
    finally:
        release.set()
        recorder.close()
    first, second = segments
    assert first.frames == 15
    assert second.frames == 1 + accepted  # closed after what was queued, not left open


class Ledger:
    """The upload journal as retention sees it: these paths are uploaded, every one queued."""

    def __init__(self, uploaded: set[str]) -> None:
        self.uploaded = uploaded

    def is_done(self, path: str) -> bool:
        return path in self.uploaded

    def knows(self, path: str) -> bool:
        return True


async def test_retention_with_a_small_disk_budget(tmp_path: Path) -> None:

    spool = tmp_path / "spool" / "cam"
    spool.mkdir(parents=True)
    uploaded = set()
    for index, name in enumerate(["a-old-up", "b-up", "c-pending", "d-new-up"]):
        video = spool / f"{name}.mp4"
        video.write_bytes(b"x" * 1000)
        video.with_suffix(".json").write_text("{}")
        os.utime(video, (1000 + index, 1000 + index))
        if name.endswith("-up"):
            uploaded.add(str(video))
    free = {"bytes": 0}
    board = Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test")
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)

    async def no_upload(segment: Segment) -> None:
        raise AssertionError("no segment is handed over here")

    manager = MediaManager(
        MediaConfig(),
        StorageConfig(min_free_bytes=2500, delete_unuploaded=False),
        board,
        metrics,
        tmp_path,
        SegmentIdentity,
        no_upload,
        Ledger(uploaded),
        free_bytes=lambda: (
            free["bytes"]
            + sum(
                1000
                for name in ("a-old-up", "b-up", "c-pending", "d-new-up")
                if not (spool / f"{name}.mp4").exists()
            )
        ),
    )
    await manager.retention.apply()  # 2500 wanted: three uploaded files go, oldest first
    left = sorted(path.name for path in spool.iterdir())
    assert left == ["c-pending.json", "c-pending.mp4"]
    assert manager.recording  # 3000 free now

    free["bytes"] = -1000  # the disk fills up again: only footage not yet uploaded is left
    await manager.retention.apply()
    assert (spool / "c-pending.mp4").exists(), "footage that was never uploaded is kept"
    assert not manager.recording
    assert registry.get_sample_value("edged_spool_bytes") == 1000


def test_file_source_loops_and_keeps_time_running(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        source = av.open("testsrc2=size=160x120:rate=30", format="lavfi")
        for index, frame in enumerate(source.decode(video=0)):
            for packet in stream.encode(frame):
                out.mux(packet)
            if index == 9:
                break
        for packet in stream.encode(None):
            out.mux(packet)
        source.close()
    looping = Source(sources.SourceSpec("file", str(clip), 160, 120, 30))
    times: list[float] = []
    for _, seconds in looping.frames():
        assert seconds is not None
        times.append(seconds)
        if len(times) == 25:
            break
    looping.close()
    assert len(times) == 25  # ten frames, played two and a half times
    assert all(b > a for a, b in itertools.pairwise(times)), "time runs on"


def test_unopenable_source_is_a_clear_error() -> None:
    with pytest.raises(MediaError, match="cannot open v4l2 source /dev/video-gone"):
        Source(sources.SourceSpec("v4l2", "/dev/video-gone", 640, 480, 30))


class KeyframeSeen:
    """An output after the recorder: set once a keyframe has been offered to everything."""

    name = "keyframe-seen"

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        if packet.keyframe:
            self.event.set()
        return True

    def close(self) -> None:
        pass


class PatternBox:
    """A MediaManager running the test pattern (recorded), its disk and thermal sensors set by
    the test: the seams that cannot be real here."""

    def __init__(self, tmp_path: Path) -> None:
        self.free = 10**12
        self.celsius = 40.0
        self.segments: list[Segment] = []
        self.segment_closed = asyncio.Event()
        self.registry = CollectorRegistry()
        media = MediaConfig(
            test_pattern="on",
            pattern_size="320x240",
            pattern_fps=15,
            gop_seconds=0.5,
            record_test_pattern=True,
        )
        board = Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test")
        metrics = StreamMetrics(self.registry)
        self.manager = MediaManager(
            media,
            StorageConfig(min_free_bytes=1000),
            board,
            metrics,
            tmp_path,
            lambda: SegmentIdentity(node="box", event="gig"),
            self._segment,
            Ledger(set()),
            free_bytes=lambda: self.free,
            thermal_sensors=lambda: ThermalReading({"cpu": self.celsius}, None),
        )

    async def _segment(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.segment_closed.set()

    async def keyframe_recorded(self) -> None:
        """Wait until the pattern's recorder has been offered a keyframe: a segment opens."""
        seen = KeyframeSeen()
        self.manager.streams[PATTERN_STREAM].pipeline.add_output(seen)
        async with asyncio.timeout(20):
            await seen.event.wait()


@pytest.fixture
async def pattern_box(tmp_path: Path) -> AsyncIterator[PatternBox]:
    """The box started, its retention and thermal loops stopped: the test runs each pass."""
    box = PatternBox(tmp_path)
    supervisor = Supervisor(None)
    await box.manager.start(None, supervisor)
    await supervisor.cancel("media-retention")
    await supervisor.cancel("media-thermal")
    try:
        yield box
    finally:
        await box.manager.stop()
        await supervisor.stop()


async def test_a_full_disk_stops_recording_from_the_loop_and_closes_the_segment(
    pattern_box: PatternBox,
) -> None:
    """Issue 13: retention decides on the loop; the open segment closes, the stream goes on."""
    manager = pattern_box.manager
    await manager.retention.apply()
    assert manager.recording
    await pattern_box.keyframe_recorded()

    pattern_box.free = 0  # nothing in the spool may go: recording stops
    decision = await manager.retention.apply()
    assert decision.stop_recording and not manager.recording
    async with asyncio.timeout(20):
        await pattern_box.segment_closed.wait()
    (segment,) = pattern_box.segments
    assert (segment.node, segment.event, segment.device) == ("box", "gig", "test pattern")
    assert segment.encoder == manager.streams[PATTERN_STREAM].choice.winner
    (status,) = manager.status()
    assert status["recording"] is False and status["state"] in ("starting", "up")
    sample = pattern_box.registry.get_sample_value
    assert sample("edged_recording_active", {"stream": PATTERN_STREAM}) == 0

    pattern_box.free = 10**12
    await manager.retention.apply()
    assert manager.recording and manager.status()[0]["recording"] is True
    assert sample("edged_recording_active", {"stream": PATTERN_STREAM}) == 1


async def test_the_thermal_governor_steps_the_streams_down_on_the_loop(
    pattern_box: PatternBox, caplog: pytest.LogCaptureFixture
) -> None:
    manager = pattern_box.manager
    assert await manager.thermal.check() == 0
    before = manager.streams[PATTERN_STREAM]
    pattern_box.celsius = 90.0  # over the hard limit: the top level at once
    with caplog.at_level(logging.INFO, logger="edged.media.stream_supervisor"):
        assert await manager.thermal.check() == 3
    after = manager.streams[PATTERN_STREAM]
    assert after is not before, "a new resolution needs a new encoder"
    assert after.restarts is before.restarts, "the restart count stays the stream's"
    assert after.pipeline.decimation == 2
    assert f"stream {PATTERN_STREAM}: pattern 160x120@15 with" in caplog.text
    (status,) = manager.status()
    assert status["throttle_level"] == 3 and status["width"] == 320  # configured size shown
    sample = pattern_box.registry.get_sample_value
    assert sample("edged_throttle_level", {"stream": PATTERN_STREAM}) == 3
    assert sample("edged_temperature_celsius", {"sensor": "cpu"}) == 90.0

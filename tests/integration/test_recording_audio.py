"""The daemon records sound beside the test pattern (lavfi stand-ins for the camera and its sound
card): every segment has both tracks, each decodes and they last as long as each other; a
SIGKILL keeps both tracks; a sound card that cannot be opened leaves the stream recording video.
A segment closed because recording stopped (retention) keeps the sound of its last frames."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
from prometheus_client import CollectorRegistry

from edged.media.audio import AudioSpec, paced_graph
from edged.media.audio_capture import AudioCapture
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.packets import EncodedPacket
from edged.media.pipeline import StreamPipeline
from edged.media.recorder import Recorder, Segment, SegmentIdentity
from edged.media.sources import Source, pattern
from edged.metrics import StreamMetrics
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.integration.test_recording import whole_fragments
from tests.support import eventually, until

pytestmark = pytest.mark.integration

SINE = "sine=frequency=440:sample_rate=48000"
LABEL = f"lavfi:{SINE},arealtime"
FPS = 15
RECORDED = re.compile(r"recorded \S+\.mp4: \d+ frames")


def settings(**audio: Any) -> dict[str, Any]:
    return {
        "mdns": {"enabled": False},
        "media": {
            "pattern_size": "320x240",
            "pattern_fps": FPS,
            "segment_seconds": 2.0,
            "gop_seconds": 0.5,
            "record_test_pattern": True,
            "audio_stand_in": SINE,
        },
        "audio": audio,
    }


def durations(path: Path) -> tuple[float, float]:
    """(video, audio) seconds of a segment, each from its decoded frames (the pattern runs at
    15 fps; the muxer's own rate counts the last frame's stretched duration)."""
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1
        assert len(container.streams.audio) == 1
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        samples = sum(frame.samples for frame in container.decode(audio=0))
        sample_rate = audio.codec_context.sample_rate
    return frames / FPS, samples / sample_rate


@pytest.mark.timeout(120)
def test_each_segment_has_sound_as_long_as_its_pictures(start_daemon: StartDaemon) -> None:
    # Segments of 1 s (two GOPs): the four boundaries come in half the time of 2 s ones.
    daemon = start_daemon({**settings(), "media": {**settings()["media"], "segment_seconds": 1.0}})
    assert daemon.data_dir is not None
    for _ in range(4):
        daemon.wait_for(RECORDED, timeout=30)
    _, body = http(daemon.url + "/api/v1/streams")
    (stream,) = json.loads(body)["streams"]
    assert stream["audio"] == f"audio: {LABEL}"
    _, metrics = http(daemon.url + "/metrics")
    for stage in ("capture", "sync", "output"):
        assert (
            f'edged_audio_samples_dropped_total{{stage="{stage}",stream="test-pattern"}}'.encode()
            in (metrics)
        )
    assert daemon.stop(timeout=30) == 0
    segments = sorted((daemon.data_dir / "spool" / "test-pattern").glob("*.mp4"))
    assert len(segments) >= 4
    for path in segments:  # the last one too, which the stop cut short
        video, audio = durations(path)
        assert video > 0
        assert abs(audio - video) <= 0.040, (path.name, video, audio, stream)
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["audio_device"] == LABEL


def test_sigkill_keeps_both_tracks(start_daemon: StartDaemon) -> None:
    daemon = start_daemon({**settings(), "media": {**settings()["media"], "segment_seconds": 60}})
    assert daemon.data_dir is not None
    spool = daemon.data_dir / "spool" / "test-pattern"
    until(lambda: whole_fragments(spool) >= 4)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)

    again = start_daemon(settings())
    line = again.seen_or_wait(re.compile(r"recovered (\S+) after a crash: (\d+) fragments"))
    final = Path(line.group(1))
    video, audio = durations(final)
    assert video >= 1.5 and audio >= 1.5
    sidecar = json.loads(final.with_suffix(".json").read_text())
    assert sidecar["recovered"] is True
    assert sidecar["audio_device"] is not None
    assert again.stop() == 0


def test_a_sound_card_that_fails_leaves_the_video_recording(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(settings(devices={"test-pattern": "hw:CARD=Absent,DEV=0"}))
    assert daemon.data_dir is not None
    daemon.seen_or_wait(re.compile(r"stream test-pattern: cannot open audio hw:CARD=Absent"))
    for _ in range(2):
        daemon.wait_for(RECORDED, timeout=30)
    _, body = http(daemon.url + "/api/v1/streams")
    (stream,) = json.loads(body)["streams"]
    assert stream["state"] == "up"
    assert stream["audio"].startswith("video only: cannot open audio hw:CARD=Absent,DEV=0")
    assert daemon.stop(timeout=30) == 0
    segments = sorted((daemon.data_dir / "spool" / "test-pattern").glob("*.mp4"))
    assert len(segments) >= 2
    for path in segments[1:]:  # the first may have opened before the card was tried
        with av.open(str(path)) as container:
            assert not container.streams.audio
            assert sum(1 for _ in container.decode(video=0)) > 0
        assert json.loads(path.with_suffix(".json").read_text())["audio_device"] is None


def test_a_sound_source_that_ends_leaves_the_video_recording(start_daemon: StartDaemon) -> None:
    """A sound card pulled mid-stream (here a stand-in that ends after a second)."""
    brief = {**settings()["media"], "audio_stand_in": f"{SINE}:duration=1"}
    daemon = start_daemon({**settings(), "media": brief})
    assert daemon.data_dir is not None
    daemon.seen_or_wait(re.compile(r"stream test-pattern: audio source ended; the stream goes on"))
    for _ in range(3):
        daemon.wait_for(RECORDED, timeout=30)
    _, body = http(daemon.url + "/api/v1/streams")
    (stream,) = json.loads(body)["streams"]
    assert (stream["state"], stream["audio"]) == ("up", "video only: audio source ended")
    assert daemon.stop(timeout=30) == 0
    segments = sorted((daemon.data_dir / "spool" / "test-pattern").glob("*.mp4"))
    with av.open(str(segments[0])) as container:
        assert len(container.streams.audio) == 1  # it opened while the sound played
    for path in segments[2:]:
        with av.open(str(path)) as container:
            assert not container.streams.audio
            assert sum(1 for _ in container.decode(video=0)) > 0
        assert json.loads(path.with_suffix(".json").read_text())["audio_device"] is None


async def test_a_segment_closed_by_a_stop_of_recording_keeps_its_last_sound(tmp_path: Path) -> None:
    """Retention stops recording (the disk is full): the open segment ends with the frames queued
    before, and waits for their sound, which runs some 0.1 s behind the pictures (it ended 69 ms
    early, always)."""
    spec = AudioSpec("lavfi", paced_graph(SINE), 48_000, 128_000)
    segments: list[Segment] = []
    recorder = await asyncio.to_thread(  # it starts its thread: not on the loop
        Recorder,
        "cam",
        tmp_path,
        width=320,
        height=240,
        fps=FPS,
        segment_seconds=60.0,
        identity=SegmentIdentity,
        on_segment=segments.append,
        audio=spec,
    )
    settings = EncoderSettings(320, 240, FPS, 500_000, gop_seconds=0.5)
    pipeline = StreamPipeline(
        "cam",
        lambda: Source(pattern(320, 240, FPS)),
        lambda: Encoder("libx264", settings),
        StreamMetrics(CollectorRegistry()),
        audio=spec,
    )
    pipeline.add_output(recorder)
    pipeline.start()
    try:
        await eventually(lambda: recorder.frames_written >= 2 * FPS, 30, "two seconds recorded")
        recorder.active = False
        await eventually(lambda: segments, 30, "the stopped segment closed")
    finally:
        await pipeline.stop()
    (stopped,) = segments
    video, audio = await asyncio.to_thread(durations, Path(stopped.path))
    assert abs(audio - video) <= 0.040, (video, audio)


def test_a_stop_keeps_the_sound_up_to_the_video_end() -> None:
    """The last frame ends after it was captured (it shows until the next one is due) and the
    audio thread may be behind the clock when told to stop (it was, under load: the stopped
    segment's sound ended up to 136 ms early): it reads on until its sound reaches the end it is
    given, so the last AAC packet ends there or after."""
    spec = AudioSpec("lavfi", paced_graph(SINE), 48_000, 128_000)
    origin = time.monotonic()
    packets: list[EncodedPacket] = []
    failures: list[str] = []
    delivered = threading.Event()

    def deliver(packet: EncodedPacket, extradata: bytes) -> None:
        packets.append(packet)
        delivered.set()

    capture = AudioCapture("cam", spec, lambda: origin, deliver, lambda *_: None, failures.append)
    capture.start()
    try:
        assert delivered.wait(20)
        video_end = time.monotonic() - origin + 0.3  # still to come
        capture.stop(video_end)
    finally:
        capture.stop()
    last = packets[-1]
    assert (last.pts + last.duration) * last.time_base >= video_end
    assert not failures

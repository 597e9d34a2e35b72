"""The thermal governor never drops sound (issue #15): at every level the stream's audio flows,
nothing is counted lost, and the frame-rate step leaves the audio thread alone."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import AudioConfig, MediaConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.media.packets import EncodedPacket
from edged.media.pipeline import StreamPipeline
from edged.media.recorder import SegmentIdentity
from edged.media.stream_plan import PATTERN_STREAM
from edged.media.stream_supervisor import StreamSupervisor
from edged.media.thermal import MAX_LEVEL, ThermalGovernor, ThermalPolicy, ThermalReading
from edged.metrics import StreamMetrics
from tests.support import eventually

pytestmark = pytest.mark.integration

AAC_FRAME = 1024
SECOND_OF_SOUND = 48_000 // AAC_FRAME  # AAC packets


class AudioTap:
    """An output after the recorder that keeps the AAC packets it is offered."""

    name = "audio-tap"

    def __init__(self) -> None:
        self.packets: list[EncodedPacket] = []
        self.ended = False

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        return True

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool:
        self.packets.append(packet)
        return True

    def end_audio(self) -> None:
        self.ended = True

    def close(self) -> None:
        pass


def audio_threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name == f"audio-{PATTERN_STREAM}"}


@pytest.fixture
async def streams(tmp_path: Path) -> AsyncIterator[StreamSupervisor]:
    media = MediaConfig(
        test_pattern="on",
        pattern_size="320x240",
        pattern_fps=15,
        gop_seconds=0.5,
        record_test_pattern=True,  # the recorder takes the sound too, as it does at an event
        audio_stand_in="sine=frequency=440:sample_rate=48000",
    )
    board = Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test")
    supervisor = StreamSupervisor(
        media,
        board,
        StreamMetrics(CollectorRegistry()),
        tmp_path / "spool",
        lambda: SegmentIdentity(node="box", event="gig"),
        lambda segment: None,
        audio=AudioConfig(),
    )
    await supervisor.start(None, boot=1)
    try:
        yield supervisor
    finally:
        await supervisor.stop()


async def hear_a_second(pipeline: StreamPipeline, taps: dict[int, AudioTap]) -> AudioTap:
    """The pipeline's tap (added on its first visit), once it got a second more of sound."""
    tap = taps.get(id(pipeline))
    if tap is None:
        tap = taps[id(pipeline)] = AudioTap()
        pipeline.add_output(tap)
    heard = len(tap.packets)
    await eventually(
        lambda: len(tap.packets) >= heard + SECOND_OF_SOUND, 30, "a second more of sound"
    )
    return tap


async def test_sound_flows_at_every_thermal_level(streams: StreamSupervisor) -> None:
    taps: dict[int, AudioTap] = {}
    pipelines: list[StreamPipeline] = []
    threads: list[set[int | None]] = []
    for level in (0, 1, 2, 3, 2, 1, 0, 1, 0):
        await streams.set_thermal_level(level)
        pipeline = streams.streams[PATTERN_STREAM].pipeline
        await hear_a_second(pipeline, taps)
        assert pipeline.audio_failure == "", f"level {level}"
        assert streams.status()[0]["audio"].startswith("audio: lavfi:sine")
        pipelines.append(pipeline)
        threads.append(audio_threads())
    # The frame-rate step (0 <-> 1) keeps the pipeline and its one audio thread; the others
    # restart the stream (a new resolution or bitrate needs a new encoder and a new recording).
    assert pipelines[0] is pipelines[1] and pipelines[6] is pipelines[7] is pipelines[8]
    assert threads[0] == threads[1] and threads[6] == threads[7] == threads[8]
    assert all(len(ids) == 1 for ids in threads)
    for pipeline in dict.fromkeys(pipelines):
        assert sum(pipeline.audio_dropped.values()) == 0, pipeline.audio_dropped
    for tap in taps.values():  # not one AAC frame missing, steps included
        steps = {b.pts - a.pts for a, b in zip(tap.packets, tap.packets[1:], strict=False)}
        assert steps == {AAC_FRAME}
        assert not tap.ended


async def test_the_governor_over_the_hard_limit_keeps_the_sound(
    streams: StreamSupervisor,
) -> None:
    celsius = 40.0
    governor = ThermalGovernor(
        ThermalPolicy(soft_limit=80.0, hard_limit=85.0),
        StreamMetrics(CollectorRegistry()),
        streams,
        read=lambda: ThermalReading({"cpu": celsius}, None),
    )
    taps: dict[int, AudioTap] = {}
    await hear_a_second(streams.streams[PATTERN_STREAM].pipeline, taps)
    celsius = 90.0
    assert await governor.check() == MAX_LEVEL
    pipeline = streams.streams[PATTERN_STREAM].pipeline
    tap = await hear_a_second(pipeline, taps)
    assert pipeline.decimation == 2 and pipeline.audio_failure == ""
    assert sum(pipeline.audio_dropped.values()) == 0
    assert {b.pts - a.pts for a, b in zip(tap.packets, tap.packets[1:], strict=False)} == {
        AAC_FRAME
    }

"""A stream's level series lives as long as its pipeline: a stopped stream (unplugged, failing,
restarting) leaves no last level behind for the silence alert to judge."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from edged.media.audio import AudioSpec, paced_graph
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.pipeline import StreamPipeline
from edged.media.sources import Source, pattern
from edged.metrics import StreamMetrics
from tests.support import eventually

pytestmark = pytest.mark.integration

SINE = "sine=frequency=440:sample_rate=48000"
LEVEL = "edged_audio_level_dbfs"
FPS = 15


async def test_a_stopped_stream_leaves_no_level() -> None:
    registry = CollectorRegistry()
    settings = EncoderSettings(320, 240, FPS, 500_000, gop_seconds=0.5)
    pipeline = StreamPipeline(
        "cam",
        lambda: Source(pattern(320, 240, FPS)),
        lambda: Encoder("libx264", settings),
        StreamMetrics(registry),
        audio=AudioSpec("lavfi", paced_graph(SINE), 48_000, 128_000),
    )

    def level() -> float | None:
        return registry.get_sample_value(LEVEL, {"stream": "cam"})

    pipeline.start()
    try:
        await eventually(lambda: level() is not None, 30, "a level measured")
    finally:
        await pipeline.stop()
    assert level() is None

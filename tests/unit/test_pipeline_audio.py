"""A stream's sound in its pipeline's accounts: losses counted in samples at the stream's rate
whatever the packet's clock, and no level series for a stream without sound."""

from __future__ import annotations

from collections.abc import Collection
from fractions import Fraction

import pytest
from prometheus_client import CollectorRegistry

from edged.media.audio import AudioSpec
from edged.media.encoders import Encoder
from edged.media.opus import OPUS_FRAME, OPUS_RATE
from edged.media.packets import EncodedPacket
from edged.media.pipeline import StreamPipeline, samples_at
from edged.media.sources import Source
from edged.metrics import StreamMetrics

LEVEL = "edged_audio_level_dbfs"


class FullHub:
    """A live hub whose WebRTC viewer listens but whose queue is full: it refuses every packet."""

    name = "hub"
    audio_viewers: Collection[object] = ("viewer",)

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        return False

    def offer_opus(self, packet: EncodedPacket) -> bool:
        return False

    def close(self) -> None:
        return None


def never_opened() -> Source:
    raise AssertionError("the pipeline is not started here")


def never_made() -> Encoder:
    raise AssertionError("the pipeline is not started here")


def pipeline(metrics: StreamMetrics, audio: AudioSpec | None) -> StreamPipeline:
    return StreamPipeline("cam", never_opened, never_made, metrics, audio=audio)


def opus_packet() -> EncodedPacket:
    return EncodedPacket(b"x", 0, 0, OPUS_FRAME, Fraction(1, OPUS_RATE), True, 0, 0.0)


@pytest.mark.parametrize(("rate", "lost"), [(48_000, 960), (44_100, 882), (16_000, 320)])
def test_opus_packets_refused_are_counted_at_the_stream_rate(rate: int, lost: int) -> None:
    registry = CollectorRegistry()
    stream = pipeline(StreamMetrics(registry), AudioSpec("lavfi", "sine", rate, 128_000))
    stream.add_output(FullHub())
    stream._fan_out_opus(opus_packet())  # what the event loop runs for each Opus packet
    assert stream.audio_dropped == {"output": lost}
    labels = {"stream": "cam", "stage": "output"}
    assert registry.get_sample_value("edged_audio_samples_dropped_total", labels) == lost


@pytest.mark.parametrize(
    ("duration", "time_base", "rate", "samples"),
    [
        (1024, Fraction(1, 44_100), 44_100, 1024),
        (960, Fraction(1, 48_000), 44_100, 882),
        (960, Fraction(1, 48_000), 48_000, 960),
        (1, Fraction(1, 48_000), 8_000, 0),
    ],
)
def test_samples_at_a_rate(duration: int, time_base: Fraction, rate: int, samples: int) -> None:
    assert samples_at(duration, time_base, rate) == samples


def test_a_pipeline_without_sound_leaves_no_level_series() -> None:
    """The stream had sound (a card since unplugged): its last level must not linger, or the
    silence alert would judge a sound that is no longer there."""
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.audio_level.labels("cam").set(-23.0)  # the pipeline before, with its card
    pipeline(metrics, None)
    assert registry.get_sample_value(LEVEL, {"stream": "cam"}) is None


def test_a_pipeline_with_sound_keeps_its_level_series() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.audio_level.labels("cam").set(-23.0)
    pipeline(metrics, AudioSpec("lavfi", "sine", 48_000, 128_000))
    assert registry.get_sample_value(LEVEL, {"stream": "cam"}) == -23.0

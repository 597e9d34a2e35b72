"""What the audio thread does with each buffer beside AAC: the level meter counts the silence
that fills a gap as part of its seconds; AAC and Opus packets are wrapped by one helper."""

from __future__ import annotations

import struct
from fractions import Fraction

import av

from edged.media.audio import AudioSpec
from edged.media.audio_capture import AudioCapture
from edged.media.level import FLOOR_DBFS
from edged.media.opus import encoded_packets

RATE = 48_000
FRAME = 1024


def buffer(value: float) -> av.AudioFrame:
    """A captured buffer, as a card delivers it: FRAME stereo samples of `value`."""
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=FRAME)
    for plane in frame.planes:
        plane.update(struct.pack(f"={FRAME}f", *[value] * FRAME).ljust(plane.buffer_size, b"\0"))
    frame.sample_rate = RATE
    return frame


def on_time(first: int, count: int, late: float = 0.0) -> list[float]:
    return [(index + 1) * FRAME / RATE + late for index in range(first, first + count)]


def test_the_silence_filling_a_gap_counts_in_the_level_seconds() -> None:
    """90 buffers (1.92 s) with half a second never delivered after the 50th: the gap, filled
    with silence, is sound too, so two whole seconds are measured, each at the buffers' peak."""
    levels: list[float] = []
    audio = AudioCapture(
        "cam",
        AudioSpec("lavfi", "sine", RATE, 128_000),
        lambda: 0.0,
        lambda packet, extradata: None,
        lambda stage, samples: None,
        lambda reason: None,
        level=levels.append,
    )
    for end in on_time(0, 50) + on_time(50, 40, late=0.5):  # what the thread does per buffer
        audio._take(buffer(0.5), end)
    assert len(levels) == 2
    assert all(-6.1 < level < -6.0 for level in levels)
    assert FLOOR_DBFS not in levels


def test_encoder_packets_are_wrapped_with_their_clock_and_numbers() -> None:
    first, second = av.Packet(b"one"), av.Packet(b"two")
    first.pts, first.dts, first.duration = 100, 100, 960
    second.pts = 1060  # FFmpeg said nothing of its dts nor its duration
    out = encoded_packets([first, second], Fraction(1, 48_000), 960, sequence=7)
    assert [(p.data, p.pts, p.dts, p.duration, p.sequence) for p in out] == [
        (b"one", 100, 100, 960, 7),
        (b"two", 1060, 1060, 960, 8),
    ]
    assert all(p.keyframe and p.time_base == Fraction(1, 48_000) for p in out)

"""When a segment whose recording stopped is finished: its frames written and their sound in,
or at its deadline, however much sound is still coming."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
from hypothesis import given
from hypothesis import strategies as st

from edged.media.audio import AudioSpec
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.interleave import MAX_AUDIO_WAIT_SECONDS, segment_may_close
from edged.media.packets import EncodedPacket
from edged.media.recorder import Recorder, Segment, SegmentIdentity
from tests.support import until


def test_it_waits_for_the_frames_then_for_the_sound_of_the_last_one() -> None:
    assert not segment_may_close(2, 10.0, 10.5, waits=True)  # frames still held
    assert not segment_may_close(0, 10.0, 9.95, waits=True)  # the last frame's sound not in
    assert segment_may_close(0, 10.0, 10.0, waits=True)
    assert segment_may_close(0, 10.0, 10.02, waits=True)


@given(st.integers(0, 100), st.floats(0, 1e5), st.floats(-1e5, 1e5))
def test_nothing_to_wait_for_closes_at_once(held: int, video_end: float, reached: float) -> None:
    """No sound, or the wait is over."""
    assert segment_may_close(held, video_end, reached, waits=False)


FRAMES = 10  # at 30 fps: the video ends at 1/3 s
SOUND_PACKETS = 14  # of 1024 samples at 48 kHz: the sound reaches 0.299 s, short of the end
FEED_LIMIT = 1000  # sound packets the clock brings at most, each 1 sample: never the video end


class SoundAfterTheDeadline:
    """The recorder's monotonic clock. Its first reading (the stop) is 0; every later one is past
    the stop's deadline and brings one more sound packet first, so its queue is never empty."""

    def __init__(self, last: EncodedPacket) -> None:
        self.recorder: Recorder | None = None
        self.fed = 0
        self._readings = 0
        self._last = last

    def __call__(self) -> float:
        self._readings += 1
        if self._readings == 1:
            return 0.0
        if self.recorder is not None and self.fed < FEED_LIMIT:
            pts = self._last.pts + self._last.duration
            self._last = dataclasses.replace(self._last, pts=pts, dts=pts, duration=1)
            assert self.recorder.offer_audio(self._last, b"")
            self.fed += 1
        return 2 * MAX_AUDIO_WAIT_SECONDS


def sound(count: int) -> list[EncodedPacket]:
    """`count` AAC-sized packets from pts 0 (their bytes are never decoded here)."""
    rate = Fraction(1, 48000)
    return [
        EncodedPacket(bytes(16), n * 1024, n * 1024, 1024, rate, True, n, 1_700_000_000.0)
        for n in range(count)
    ]


def pictures(count: int) -> tuple[list[EncodedPacket], bytes]:
    """`count` frames of the test pattern by libx264 at 30 fps, and its SPS/PPS."""
    encoder = Encoder("libx264", EncoderSettings(160, 120, 30, 200_000, gop_seconds=1.0))
    packets: list[EncodedPacket] = []
    with av.open("testsrc2=size=160x120:rate=30", format="lavfi") as source:
        for index, frame in enumerate(source.decode(video=0)):
            if index == count:
                break
            packets += encoder.encode(frame, index * 3000, 1_700_000_000.0 + index / 30)
    return packets + encoder.flush(), encoder.extradata


def test_a_stop_ends_its_segment_at_the_deadline_while_sound_keeps_coming(
    tmp_path: Path,
) -> None:
    """Review of issue #15, item 4: the close deadline held only when the queue went empty."""
    video, extradata = pictures(FRAMES)
    audio = sound(SOUND_PACKETS)
    clock = SoundAfterTheDeadline(audio[-1])
    segments: list[Segment] = []
    recorder = Recorder(
        "cam",
        tmp_path,
        width=160,
        height=120,
        fps=30,
        segment_seconds=60.0,
        identity=lambda: SegmentIdentity(node="box"),
        on_segment=segments.append,
        audio=AudioSpec("lavfi", "sine", 48000, 96_000),
        clock=clock,
    )
    clock.recorder = recorder
    try:
        for packet in audio:
            assert recorder.offer_audio(packet, b"")
        for packet in video:
            assert recorder.offer(packet, extradata)
        # All but the last frame are written: the sound has not reached that one.
        until(lambda: recorder.frames_written == FRAMES - 1, what="the frames the sound reached")
        recorder.active = False
        (segment,) = until(lambda: segments, what="the stopped segment")
    finally:
        recorder.close()
    assert clock.fed == 1, "sound taken after the deadline"
    assert segment.frames == FRAMES
    with av.open(segment.path) as container:
        assert sum(1 for p in container.demux(audio=0) if p.size) == SOUND_PACKETS

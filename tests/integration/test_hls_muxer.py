"""Live HLS is muxed (PyAV) in a thread of the stream's own, never on the event loop; the loop
reads an immutable window the thread replaces whole. The stream's AAC goes into the same
rendition: one init segment with both tracks, each segment's sound as long as its pictures."""

from __future__ import annotations

import array
import asyncio
import io
import math
import threading
from typing import Any

import av
import pytest

from edged.media.audio import LAYOUT, AudioSpec
from edged.media.audio_capture import AAC_FRAME, SAMPLE_FORMAT, AacEncoder
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.interleave import HELD_AUDIO_PACKETS
from edged.media.live import (
    HEADER_AUDIO_WAIT_SECONDS,
    HlsSegment,
    HlsSegmenter,
    HlsWindow,
    LiveHub,
    segment_name,
)
from edged.media.packets import EncodedPacket
from edged.media.pipeline import AudioOutput
from tests.support import eventually

pytestmark = pytest.mark.integration

FPS = 15
DEADLINE = 30.0
RATE = 48000
SOUND = AudioSpec("lavfi", "sine=frequency=440:sample_rate=48000", RATE, 96_000)
AAC_SECONDS = AAC_FRAME / RATE
SINE_PEAK = 0.125  # lavfi's sine: amplitude 1/8


def encode_gops(gops: int) -> tuple[list[EncodedPacket], bytes]:
    """`gops` one-second GOPs of the test pattern by libx264 (blocking: call it in a thread)."""
    encoder = Encoder("libx264", EncoderSettings(320, 240, FPS, 300_000, gop_seconds=1.0))
    packets: list[EncodedPacket] = []
    with av.open(f"testsrc2=size=320x240:rate={FPS}", format="lavfi") as source:
        for index, frame in enumerate(source.decode(video=0)):
            if index == gops * FPS:
                break
            packets += encoder.encode(frame, index * 6000, 1_700_000_000 + index / FPS)
    packets += encoder.flush()
    return packets, encoder.extradata


def encode_sound(seconds: float) -> tuple[list[EncodedPacket], bytes]:
    """AAC of a 440 Hz sine from pts 0 (blocking: call it in a thread), as the audio thread
    stamps and encodes it."""
    encoder = AacEncoder(SOUND)
    resampler = av.AudioResampler(SAMPLE_FORMAT, LAYOUT, RATE, frame_size=AAC_FRAME)
    packets: list[EncodedPacket] = []
    pts = 0
    with av.open(SOUND.location, format="lavfi") as source:
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                chunk.pts, pts = pts, pts + AAC_FRAME
                packets += encoder.encode(chunk)
            if pts >= seconds * RATE:
                break
    return packets + encoder.encode(None), encoder.extradata


def as_it_comes(
    video: list[EncodedPacket], audio: list[EncodedPacket], lag: float = 0.06
) -> list[tuple[EncodedPacket, bool]]:
    """Both tracks in the order the fan-out offers them: each AAC packet `lag` seconds after
    its time (the encoder runs behind the pictures). (packet, is audio)."""
    timed = [(packet.seconds, False, packet) for packet in video]
    timed += [(packet.seconds + lag, True, packet) for packet in audio]
    return [(packet, is_audio) for _, is_audio, packet in sorted(timed, key=lambda t: t[:2])]


def decoded_frames(init: bytes, segment: bytes) -> int:
    container: Any
    with av.open(io.BytesIO(init + segment)) as container:
        return sum(1 for _ in container.decode(video=0))


def frame_peak(frame: av.AudioFrame) -> float:
    """The largest absolute sample of a decoded AAC frame (planar float)."""
    assert frame.format.name == "fltp"
    values = array.array("f")
    for plane in frame.planes:
        values.frombytes(bytes(plane)[: frame.samples * values.itemsize])
    return max((abs(value) for value in values), default=0.0)


def decoded_sound(init: bytes, segment: bytes) -> tuple[float, float]:
    """(seconds, peak amplitude) of the sound a segment decodes to."""
    container: Any
    samples, peak = 0, 0.0
    with av.open(io.BytesIO(init + segment)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            peak = max(peak, frame_peak(frame))
    return samples / RATE, peak


def hls_threads(stream: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"hls-{stream}"]


async def test_hls_is_muxed_in_the_streams_own_thread() -> None:
    packets, extradata = await asyncio.to_thread(encode_gops, 3)
    hub = LiveHub("own-thread", 320, 240, FPS, expects_audio=False)
    assert not hls_threads(hub.stream)  # none before the first keyframe
    try:
        for packet in packets:
            assert hub.offer(packet, extradata)
        (muxer,) = hls_threads(hub.stream)
        assert muxer is not threading.current_thread()
        # The third GOP's segment closes with a fourth keyframe only: two are served.
        await eventually(lambda: len(hub.hls.segments) == 2, DEADLINE, "two segments")
        first, second = hub.hls.segments
        assert (first.sequence, second.sequence) == (0, 1)
        run = hub.hls.run
        assert hub.hls.segment(run, 1) is second and hub.hls.segment(run, 2) is None
        assert hub.hls.init_of(run) == hub.hls.init
        assert hub.hls.init[4:8] == b"ftyp" and b"moov" in hub.hls.init
        for segment in (first, second):
            assert await asyncio.to_thread(decoded_frames, hub.hls.init, segment.data) == FPS
        assert segment_name(run, 1) in hub.hls.playlist()
    finally:
        await asyncio.to_thread(hub.close)
    assert not hls_threads(hub.stream)
    hub.close()  # idempotent
    assert hub.hls.offer(packets[0], extradata)  # after close: ignored, not a drop


async def test_a_muxer_dropped_without_close_ends_its_thread() -> None:
    packets, extradata = await asyncio.to_thread(encode_gops, 1)
    hub = LiveHub("dropped", 320, 240, FPS, expects_audio=False)
    assert hub.offer(packets[0], extradata)
    (muxer,) = hls_threads("dropped")
    del hub
    await asyncio.to_thread(muxer.join, DEADLINE)
    assert not muxer.is_alive()


def test_a_window_keeps_the_latest_segments_and_the_longest_duration() -> None:
    window = HlsWindow(init=b"init")
    for sequence, duration in enumerate([1.0, 2.4, 1.0, 1.0]):
        window = window.with_segment(HlsSegment(sequence, b"", duration, 1_700_000_000.0), 3)
    assert [segment.sequence for segment in window.segments] == [1, 2, 3]
    assert window.target_duration == 2 and window.init == b"init"
    playlist = window.playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:1\n" in playlist and "#EXT-X-TARGETDURATION:2\n" in playlist
    assert playlist.count("#EXTINF:") == 3 and segment_name(window.run, 0) not in playlist
    assert HlsWindow().playlist().count("#EXTINF:") == 0


def test_header_waits_for_the_sounds_config_then_muxes_both_tracks() -> None:
    video, extradata = encode_gops(4)
    audio, config = encode_sound(4.0)
    segmenter = HlsSegmenter(320, 240, FPS, expects_audio=True)
    try:
        for packet, is_audio in as_it_comes(video, audio):
            if is_audio:
                window = segmenter.add_audio(packet, config)
            else:
                window = segmenter.add(packet, extradata)
                # No init segment before the sound's config is known: it would lack the track.
                assert not window.init or segmenter.has_audio
        assert segmenter.has_audio
    finally:
        segmenter.close()
    assert config in window.init  # the stream's own AudioSpecificConfig, in the esds
    assert len(window.segments) == 3
    for segment in window.segments:
        assert decoded_frames(window.init, segment.data) == FPS
        seconds, peak = decoded_sound(window.init, segment.data)
        assert peak > SINE_PEAK / 2  # the sine, not silence
        # The sound ends where the pictures do, to the AAC frame.
        assert math.isclose(seconds, segment.duration, abs_tol=2 * AAC_SECONDS)


def test_no_sound_expected_makes_the_init_segment_at_the_first_keyframe() -> None:
    video, extradata = encode_gops(2)
    segmenter = HlsSegmenter(320, 240, FPS)
    try:
        assert segmenter.add(video[0], extradata).init
        for packet in video[1:]:
            window = segmenter.add(packet, extradata)
    finally:
        segmenter.close()
    (segment,) = window.segments
    assert decoded_frames(window.init, segment.data) == FPS
    with av.open(io.BytesIO(window.init + segment.data)) as container:
        assert not container.streams.audio


def test_sound_that_never_comes_leaves_the_rendition_video_only() -> None:
    gops = math.ceil(HEADER_AUDIO_WAIT_SECONDS) + 2
    video, extradata = encode_gops(gops)
    audio, config = encode_sound(1.0)
    segmenter = HlsSegmenter(320, 240, FPS, expects_audio=True)
    try:
        for packet in video:
            window = segmenter.add(packet, extradata)
        assert window.init and not segmenter.has_audio
        segmenter.add_audio(audio[3], config)  # too late for this rendition: left out
    finally:
        segmenter.close()
    assert len(window.segments) == gops - 1
    for segment in window.segments:
        assert decoded_frames(window.init, segment.data) == FPS


def test_sound_held_while_no_pictures_come_is_let_go_and_counted() -> None:
    """Review of #15, item 9: the AAC held past HELD_AUDIO_PACKETS was let go uncounted."""
    video, extradata = encode_gops(1)
    audio, config = encode_sound(8.0)
    segmenter = HlsSegmenter(320, 240, FPS, expects_audio=True)
    try:
        for packet in video:
            segmenter.add(packet, extradata)
        for packet in audio:  # the pictures have stopped; the sound goes on
            segmenter.add_audio(packet, config)
    finally:
        segmenter.close()
    assert segmenter.has_audio
    video_end = max(float((p.pts + p.duration) * p.time_base) for p in video)
    after = sum(1 for packet in audio if packet.seconds >= video_end)
    assert after > HELD_AUDIO_PACKETS
    assert segmenter.dropped_audio == after - HELD_AUDIO_PACKETS


async def test_the_muxer_counts_the_sound_its_thread_lets_go() -> None:
    video, extradata = await asyncio.to_thread(encode_gops, 1)
    audio, config = await asyncio.to_thread(encode_sound, 8.0)
    hub = LiveHub("let-go", 320, 240, FPS, expects_audio=True)
    try:
        for packet in video:
            assert hub.offer(packet, extradata)
        for packet in audio:
            assert hub.offer_audio(packet, config)
        await eventually(lambda: hub.hls.dropped_audio > 0, DEADLINE, "sound let go, counted")
    finally:
        await asyncio.to_thread(hub.close)


def test_sound_that_ends_stops_holding_the_pictures() -> None:
    video, extradata = encode_gops(4)
    audio, config = encode_sound(1.5)
    segmenter = HlsSegmenter(320, 240, FPS, expects_audio=True)
    try:
        for packet, is_audio in as_it_comes(video[: 2 * FPS], audio):
            if is_audio:
                segmenter.add_audio(packet, config)
            else:
                segmenter.add(packet, extradata)
        segmenter.end_audio()
        for packet in video[2 * FPS :]:
            window = segmenter.add(packet, extradata)
    finally:
        segmenter.close()
    # Without end_audio the frames past the sound would wait a second each: none do.
    assert [segment.sequence for segment in window.segments] == [0, 1, 2]
    for segment in window.segments:
        assert decoded_frames(window.init, segment.data) == FPS
    assert decoded_sound(window.init, window.segments[0].data)[1] > SINE_PEAK / 2
    assert decoded_sound(window.init, window.segments[2].data)[0] == 0


async def test_a_hub_whose_sound_ended_before_its_pictures_waits_for_nothing() -> None:
    video, extradata = await asyncio.to_thread(encode_gops, 2)
    audio, config = await asyncio.to_thread(encode_sound, 1.0)
    hub = LiveHub("sound-gone", 320, 240, FPS, expects_audio=True)
    assert isinstance(hub, AudioOutput)  # the pipeline fans its AAC out to it
    try:
        assert hub.offer_audio(audio[0], config)  # before the first picture: not a drop
        hub.end_audio()  # the sound card failed at once
        for packet in video:
            assert hub.offer(packet, extradata)
        # Two GOPs are less than HEADER_AUDIO_WAIT_SECONDS: only a hub that stopped waiting
        # for the sound publishes the first one.
        assert float(video[-1].pts * video[-1].time_base) < HEADER_AUDIO_WAIT_SECONDS
        await eventually(lambda: len(hub.hls.segments) == 1, DEADLINE, "a segment")
        init, data = hub.hls.init, hub.hls.segments[0].data
        assert await asyncio.to_thread(decoded_frames, init, data) == FPS
        assert hub.offer_audio(audio[1], config)  # after the end: ignored, not a drop
    finally:
        await asyncio.to_thread(hub.close)

"""Live HLS is muxed (PyAV) in a thread of the stream's own, never on the event loop; the loop
reads an immutable window the thread replaces whole."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

import av
import pytest

from edged.media.encoders import Encoder, EncoderSettings
from edged.media.live import HlsSegment, HlsWindow, LiveHub, segment_name
from edged.media.packets import EncodedPacket
from tests.support import eventually

pytestmark = pytest.mark.integration

FPS = 15
DEADLINE = 30.0


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


def decoded_frames(init: bytes, segment: bytes) -> int:
    container: Any
    with av.open(io.BytesIO(init + segment)) as container:
        return sum(1 for _ in container.decode(video=0))


def hls_threads(stream: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"hls-{stream}"]


async def test_hls_is_muxed_in_the_streams_own_thread() -> None:
    packets, extradata = await asyncio.to_thread(encode_gops, 3)
    hub = LiveHub("own-thread", 320, 240, FPS)
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
        assert hub.hls.segment(1) is second and hub.hls.segment(2) is None
        assert hub.hls.init[4:8] == b"ftyp" and b"moov" in hub.hls.init
        for segment in (first, second):
            assert await asyncio.to_thread(decoded_frames, hub.hls.init, segment.data) == FPS
        assert segment_name(1) in hub.hls.playlist()
    finally:
        await asyncio.to_thread(hub.close)
    assert not hls_threads(hub.stream)
    hub.close()  # idempotent
    assert hub.hls.offer(packets[0], extradata)  # after close: ignored, not a drop


async def test_a_muxer_dropped_without_close_ends_its_thread() -> None:
    packets, extradata = await asyncio.to_thread(encode_gops, 1)
    hub = LiveHub("dropped", 320, 240, FPS)
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
    assert window.target_duration == 3 and window.init == b"init"
    playlist = window.playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:1\n" in playlist and "#EXT-X-TARGETDURATION:3\n" in playlist
    assert playlist.count("#EXTINF:") == 3 and segment_name(0) not in playlist
    assert HlsWindow().playlist().count("#EXTINF:") == 0

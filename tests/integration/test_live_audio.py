"""Sound in the live outputs: the Opus feed of the WebRTC viewers (encoded once per stream, fanned
out by the stream's LiveHub as its video packets are)."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import pytest
from av.audio.codeccontext import AudioCodecContext

from edged.media.live import VIEWER_QUEUE_PACKETS, LiveHub
from edged.media.packets import EncodedPacket

pytestmark = pytest.mark.integration

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms


def encode_opus(packets: int) -> list[EncodedPacket]:
    """`packets` Opus packets of a 440 Hz sine by libopus (blocking: call it in a thread)."""
    context: AudioCodecContext = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = OPUS_RATE, "stereo", "s16"
    context.time_base = Fraction(1, OPUS_RATE)
    context.open()
    out: list[EncodedPacket] = []
    graph = "sine=frequency=440:sample_rate=48000"
    resampler = av.AudioResampler("s16", "stereo", OPUS_RATE, frame_size=OPUS_FRAME)
    with av.open(graph, format="lavfi") as source:
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                for packet in context.encode(chunk):
                    pts = packet.pts or 0
                    out.append(
                        EncodedPacket(
                            data=bytes(packet),
                            pts=pts,
                            dts=pts,
                            duration=OPUS_FRAME,
                            time_base=Fraction(1, OPUS_RATE),
                            keyframe=True,  # every Opus packet decodes alone
                            sequence=len(out),
                            wallclock=time.time(),
                        )
                    )
            if len(out) >= packets:
                return out[:packets]
    raise AssertionError("the sine ended")


async def test_opus_reaches_every_audio_viewer_and_only_them() -> None:
    packets = await asyncio.to_thread(encode_opus, 5)
    hub = LiveHub("opus", 320, 240, 15)
    first, second, video = hub.join_audio(), hub.join_audio(), hub.join()
    assert all(hub.offer_opus(packet) for packet in packets[:3])
    hub.leave_audio(second)
    assert all(hub.offer_opus(packet) for packet in packets[3:])
    assert [first.queue.get_nowait() for _ in range(5)] == packets
    assert [second.queue.get_nowait() for _ in range(3)] == packets[:3]
    assert second.queue.empty() and video.queue.empty()
    assert first.dropped == second.dropped == 0
    await asyncio.to_thread(hub.close)


async def test_a_full_audio_viewer_drops_and_takes_the_next_packet() -> None:
    packets = await asyncio.to_thread(encode_opus, VIEWER_QUEUE_PACKETS + 2)
    hub = LiveHub("opus-full", 320, 240, 15)
    slow, quick = hub.join_audio(), hub.join_audio()
    for packet in packets[:VIEWER_QUEUE_PACKETS]:
        assert hub.offer_opus(packet)
        quick.queue.get_nowait()
    assert not hub.offer_opus(packets[-2])  # the slow viewer's queue is full: it drops
    assert quick.queue.get_nowait() is packets[-2]  # the others still have it
    assert slow.dropped == VIEWER_QUEUE_PACKETS  # it skips what it held, as video does
    assert hub.offer_opus(packets[-1])  # and goes on with the next packet
    assert slow.queue.get_nowait() is packets[-1] and quick.queue.get_nowait() is packets[-1]
    await asyncio.to_thread(hub.close)


async def test_close_ends_the_audio_viewers_as_it_ends_the_video_viewers() -> None:
    packets = await asyncio.to_thread(encode_opus, 1)
    hub = LiveHub("opus-closed", 320, 240, 15)
    audio, video = hub.join_audio(), hub.join()
    await asyncio.to_thread(hub.close)
    assert not hub.audio_viewers and not hub.viewers
    assert hub.offer_opus(packets[0])  # nobody left to feed: not a drop
    assert audio.queue.empty() and video.queue.empty()
    hub.leave_audio(audio)  # a session leaving after the close is harmless
    hub.close()  # idempotent

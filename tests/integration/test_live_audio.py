"""Sound in the live outputs: the live HLS of the real daemon carries the stream's AAC in the same
rendition as its pictures (decoded by a PyAV HLS client over loopback), a stream without sound or
whose sound ends keeps serving HLS; and the Opus feed of the WebRTC viewers (encoded once per
stream, fanned out by the stream's LiveHub as its video packets are)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import pytest
from av.audio.codeccontext import AudioCodecContext

from edged.media.live import VIEWER_QUEUE_PACKETS, LiveHub
from edged.media.packets import EncodedPacket
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.integration.test_hls_muxer import SINE_PEAK, frame_peak
from tests.integration.test_recording_audio import SINE
from tests.support import DaemonProcess, until

pytestmark = pytest.mark.integration

FPS = 15
PLAYLIST = "/live/test-pattern/index.m3u8"
ENDED = re.compile(r"stream test-pattern: audio source ended; the stream goes on")


def settings(audio_stand_in: str | None = SINE) -> dict[str, Any]:
    media: dict[str, Any] = {"pattern_size": "320x240", "pattern_fps": FPS, "gop_seconds": 1.0}
    if audio_stand_in is not None:
        media["audio_stand_in"] = audio_stand_in
    return {"mdns": {"enabled": False}, "media": media}


@dataclass
class Heard:
    """What a PyAV HLS client decoded of a live stream."""

    audio_streams: int
    frames: int = 0
    video_seconds: float = 0.0
    sound_seconds: float = 0.0
    peak: float = 0.0


def play_hls(daemon: DaemonProcess, seconds: float, *, sound: bool, limit: float = 60.0) -> Heard:
    """Decode the live HLS from its newest segment until `seconds` of pictures (and of sound,
    if `sound`) came through (blocking: PyAV's own HTTP client)."""
    until(lambda: http(daemon.url + PLAYLIST)[0] == 200, 30, "an HLS segment")
    deadline = time.monotonic() + limit
    container: Any
    with av.open(
        daemon.url + PLAYLIST, options={"live_start_index": "-1"}, timeout=10
    ) as container:
        heard = Heard(len(container.streams.audio))
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame):
                    heard.sound_seconds += frame.samples / frame.sample_rate
                    heard.peak = max(heard.peak, frame_peak(frame))
                elif isinstance(frame, av.VideoFrame):
                    heard.frames += 1
                    heard.video_seconds = heard.frames / FPS
            if heard.video_seconds >= seconds and (heard.sound_seconds >= seconds or not sound):
                return heard
            assert time.monotonic() < deadline, f"HLS gave {heard} in {limit} s"
    raise AssertionError(f"the HLS ended after {heard}")


@pytest.mark.timeout(120)
def test_live_hls_carries_the_sound_with_the_pictures(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(settings())
    heard = play_hls(daemon, 3.0, sound=True)
    assert heard.audio_streams == 1
    assert heard.peak > SINE_PEAK / 2  # the sine, not the silence before the first sample
    _, body = http(daemon.url + PLAYLIST)
    assert "CODECS" not in body.decode()  # a media playlist: nothing to declare
    assert daemon.stop() == 0


@pytest.mark.timeout(120)
def test_a_stream_without_sound_serves_video_only_hls(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(settings(audio_stand_in=None))
    heard = play_hls(daemon, 3.0, sound=False)
    assert heard.audio_streams == 0 and heard.frames >= 3 * FPS
    assert daemon.stop() == 0
    # Its hub knew there was no sound to wait for: the init went out with the first segment.
    assert not [line for line in daemon.lines if "no sound within" in line]


def newest_segment(daemon: DaemonProcess) -> int:
    _, body = http(daemon.url + PLAYLIST)
    return max(
        int(number)
        for number in re.findall(r"^segment-[0-9a-f]{8}-(\d+)\.m4s$", body.decode(), re.M)
    )


@pytest.mark.timeout(120)
def test_a_stream_whose_sound_ends_keeps_serving_hls(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(settings(f"{SINE}:duration=2"))
    daemon.seen_or_wait(ENDED)
    _, body = http(daemon.url + "/api/v1/streams")
    (stream,) = json.loads(body)["streams"]
    assert (stream["state"], stream["audio"]) == ("up", "video only: audio source ended")
    # The newest segment may still hold the last of the sound (it runs behind the pictures).
    last_with_sound = newest_segment(daemon)
    until(lambda: newest_segment(daemon) > last_with_sound + 1, 30, "segments after the end")
    heard = play_hls(daemon, 3.0, sound=False)  # the same rendition, its sound track empty
    assert heard.audio_streams == 1 and heard.frames >= 3 * FPS
    assert heard.sound_seconds == 0
    assert daemon.stop() == 0


# -- the Opus feed of the WebRTC viewers ---------------------------------------------------------

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
    hub = LiveHub("opus", 320, 240, 15, expects_audio=True)
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
    hub = LiveHub("opus-full", 320, 240, 15, expects_audio=True)
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
    hub = LiveHub("opus-closed", 320, 240, 15, expects_audio=True)
    audio, video = hub.join_audio(), hub.join()
    await asyncio.to_thread(hub.close)
    assert not hub.audio_viewers and not hub.viewers
    assert hub.offer_opus(packets[0])  # nobody left to feed: not a drop
    assert audio.queue.empty() and video.queue.empty()
    hub.leave_audio(audio)  # a session leaving after the close is harmless
    hub.close()  # idempotent

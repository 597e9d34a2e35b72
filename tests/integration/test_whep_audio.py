"""Sound for WebRTC viewers and the level metric (issue #15), with real parts: the daemon with
the lavfi stand-ins (a 440 Hz sine, or silence) and an aiortc WHEP client that decodes what it
gets; the audio thread run alone on the sine, with Opus asked for and then not; OpusStage on
PyAV. The expected level is measured from the stand-in itself, never assumed."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import struct
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import aiohttp
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, sdp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.media.audio import AudioSpec, paced_graph
from edged.media.audio_capture import AudioCapture
from edged.media.opus import OPUS_FRAME, OPUS_RATE, OpusStage
from edged.media.packets import EncodedPacket
from edged.media.webrtc import restrict_ice_addresses
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import DaemonProcess, shared_daemon, still_running, until

pytestmark = pytest.mark.integration

SINE = "sine=frequency=440:sample_rate=48000"
SILENCE = "anullsrc=sample_rate=48000:channel_layout=stereo"
STREAM = "test-pattern"
LEVEL = re.compile(rb'^edged_audio_level_dbfs\{stream="test-pattern"\} (\S+)$', re.MULTILINE)


def settings(stand_in: str) -> dict[str, dict[str, object]]:
    return {
        "mdns": {"enabled": False},
        "media": {
            "pattern_size": "320x240",
            "pattern_fps": 15,
            "gop_seconds": 1.0,
            "audio_stand_in": stand_in,
        },
        "live": {"ice_addresses": ["127.0.0.1"], "max_viewers": 3},
    }


@pytest.fixture(scope="module")
def shared_sine_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon with the sine for the module's three tests that listen to it (a start costs
    ~3.5 s): each closes its session (the first checks 0 viewers after)."""
    with shared_daemon(tmp_path_factory.mktemp("sine"), settings(SINE), STREAM) as daemon:
        yield daemon


@pytest.fixture
def sine_daemon(shared_sine_daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    yield from still_running(shared_sine_daemon)


def level(daemon: DaemonProcess) -> float | None:
    """The stream's edged_audio_level_dbfs as scraped, None before its first second."""
    match = LEVEL.search(http(daemon.url + "/metrics")[1])
    return float(match.group(1)) if match else None


def peak_of_the_stand_in(graph: str) -> float:
    """The peak (dBFS) of a second of `graph` after the daemon's resampling to 48 kHz stereo,
    computed sample by sample."""
    top = 0.0
    resampler = av.AudioResampler("fltp", "stereo", 48_000)
    with av.open(f"{graph}:duration=1", format="lavfi") as source:
        for frame in source.decode(audio=0):
            frame.pts = None
            for part in resampler.resample(frame):
                for plane in part.planes:
                    values = struct.unpack(f"={part.samples}f", bytes(plane)[: part.samples * 4])
                    top = max(top, *(abs(value) for value in values))
    return 20 * math.log10(top)


def s16_peak(frame: av.AudioFrame) -> int:
    data = bytes(frame.planes[0])[: frame.samples * len(frame.layout.channels) * 2]
    return max(abs(value) for value in struct.unpack(f"={len(data) // 2}h", data))


async def whep(base: str, wanted: dict[str, int]) -> tuple[str, dict[str, list[object]]]:
    """A recvonly session for the kinds in `wanted`, until that many frames of each kind were
    decoded; (the answer, the frames by kind). The viewer is not the box: run it on a loop of
    its own (its DTLS handshake holds its loop longer than the slow-callback guard allows)."""
    restrict_ice_addresses(["127.0.0.1"])
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in wanted:
        peer.addTransceiver(kind, direction="recvonly")
    received: dict[str, list[object]] = {kind: [] for kind in wanted}
    done = asyncio.Event()
    pulls: list[asyncio.Task[None]] = []

    @peer.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def pull() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:  # the session ended
                    return
                received[track.kind].append(frame)
                if all(len(received[kind]) >= count for kind, count in wanted.items()):
                    done.set()

        pulls.append(asyncio.create_task(pull()))

    await peer.setLocalDescription(await peer.createOffer())
    url = f"{base}/live/{STREAM}/whep"
    headers = {"Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as client:
        async with client.post(url, data=peer.localDescription.sdp, headers=headers) as response:
            assert response.status == 201, await response.text()
            location = response.headers["Location"]
            answer = await response.text()
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(30):
            await done.wait()
        async with client.delete(base + location) as response:
            assert response.status == 200
    await peer.close()
    await asyncio.gather(*pulls)
    return answer, received


def test_a_whep_viewer_hears_the_sine_and_sees_the_pictures(sine_daemon: DaemonProcess) -> None:
    # Ten pictures, and a second of 20 ms frames decoded by aiortc's Opus decoder.
    answer, received = asyncio.run(whep(sine_daemon.url, {"audio": 50, "video": 10}))
    kinds = {m.kind: m for m in sdp.SessionDescription.parse(answer).media}
    assert kinds["audio"].direction == "sendonly"
    assert [c.mimeType.lower() for c in kinds["audio"].rtp.codecs] == ["audio/opus"]
    for picture in received["video"]:
        assert isinstance(picture, av.VideoFrame)
        assert (picture.width, picture.height) == (320, 240)
    sounds = received["audio"]
    assert all(isinstance(s, av.AudioFrame) and s.sample_rate == OPUS_RATE for s in sounds)
    # The sine peaks near -21 dBFS (2900 of 32767); Opus' silence would be 0 or a few units.
    assert max(s16_peak(sound) for sound in sounds if isinstance(sound, av.AudioFrame)) > 1000
    _, body = http(sine_daemon.url + "/api/v1/streams")
    assert json.loads(body)["streams"][0]["viewers"] == 0


def test_a_video_only_offer_still_works_on_a_stream_with_sound(
    sine_daemon: DaemonProcess,
) -> None:
    answer, received = asyncio.run(whep(sine_daemon.url, {"video": 10}))
    assert [m.kind for m in sdp.SessionDescription.parse(answer).media] == ["video"]
    assert len(received["video"]) >= 10


def test_the_level_reads_the_sine(sine_daemon: DaemonProcess) -> None:
    expected = peak_of_the_stand_in(SINE)
    assert -30 < expected < -10  # the stand-in is a sine of amplitude 1/8, spread on two channels
    reading = until(lambda: level(sine_daemon), what="edged_audio_level_dbfs")
    assert reading == pytest.approx(expected, abs=0.1)


def test_a_silent_stand_in_reads_below_minus_60(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(settings(SILENCE))
    reading = until(lambda: level(daemon), what="edged_audio_level_dbfs")
    assert reading < -60
    assert reading == -120.0  # digital silence reads the documented floor
    assert daemon.stop() == 0


# -- the audio thread alone: Opus only while someone listens, on the AAC's clock --------------


def test_opus_is_encoded_only_while_wanted_on_the_same_clock() -> None:
    spec = AudioSpec("lavfi", paced_graph(SINE), 48_000, 128_000)
    aac: list[EncodedPacket] = []
    opus: list[EncodedPacket] = []
    levels: list[float] = []
    wanted = threading.Event()
    origin = time.monotonic()
    capture = AudioCapture(
        "cam",
        spec,
        lambda: origin,
        lambda packet, _: aac.append(packet),
        lambda stage, samples: None,
        lambda reason: None,
        deliver_opus=opus.append,
        opus_wanted=wanted.is_set,
        level=levels.append,
    )
    capture.start()
    try:
        until(lambda: len(aac) >= 30, what="AAC packets")
        assert not opus  # nobody listened
        wanted.set()
        until(lambda: len(opus) >= 25, what="Opus packets")
        wanted.clear()
        stopped_at = len(aac)
        until(lambda: len(aac) >= stopped_at + 10, what="more AAC packets")
        held = len(opus)
        until(lambda: len(aac) >= stopped_at + 20, what="more AAC packets")
        assert len(opus) == held  # nobody listens any more
        until(lambda: levels, what="a level")
    finally:
        capture.stop()
    # Opus' first packet starts on an AAC frame's boundary, less libopus' look-ahead (both
    # encoders stamp their packets back by their own delay: 312 and 1024 samples).
    look_ahead = min(p.pts for p in aac if p.pts > opus[0].pts) - opus[0].pts
    assert 0 < look_ahead <= 1024
    assert all(b.pts - a.pts == OPUS_FRAME for a, b in itertools.pairwise(opus))
    assert all(packet.keyframe and packet.time_base == Fraction(1, OPUS_RATE) for packet in opus)
    decoder = av.CodecContext.create("libopus", "r")
    frames = [frame for packet in opus for frame in decoder.decode(av.Packet(packet.data))]
    assert max(s16_peak(frame) for frame in frames) > 1000
    assert levels[0] == pytest.approx(peak_of_the_stand_in(SINE), abs=0.1)


# -- OpusStage: re-buffering 1024-sample frames into 960-sample Opus frames --------------------


def tone(samples: int, rate: int = 48_000) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
    values = [0.25 * math.sin(2 * math.pi * 440 * n / rate) for n in range(samples)]
    data = struct.pack(f"={samples}f", *values)
    for plane in frame.planes:
        plane.update(data)
    frame.sample_rate = rate
    return frame


def test_opus_frames_follow_the_pts_and_start_again_after_a_jump() -> None:
    stage = OpusStage(48_000)
    packets = [p for n in range(15) for p in stage.feed(tone(1024), 10_000 + n * 1024)]
    assert len(packets) == 15 * 1024 // OPUS_FRAME  # every whole 20 ms at once
    pts = [packet.pts for packet in packets]
    assert all(b - a == OPUS_FRAME for a, b in itertools.pairwise(pts))
    look_ahead = 10_000 - pts[0]
    assert 0 < look_ahead < OPUS_FRAME
    after = stage.feed(tone(1024), 500_000) + stage.feed(tone(1024), 501_024)
    assert after and after[-1].pts == 500_000 + OPUS_FRAME - look_ahead  # a new start, same clock
    stage.stop()
    assert not stage.running
    again = [p for n in range(3) for p in stage.feed(tone(1024), 900_000 + n * 1024)]
    assert stage.running and again and again[0].pts == 900_000 - look_ahead


def test_opus_pts_stay_on_the_clock_from_another_rate() -> None:
    stage = OpusStage(44_100)
    packets = [p for n in range(20) for p in stage.feed(tone(1024, 44_100), 44_100 + n * 1024)]
    assert packets and all(packet.time_base == Fraction(1, OPUS_RATE) for packet in packets)
    assert abs(packets[0].pts - OPUS_RATE) < OPUS_FRAME  # one second in, at 48 kHz

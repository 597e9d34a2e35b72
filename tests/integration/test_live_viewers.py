"""Live viewer accounting against the running daemon: the WHEP viewer cap under concurrent offers,
abandoned offers giving their slot back, offers without H.264, and HLS viewers expiring."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver

from edged.media.webrtc import restrict_ice_addresses
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import DaemonProcess, eventually_in_thread, shared_daemon, still_running

pytestmark = pytest.mark.integration

STREAM = "/live/test-pattern"
SDP = {"Content-Type": "application/sdp"}
WEBRTC_VIEWERS = re.compile(
    rb'^edged_live_viewers\{protocol="webrtc",stream="test-pattern"\} (\S+)$', re.M
)
HLS_VIEWERS = re.compile(
    rb'^edged_live_viewers\{protocol="hls",stream="test-pattern"\} (\S+)$', re.M
)
OUTPUT_DROPS = re.compile(
    rb'^edged_frames_dropped_total\{stage="output",stream="test-pattern"\} (\S+)$', re.M
)


def live(max_viewers: int, **more: object) -> dict[str, dict[str, object]]:
    return {
        "mdns": {"enabled": False},
        "media": {"pattern_size": "320x240", "pattern_fps": 15, "gop_seconds": 1.0},
        "live": {"ice_addresses": ["127.0.0.1"], "max_viewers": max_viewers, **more},
    }


def wait_for_segments(daemon: DaemonProcess) -> str:
    """The playlist once the stream has a segment."""
    deadline = time.monotonic() + 20
    while True:
        status, body = http(daemon.url + STREAM + "/index.m3u8")
        if status == 200:
            return body.decode()
        assert time.monotonic() < deadline, "no HLS segment in 20 s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def shared_five_viewers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module's tests of a cap of five (a start costs ~3.5 s a test): each
    ends with no viewer left, as it checks."""
    with shared_daemon(tmp_path_factory.mktemp("five"), live(5), "test-pattern") as daemon:
        yield daemon


@pytest.fixture
def five_viewers(shared_five_viewers: DaemonProcess) -> Iterator[DaemonProcess]:
    yield from still_running(shared_five_viewers)


def gauge(daemon: DaemonProcess, pattern: re.Pattern[bytes]) -> float:
    _, metrics = http(daemon.url + "/metrics")
    found = pattern.search(metrics)
    return float(found.group(1)) if found else 0.0


Offerer = Callable[..., Awaitable[RTCPeerConnection]]


@pytest.fixture
async def offerer() -> AsyncIterator[Offerer]:
    """Makes viewers' peers with their offers; closed at teardown, whatever the test did."""
    peers: list[RTCPeerConnection] = []

    async def make(codec: str = "") -> RTCPeerConnection:
        peers.append(await make_offer(codec))
        return peers[-1]

    yield make
    for peer in peers:
        await peer.close()


async def make_offer(codec: str = "") -> RTCPeerConnection:
    """A viewer's peer with its offer made; `codec` ("video/VP8") limits what it offers."""
    restrict_ice_addresses(["127.0.0.1"])
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = peer.addTransceiver("video", direction="recvonly")
    capabilities = RTCRtpReceiver.getCapabilities("video")
    assert capabilities is not None
    if codec:
        transceiver.setCodecPreferences([c for c in capabilities.codecs if c.mimeType == codec])
    await peer.setLocalDescription(await peer.createOffer())
    return peer


async def post_offer(
    client: aiohttp.ClientSession, url: str, peer: RTCPeerConnection
) -> tuple[int, str, dict[str, str]]:
    async with client.post(url, data=peer.localDescription.sdp, headers=SDP) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_thirty_concurrent_offers_admit_exactly_five(
    five_viewers: DaemonProcess, offerer: Offerer
) -> None:
    peers = [await offerer() for _ in range(30)]
    url = five_viewers.url + STREAM + "/whep"
    async with aiohttp.ClientSession() as client:
        answers = await asyncio.gather(*(post_offer(client, url, peer) for peer in peers))
        admitted = [headers for status, _, headers in answers if status == 201]
        refused = [(text, headers) for status, text, headers in answers if status == 503]
        assert (len(admitted), len(refused)) == (5, 25), [status for status, _, _ in answers]
        for text, headers in refused:
            assert "5 viewers" in text and len(text) < 200
            assert int(headers["Retry-After"]) > 0
        assert gauge(five_viewers, WEBRTC_VIEWERS) == 5
        for headers in admitted:
            async with client.delete(five_viewers.url + headers["Location"]) as response:
                assert response.status == 200
    assert gauge(five_viewers, WEBRTC_VIEWERS) == 0


async def test_an_offer_without_h264_is_refused_and_leaks_nothing(
    five_viewers: DaemonProcess, offerer: Offerer
) -> None:
    peer = await offerer("video/VP8")
    dropped = gauge(five_viewers, OUTPUT_DROPS)  # the module's daemon: other tests' sessions
    async with aiohttp.ClientSession() as client:
        status, text, _ = await post_offer(client, five_viewers.url + STREAM + "/whep", peer)
    assert status == 400
    assert "H.264" in text and "VP8" in text and len(text) < 200
    _, body = http(five_viewers.url + "/api/v1/streams")
    assert b'"viewers": 0' in body
    assert gauge(five_viewers, WEBRTC_VIEWERS) == 0
    assert gauge(five_viewers, OUTPUT_DROPS) == dropped


# An H.264 video section a browser would send, without the DTLS fingerprint and setup role.
NO_DTLS = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=recvonly\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
)


@pytest.mark.parametrize(
    "offer",
    [
        "v=0\r\nm=video garbage\r\n",  # the parser asserts
        NO_DTLS,  # aiortc: 'NoneType' object has no attribute 'role'
        NO_DTLS.replace("packetization-mode=1", "packetization-mode=0"),  # no common codec
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    ],
    ids=["unparsable", "no-dtls", "packetization-mode-0", "no-codec"],
)
async def test_a_bad_offer_is_answered_with_no_exception_text(
    five_viewers: DaemonProcess, offer: str
) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.post(five_viewers.url + STREAM + "/whep", data=offer, headers=SDP) as response,
    ):
        text = await response.text()
    assert response.status == 400
    assert len(text) < 200
    assert not re.search(r"object|attribute|Error|Traceback|'|/\w+/", text), text
    assert gauge(five_viewers, WEBRTC_VIEWERS) == 0


async def test_offers_that_never_connect_give_their_slots_back(
    start_daemon: StartDaemon, offerer: Offerer
) -> None:
    """The offerers post and then never answer ICE: the box releases them after [live]
    ice_timeout (1 s here, 10 s by default)."""
    daemon = await asyncio.to_thread(start_daemon, live(2, ice_timeout=1.0))
    await asyncio.to_thread(wait_for_segments, daemon)
    url = daemon.url + STREAM + "/whep"
    peers = [await offerer() for _ in range(3)]
    async with aiohttp.ClientSession() as client:
        answers = [await post_offer(client, url, peer) for peer in peers]
        assert [status for status, _, _ in answers] == [201, 201, 503]
        assert answers[2][2]["Retry-After"] == "1"  # the daemon took the key
        await eventually_in_thread(
            lambda: gauge(daemon, WEBRTC_VIEWERS) == 0,
            40,
            "abandoned WHEP sessions give their slots back",
        )
        status, _, _ = await post_offer(client, url, await offerer())
        assert status == 201
    assert await asyncio.to_thread(daemon.stop) == 0


def test_hls_viewers_expire_after_the_last_fetch(five_viewers: DaemonProcess) -> None:
    """A viewer counts for a few segment durations (1 s here) after its last segment fetch."""
    deadline = time.monotonic() + 20
    while gauge(five_viewers, HLS_VIEWERS) != 1:
        assert time.monotonic() < deadline, "a segment fetch did not count an HLS viewer"
        playlist = wait_for_segments(five_viewers)
        segment = [line for line in playlist.splitlines() if line.endswith(".m4s")][-1]
        assert http(f"{five_viewers.url}{STREAM}/{segment}")[0] == 200
    deadline = time.monotonic() + 30
    while gauge(five_viewers, HLS_VIEWERS) != 0:
        assert time.monotonic() < deadline, "the HLS viewer still counts after it left"
        time.sleep(0.5)

"""WhepSessions with a real aiortc offerer in process, and the ICE timeout shortened: offers never
completed give their slot back, a connected viewer keeps it, a cancelled offer leaks nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from prometheus_client import CollectorRegistry

from edged.media.live import LiveHub
from edged.media.webrtc import WhepError, WhepSessions, restrict_ice_addresses
from edged.metrics import LiveMetrics

pytestmark = pytest.mark.integration

ICE_TIMEOUT = 0.5


@pytest.fixture
async def sessions() -> AsyncIterator[WhepSessions]:
    restrict_ice_addresses(["127.0.0.1"])
    whep = WhepSessions(1, LiveMetrics(CollectorRegistry()), ice_timeout=ICE_TIMEOUT)
    yield whep
    await whep.close_all()


@pytest.fixture
def hub() -> LiveHub:
    return LiveHub("cam", 320, 240, 15)


@pytest.fixture
async def offers() -> AsyncIterator[list[RTCPeerConnection]]:
    peers: list[RTCPeerConnection] = []
    yield peers
    for peer in peers:
        await peer.close()


async def offer(peers: list[RTCPeerConnection]) -> RTCPeerConnection:
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peers.append(peer)
    peer.addTransceiver("video", direction="recvonly")
    await peer.setLocalDescription(await peer.createOffer())
    return peer


def no_keyframe() -> None:
    pass


async def test_an_offer_never_connected_gives_its_slot_back(
    sessions: WhepSessions, hub: LiveHub, offers: list[RTCPeerConnection]
) -> None:
    first = await offer(offers)
    session_id, _ = await sessions.create("cam", hub, first.localDescription.sdp, no_keyframe)
    watch = sessions.sessions[session_id].ice_watch
    assert watch is not None
    second = await offer(offers)
    with pytest.raises(WhepError) as refused:
        await sessions.create("cam", hub, second.localDescription.sdp, no_keyframe)
    assert refused.value.status == 503 and refused.value.retry_after == 1
    async with asyncio.timeout(20):  # the first offerer never applies its answer
        await watch
    assert not sessions.sessions and not hub.viewers
    await sessions.create("cam", hub, second.localDescription.sdp, no_keyframe)
    assert sessions.count("cam") == 1


async def test_a_connected_viewer_keeps_its_slot(
    sessions: WhepSessions, hub: LiveHub, offers: list[RTCPeerConnection]
) -> None:
    viewer = await offer(offers)
    session_id, answer = await sessions.create("cam", hub, viewer.localDescription.sdp, no_keyframe)
    await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    session = sessions.sessions[session_id]
    watch = session.ice_watch
    assert watch is not None
    async with asyncio.timeout(20):
        await watch  # ends when the peer connects, or when the timeout releases the session
    assert session.connected.is_set()
    assert sessions.sessions == {session_id: session}


async def test_an_offer_cancelled_mid_negotiation_leaks_nothing(
    sessions: WhepSessions, hub: LiveHub, offers: list[RTCPeerConnection]
) -> None:
    peer = await offer(offers)
    creating = asyncio.create_task(
        sessions.create("cam", hub, peer.localDescription.sdp, no_keyframe)
    )
    await asyncio.sleep(0)  # the offer is checked and its slot taken before the first await
    assert not creating.done()
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating
    assert not sessions.sessions and not hub.viewers
    other = await offer(offers)
    await sessions.create("cam", hub, other.localDescription.sdp, no_keyframe)
    assert sessions.count("cam") == 1

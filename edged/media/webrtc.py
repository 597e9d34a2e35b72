"""WebRTC viewers through WHEP (RFC 9725), with aiortc, without re-encoding per viewer.

The encoder's H.264 packets go to each viewer as they are: aiortc packetises `av.Packet` objects
a track returns. A new viewer starts from the GOP cache; a viewer's keyframe request asks the
encoder for an IDR, at most once a second per stream.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import aioice.ice
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, sdp
from aiortc.mediastreams import MediaStreamTrack

from edged.errors import EdgedError
from edged.media.encoders import TIME_BASE
from edged.media.live import LiveHub, Viewer
from edged.media.packets import with_parameter_sets
from edged.metrics import LiveMetrics

logger = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL = 1.0


class WhepError(EdgedError):
    """A WHEP request that cannot be served; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def restrict_ice_addresses(addresses: Iterable[str]) -> None:
    """Offer host candidates on these addresses only (the venue LAN interface, or loopback in
    tests). aioice has no option for it, so its address lister is replaced, process-wide."""
    chosen = list(addresses)
    if chosen:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(chosen)


class PassthroughTrack(MediaStreamTrack):
    """A video track whose `recv` hands aiortc the encoder's packets."""

    kind = "video"

    def __init__(self, hub: LiveHub, viewer: Viewer, metrics: LiveMetrics) -> None:
        super().__init__()
        self._hub = hub
        self._viewer = viewer
        self._first_pts: int | None = None
        self._bytes = metrics.bytes.labels(hub.stream, "webrtc")

    async def recv(self) -> av.Packet:
        encoded = await self._viewer.queue.get()
        if self._first_pts is None:
            self._first_pts = encoded.pts
        packet = av.Packet(with_parameter_sets(encoded, self._hub.extradata))
        self._bytes.inc(packet.size)
        packet.pts = encoded.pts - self._first_pts
        packet.time_base = Fraction(TIME_BASE)
        return packet


@dataclass
class WhepSession:
    id: str
    stream: str
    peer: RTCPeerConnection
    viewer: Viewer
    hub: LiveHub
    created: float = field(default_factory=time.monotonic)


def _has_video(sdp: str) -> bool:
    return any(line.startswith("m=video") for line in sdp.splitlines())


class WhepSessions:
    """Every WHEP session of the box; `close_all` on shutdown."""

    def __init__(self, max_per_stream: int, metrics: LiveMetrics) -> None:
        self._max = max_per_stream
        self._metrics = metrics
        self.sessions: dict[str, WhepSession] = {}
        self._last_keyframe_request: dict[str, float] = {}

    def count(self, stream: str) -> int:
        return sum(1 for session in self.sessions.values() if session.stream == stream)

    async def create(
        self, stream: str, hub: LiveHub, offer: str, request_keyframe: Callable[[], None]
    ) -> tuple[str, str]:
        """(session id, SDP answer) for an offer; WhepError with the status otherwise."""
        if not offer.lstrip().startswith("v=0"):
            raise WhepError(400, "the body is not an SDP offer (it must start with v=0)")
        try:
            sdp.SessionDescription.parse(offer)
        except Exception as error:  # aiortc's parser asserts; any failure means a bad offer
            raise WhepError(400, f"malformed SDP offer: {error!r}") from error
        if not _has_video(offer):
            raise WhepError(400, "the offer has no video media section (m=video)")
        if self.count(stream) >= self._max:
            raise WhepError(503, f"stream {stream} has its {self._max} viewers; try again later")
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        viewer = hub.join()
        session = WhepSession(secrets.token_urlsafe(12), stream, peer, viewer, hub)
        try:
            # The track and the codec preference come first, so that the offer's video section
            # is matched to them and the answer carries H.264 only.
            sender = peer.addTrack(PassthroughTrack(hub, viewer, self._metrics))
            transceiver = next(t for t in peer.getTransceivers() if t.sender == sender)
            transceiver.setCodecPreferences(
                [
                    codec
                    for codec in RTCRtpSender.getCapabilities("video").codecs
                    if codec.mimeType.lower() == "video/h264"
                ]
            )
            # aiortc turns a viewer's PLI into "encode a keyframe", which a passed-through
            # packet cannot do: ask the stream's encoder instead.
            sender._send_keyframe = lambda: self._keyframe(  # type: ignore[method-assign]
                stream, request_keyframe
            )
            await peer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            if "H264" not in "".join(
                line for line in offer.splitlines() if line.startswith("a=rtpmap")
            ):
                raise WhepError(400, "the offer has no H.264 video (the box sends H.264 only)")
            await peer.setLocalDescription(await peer.createAnswer())
        except WhepError:
            await self._discard(session)
            raise
        except (
            ValueError,
            AttributeError,
            TypeError,
            KeyError,
            IndexError,
            AssertionError,
        ) as error:
            await self._discard(session)
            raise WhepError(400, f"the SDP offer cannot be used: {error}") from error
        self.sessions[session.id] = session
        self._metrics.viewers.labels(stream, "webrtc").set(self.count(stream))

        @peer.on("connectionstatechange")
        async def on_state() -> None:
            if peer.connectionState in ("failed", "closed"):
                await self.delete(stream, session.id)

        logger.info("WHEP %s: viewer %s joined (%d now)", stream, session.id, self.count(stream))
        return session.id, peer.localDescription.sdp

    def _keyframe(self, stream: str, request_keyframe: Callable[[], None]) -> None:
        now = time.monotonic()
        if now - self._last_keyframe_request.get(stream, 0.0) >= KEYFRAME_REQUEST_INTERVAL:
            self._last_keyframe_request[stream] = now
            request_keyframe()

    async def _discard(self, session: WhepSession) -> None:
        session.hub.leave(session.viewer)
        await session.peer.close()

    async def delete(self, stream: str, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None or session.stream != stream:
            return False
        del self.sessions[session_id]
        await self._discard(session)
        self._metrics.viewers.labels(stream, "webrtc").set(self.count(stream))
        logger.info("WHEP %s: viewer %s left (%d now)", stream, session_id, self.count(stream))
        return True

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.delete(session.stream, session.id)
        await asyncio.sleep(0)

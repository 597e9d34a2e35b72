"""WebRTC viewers through WHEP (RFC 9725), with aiortc, without re-encoding per viewer.

The encoder's H.264 packets go to each viewer as they are: aiortc packetises `av.Packet` objects
a track returns. A new viewer starts from the GOP cache; a viewer's keyframe request asks the
encoder for an IDR, at most once a second per stream. When the offer asks for sound and the
stream has some, the stream's Opus packets (encoded once, in its audio thread) go the same way;
otherwise the answer's audio section is inactive. The box only sends: each section of its answer
is sendonly or inactive, never receiving (and decoding) what a viewer would send.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import aioice.ice
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, sdp
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.errors import EdgedError
from edged.media.encoders import TIME_BASE
from edged.media.live import LiveHub, Viewer
from edged.media.packets import EncodedPacket, with_parameter_sets
from edged.media.viewers import ViewerSlots
from edged.metrics import LiveMetrics

logger = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL = 1.0
# Seconds a session may take from its answer to a connected peer before its slot is released.
ICE_TIMEOUT = 10.0
SUPPORTED_CODECS = "H.264"
_CODEC_NAME = re.compile(r"[A-Za-z0-9.-]{1,16}")
_NOT_CODECS = {"rtx", "red", "ulpfec", "flexfec-03"}
# What aiortc raises for an offer it cannot negotiate: its checks assert or raise these.
_NEGOTIATION_ERRORS = (
    ValueError,
    AttributeError,
    TypeError,
    KeyError,
    IndexError,
    AssertionError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)


class WhepError(EdgedError):
    """A WHEP request that cannot be served; `status` is the HTTP status to answer with, and
    `retry_after` the seconds after which trying again may succeed."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def restrict_ice_addresses(addresses: Iterable[str]) -> None:
    """Offer host candidates on these addresses only (the venue LAN interface, or loopback in
    tests). aioice has no option for it, so its address lister is replaced, process-wide."""
    chosen = list(addresses)
    if chosen:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(chosen)


class _PacketTrack(MediaStreamTrack):
    """A track that hands aiortc a stream's encoded packets, timed from its first one."""

    def __init__(self, hub: LiveHub, metrics: LiveMetrics) -> None:
        super().__init__()
        self._hub = hub
        self._first_pts: int | None = None
        self._bytes = metrics.bytes.labels(hub.stream, "webrtc")

    def _packet(self, encoded: EncodedPacket, data: bytes, time_base: Fraction) -> av.Packet:
        if self._first_pts is None:
            self._first_pts = encoded.pts
        packet = av.Packet(data)
        self._bytes.inc(packet.size)
        packet.pts = encoded.pts - self._first_pts
        packet.time_base = time_base
        return packet


class PassthroughTrack(_PacketTrack):
    """A video track whose `recv` hands aiortc the encoder's packets."""

    kind = "video"

    def __init__(self, hub: LiveHub, viewer: Viewer, metrics: LiveMetrics) -> None:
        super().__init__(hub, metrics)
        self._viewer = viewer

    async def recv(self) -> av.Packet:
        encoded = await self._viewer.queue.get()
        data = with_parameter_sets(encoded, self._hub.extradata)
        return self._packet(encoded, data, Fraction(TIME_BASE))


class OpusTrack(_PacketTrack):
    """An audio track whose `recv` hands aiortc the stream's Opus packets (its Opus encoder's
    `pack` sends them as they are).

    The track joins the stream's Opus feed at its first `recv`, which aiortc makes once the
    peer is connected: sound does not pile up (to be played late) while ICE and DTLS proceed,
    and an offer never completed neither keeps Opus encoded nor overflows a feed."""

    kind = "audio"

    def __init__(self, hub: LiveHub, metrics: LiveMetrics) -> None:
        super().__init__(hub, metrics)
        self.viewer: Viewer | None = None
        self._left = False

    async def recv(self) -> av.Packet:
        if self.viewer is None:
            if self._left:
                raise MediaStreamError
            self.viewer = self._hub.join_audio()
        encoded = await self.viewer.queue.get()
        return self._packet(encoded, encoded.data, encoded.time_base)

    def leave(self) -> None:
        """Leave the stream's Opus feed, or never join it (idempotent)."""
        self._left = True
        if self.viewer is not None:
            self._hub.leave_audio(self.viewer)


def offer_problem(offer: str) -> str | None:
    """Why an SDP offer cannot be answered (the reason of a 400), or None.

    The reason never carries the parser's exception text, and of the offer's own text only codec
    names that look like codec names."""
    if not offer.lstrip().startswith("v=0"):
        return "the body is not an SDP offer (it must start with v=0)"
    try:
        description = sdp.SessionDescription.parse(offer)
    except Exception:  # aiortc's parser asserts; any failure means a bad offer
        return "malformed SDP offer"
    video = [media for media in description.media if media.kind == "video"]
    if not video:
        return "the offer has no video media section (m=video)"
    offered = {codec.mimeType.partition("/")[2] for media in video for codec in media.rtp.codecs}
    if any(name.lower() == "h264" for name in offered):
        return None
    names = sorted(
        name for name in offered if _CODEC_NAME.fullmatch(name) and name.lower() not in _NOT_CODECS
    )[:5]
    offers = f" (it offers {', '.join(names)})" if names else ""
    return f"the offer has no H.264 video{offers}; the box sends {SUPPORTED_CODECS} only"


def offer_wants_audio(offer: str) -> bool:
    """Whether an offer (one `offer_problem` passed) asks to receive Opus sound: an audio
    section, not rejected (port 0), that may receive and lists Opus."""
    try:
        description = sdp.SessionDescription.parse(offer)
    except Exception:  # aiortc's parser asserts; such an offer was refused before
        return False
    return any(
        media.kind == "audio"
        and media.port != 0
        and media.direction in (None, "recvonly", "sendrecv")
        and any(codec.mimeType.lower() == "audio/opus" for codec in media.rtp.codecs)
        for media in description.media
    )


def _send_only(peer: RTCPeerConnection, track: MediaStreamTrack, mime_type: str) -> RTCRtpSender:
    """Add `track` to `peer` in a sendonly transceiver that offers `mime_type` only. aiortc's
    addTrack makes it sendrecv: a viewer's offer to send too would have the box receive and
    decode media into a queue nobody reads."""
    sender = peer.addTrack(track)
    transceiver = next(t for t in peer.getTransceivers() if t.sender == sender)
    transceiver.direction = "sendonly"
    transceiver.setCodecPreferences(
        [
            codec
            for codec in RTCRtpSender.getCapabilities(track.kind).codecs
            if codec.mimeType.lower() == mime_type
        ]
    )
    return sender


@dataclass
class WhepSession:
    id: str
    stream: str
    peer: RTCPeerConnection
    viewer: Viewer
    hub: LiveHub
    audio: OpusTrack | None = None  # when the answer carries sound
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ice_watch: asyncio.Task[None] | None = None


class WhepSessions:
    """Every WHEP session of the box; `close_all` on shutdown.

    A viewer slot is reserved before the first await of an offer and given back on every way
    out; a session whose peer has not connected `ice_timeout` seconds after its answer is
    released, so that offers nobody completes cannot hold the stream's slots."""

    def __init__(
        self, max_per_stream: int, metrics: LiveMetrics, *, ice_timeout: float = ICE_TIMEOUT
    ) -> None:
        self._slots = ViewerSlots(max_per_stream)
        self._metrics = metrics
        self._ice_timeout = ice_timeout
        self.sessions: dict[str, WhepSession] = {}
        self._last_keyframe_request: dict[str, float] = {}

    def count(self, stream: str) -> int:
        return sum(1 for session in self.sessions.values() if session.stream == stream)

    async def create(
        self,
        stream: str,
        hub: LiveHub,
        offer: str,
        request_keyframe: Callable[[], None],
        *,
        sound: bool = False,
    ) -> tuple[str, str]:
        """(session id, SDP answer) for an offer; WhepError with the status otherwise. `sound`:
        the stream has sound, sent when the offer asks for it."""
        problem = offer_problem(offer)
        if problem is not None:
            raise WhepError(400, problem)
        session_id = secrets.token_urlsafe(12)
        if not self._slots.reserve(stream, session_id):
            raise WhepError(
                503,
                f"stream {stream} has its {self._slots.limit} viewers; try again later",
                retry_after=math.ceil(self._ice_timeout),
            )
        try:
            session = self._open(session_id, stream, hub)
        except BaseException:
            self._slots.release(session_id)
            raise
        try:
            self._add_pictures(session, request_keyframe)
            if sound and offer_wants_audio(offer):
                self._add_sound(session)
            await self._answer(session, offer)
        except BaseException:  # also a client gone mid-offer (the handler is cancelled)
            await self._discard(session)
            raise
        self.sessions[session_id] = session
        session.ice_watch = asyncio.create_task(
            self._release_unconnected(session), name=f"whep-ice-{session_id}"
        )
        self._metrics.viewers.labels(stream, "webrtc").set(self.count(stream))
        logger.info("WHEP %s: viewer %s joined (%d now)", stream, session_id, self.count(stream))
        return session_id, session.peer.localDescription.sdp

    def _open(self, session_id: str, stream: str, hub: LiveHub) -> WhepSession:
        """The session's peer, joined to the stream's pictures (no I/O)."""
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = WhepSession(session_id, stream, peer, hub.join(), hub)

        @peer.on("connectionstatechange")
        async def on_state() -> None:
            if peer.connectionState == "connected":
                session.connected.set()
            elif peer.connectionState in ("failed", "closed"):
                await self.delete(stream, session_id)

        return session

    def _add_pictures(self, session: WhepSession, request_keyframe: Callable[[], None]) -> None:
        """The session's H.264 track, before the offer is applied (no I/O): so that the offer's
        video section is matched to it and the answer carries H.264 only."""
        track = PassthroughTrack(session.hub, session.viewer, self._metrics)
        sender = _send_only(session.peer, track, "video/h264")
        # aiortc turns a viewer's PLI into "encode a keyframe", which a passed-through packet
        # cannot do: ask the stream's encoder instead.
        sender._send_keyframe = lambda: self._keyframe(  # type: ignore[method-assign]
            session.stream, request_keyframe
        )

    def _add_sound(self, session: WhepSession) -> None:
        """The session's Opus track, fed by the stream's Opus packets (no I/O). aiortc puts the
        senders of a peer in one media stream (one msid), which a browser plays in sync."""
        session.audio = OpusTrack(session.hub, self._metrics)
        _send_only(session.peer, session.audio, "audio/opus")

    async def _answer(self, session: WhepSession, offer: str) -> None:
        """Apply the offer and make the answer; WhepError 400 for an offer aiortc refuses."""
        peer = session.peer
        try:
            await peer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            for transceiver in peer.getTransceivers():
                # What the offer added (a section it sends, one we have no track for): inactive,
                # never recvonly, so that aiortc receives and decodes nothing.
                if transceiver.sender.track is None:
                    transceiver.direction = "inactive"
            await peer.setLocalDescription(await peer.createAnswer())
        except _NEGOTIATION_ERRORS as error:
            logger.info("WHEP %s: offer refused: %r", session.stream, error)
            raise WhepError(
                400,
                "the SDP offer cannot be used: it needs ICE credentials, a DTLS fingerprint and "
                f"{SUPPORTED_CODECS} video with packetization-mode 1",
            ) from error

    async def _release_unconnected(self, session: WhepSession) -> None:
        try:
            async with asyncio.timeout(self._ice_timeout):
                await session.connected.wait()
        except TimeoutError:
            logger.info(
                "WHEP %s: viewer %s did not connect within %.0f s",
                session.stream,
                session.id,
                self._ice_timeout,
            )
            await self.delete(session.stream, session.id)

    def _keyframe(self, stream: str, request_keyframe: Callable[[], None]) -> None:
        now = time.monotonic()
        if now - self._last_keyframe_request.get(stream, 0.0) >= KEYFRAME_REQUEST_INTERVAL:
            self._last_keyframe_request[stream] = now
            request_keyframe()

    async def _discard(self, session: WhepSession) -> None:
        """Give the slot and the packet feed back at once, then close the peer."""
        self._slots.release(session.id)
        session.hub.leave(session.viewer)
        if session.audio is not None:
            session.audio.leave()
        if session.ice_watch is not None and session.ice_watch is not asyncio.current_task():
            session.ice_watch.cancel()
        await session.peer.close()

    async def delete(self, stream: str, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None or session.stream != stream:
            return False
        del self.sessions[session_id]
        self._metrics.viewers.labels(stream, "webrtc").set(self.count(stream))
        await self._discard(session)
        logger.info("WHEP %s: viewer %s left (%d now)", stream, session_id, self.count(stream))
        return True

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.delete(session.stream, session.id)
        await asyncio.sleep(0)

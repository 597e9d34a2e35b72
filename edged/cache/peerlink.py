"""Peer replication, the I/O: asking the boxes of this event what they hold, and downloading a
clip from one of them (Range resume, sha256 verified). Blocking: the replicator's pass thread
calls it. The decisions are in `edged.cache.peers`.

Every request is signed with a key derived from the peers' secret (`[peers] secret_file`), and a
listing or manifest is taken only when the answer is signed too (`edged.cache.peerauth`): the
secret never leaves the box, and a responder without it cannot pose as a peer (review 19). A
peer's listing names the manifest's pinned set, staged and exclusive clips included, which a
guest must never see (review 16b).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from edged.cache.peerauth import (
    ANSWER_HEADER,
    TIME_HEADER,
    answer_verifies,
    authorization,
    clock_offset,
    new_nonce,
    peer_key,
    secret_weakness,
)
from edged.cache.peers import (
    FLOOR_RATE,
    MIN_DOWNLOAD_SECONDS,
    PeerListing,
    PeerManifest,
    PeerOffer,
    download_deadline,
    parse_listing,
)
from edged.errors import EdgedError, StartupError
from edged.fileio import file_sha256

logger = logging.getLogger(__name__)

INDEX_PATH = "/api/v1/peer/index"
MANIFEST_PATH = "/api/v1/peer/manifest"
ASSET_PATH = "/api/v1/peer/assets/"
CHUNK = 256 * 1024
MAX_LISTING = 8 * 1024 * 1024  # bytes of a listing or manifest read from a peer
LISTING_SECONDS = 10.0  # a listing or manifest answered within this, else the peer is left out
LISTING_THREADS = 8  # peers asked for their listings at once
MIN_SECRET = 16  # characters of the peers' secret, as of the admin token


class PeerError(EdgedError):
    """A peer did not answer as expected (gone, refused the secret, broke off)."""


class _OtherClock(Exception):
    """A peer refused the request's time and stated its own clock (`offset` s ahead)."""

    def __init__(self, offset: float) -> None:
        super().__init__(offset)
        self.offset = offset


class PeerRefused(EdgedError):
    """A peer's bytes do not match the sha256 it gave: refused, never stored."""


@dataclass(frozen=True)
class PeerAddress:
    """A box of this event found on the LAN: where its HTTP server answers."""

    node: str  # as mDNS names it: a listing naming another node is not taken
    address: str
    port: int
    event: str = ""  # as mDNS names it ("" = not checked)


class PeerSource:
    """The peers known now (set from the loop by the browser) and the HTTP to them."""

    def __init__(
        self,
        secret: str,
        timeout: float = 5.0,
        floor_rate: float = FLOOR_RATE,
        min_seconds: float = MIN_DOWNLOAD_SECONDS,
    ) -> None:
        weakness = secret_weakness(secret, MIN_SECRET)
        if weakness:
            raise StartupError(
                f"the peer secret is {weakness}; write a random one in [peers] secret_file, the "
                "same on every box of the event: head -c 32 /dev/urandom | base64 > peer.secret"
            )
        self.key = peer_key(secret)  # the secret itself is never kept nor sent
        self._timeout = timeout
        self._floor = (floor_rate, min_seconds)  # a download's deadline (download_deadline)
        self._lock = threading.Lock()
        self._peers: tuple[PeerAddress, ...] = ()
        self._offsets: dict[tuple[str, int], float] = {}  # a peer's clock ahead of ours, s

    def set_peers(self, peers: Iterable[PeerAddress]) -> None:
        with self._lock:
            self._peers = tuple(peers)

    def peers(self) -> tuple[PeerAddress, ...]:
        with self._lock:
            return self._peers

    def _connect(self, address: str, port: int) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(address, port, timeout=self._timeout)

    def _headers(
        self, peer: tuple[str, int], path: str, nonce: str, range_: str = ""
    ) -> dict[str, str]:
        """A signed GET of `path`: the MAC, never the secret; the time by the peer's clock
        when it told us ours is off."""
        with self._lock:
            now = time.time() + self._offsets.get(peer, 0.0)
        signed = authorization(self.key, "GET", path, range_, now, nonce)
        return {"Authorization": signed, **({"Range": range_} if range_ else {})}

    def _get(self, address: str, port: int, path: str) -> tuple[bytes, str]:
        """A small body, signed by a holder of the key, and its ETag; PeerError otherwise.
        A peer that refuses our clock and states its own is asked once more by its clock."""
        try:
            return self._get_once(address, port, path)
        except _OtherClock as other:
            with self._lock:
                self._offsets[(address, port)] = other.offset
            logger.info(
                "peer %s:%d: its clock is %+.0f s from this box's", address, port, other.offset
            )
        try:
            return self._get_once(address, port, path)
        except _OtherClock as error:  # its clock stepped meanwhile: next pass
            raise PeerError(f"{address}:{port} refused this box's time twice") from error

    def _get_once(self, address: str, port: int, path: str) -> tuple[bytes, str]:
        connection = self._connect(address, port)
        nonce = new_nonce()
        try:
            connection.request("GET", path, headers=self._headers((address, port), path, nonce))
            response = connection.getresponse()
            body = _read_until(response, MAX_LISTING + 1, time.monotonic() + LISTING_SECONDS)
            offset = clock_offset(response.getheader(TIME_HEADER, ""), time.time())
            if response.status == 403 and offset is not None:
                raise _OtherClock(offset)
            if response.status in (401, 403, 429):
                raise PeerError(f"{address}:{port} {refusal(response.status, body)}")
            if response.status != 200:
                raise PeerError(f"{address}:{port}{path} answered HTTP {response.status}")
            if len(body) > MAX_LISTING:
                raise PeerError(f"{address}:{port}{path} answered more than {MAX_LISTING} bytes")
            if not answer_verifies(self.key, nonce, body, response.getheader(ANSWER_HEADER, "")):
                raise PeerError(f"{address}:{port}{path}: the answer is not signed by a peer")
            return body, response.getheader("ETag", "").strip('"')
        except (OSError, http.client.HTTPException) as error:
            raise PeerError(f"{address}:{port}{path}: {error}") from error
        finally:
            connection.close()

    def listings(self) -> list[PeerListing]:
        """What each known peer holds; a peer that does not answer is left out (debug line)."""
        peers = self.peers()
        if not peers:
            return []
        with ThreadPoolExecutor(min(LISTING_THREADS, len(peers))) as pool:
            listings = list(pool.map(self._listing, peers))  # a silent peer never adds up
        return [listing for listing in listings if listing is not None]

    def _listing(self, peer: PeerAddress) -> PeerListing | None:
        """The peer's listing, if it names the node and event mDNS gave (review 19, finding 5)."""
        try:
            body, _ = self._get(peer.address, peer.port, INDEX_PATH)
            listing = parse_listing(
                json.loads(body), peer.address, peer.port, peer.node, peer.event
            )
        except (PeerError, ValueError) as error:
            logger.debug("peer %s left out of this pass: %s", peer.node, error)
            return None
        if listing is None:
            logger.debug("peer %s left out of this pass: not its listing", peer.node)
        return listing

    def answers(self, peer: PeerAddress) -> str:
        """ "" when `peer` takes a request signed with this box's key and signs back a listing
        naming the node and event mDNS gave; else why not (`edged doctor`)."""
        try:
            body, _ = self._get(peer.address, peer.port, INDEX_PATH)
            listing = parse_listing(
                json.loads(body), peer.address, peer.port, peer.node, peer.event
            )
        except PeerError as error:
            return str(error)
        except ValueError:
            return f"{peer.address}:{peer.port} answered a listing that is not JSON"
        if listing is None:
            return f"{peer.address}:{peer.port} answered another node's or event's listing"
        return ""

    def manifest(self, manifest: PeerManifest) -> bytes:
        """The manifest document the peer follows, as it read it upstream."""
        body, etag = self._get(manifest.address, manifest.port, MANIFEST_PATH)
        if etag != manifest.etag:
            raise PeerError(f"peer {manifest.node}'s manifest changed meanwhile ({etag})")
        return body

    def download(self, offer: PeerOffer, part: Path, progress: Callable[[int], None]) -> None:
        """The offer's bytes into `part`, resuming what it holds, then verified by sha256."""
        have = part.stat().st_size if part.exists() else 0
        if have > offer.size:
            part.unlink()
            have = 0
        if have < offer.size:
            self._receive(offer, part, have, progress)
        actual = file_sha256(part)
        if actual != offer.sha256 and have:  # the part kept may be what is wrong: once afresh
            part.unlink(missing_ok=True)
            self._receive(offer, part, 0, progress)
            actual = file_sha256(part)
        if actual != offer.sha256:
            part.unlink(missing_ok=True)
            raise PeerRefused(
                f"{offer.name} from peer {offer.node}: sha256 {actual} != {offer.sha256}; refused"
            )

    def _receive(
        self, offer: PeerOffer, part: Path, have: int, progress: Callable[[int], None]
    ) -> None:
        connection = self._connect(offer.address, offer.port)
        path = ASSET_PATH + quote(offer.name)
        deadline = download_deadline(offer.size - have, time.monotonic(), *self._floor)
        try:
            peer = (offer.address, offer.port)
            headers = self._headers(peer, path, new_nonce(), f"bytes={have}-" if have else "")
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            if response.status == 200:
                have = 0  # the whole file: start over
            elif response.status != 206:
                raise PeerError(f"peer {offer.node}: {offer.name} answered HTTP {response.status}")
            with part.open("r+b" if have else "wb") as handle:
                handle.seek(have)
                while have < offer.size and (chunk := response.read1(CHUNK)):
                    if time.monotonic() > deadline:
                        raise PeerError(f"peer {offer.node}: {offer.name} too slow, given up")
                    wanted = chunk[: offer.size - have]
                    handle.write(wanted)
                    have += len(wanted)
                    progress(have)
                handle.truncate()
        except (OSError, http.client.HTTPException) as error:
            raise PeerError(f"peer {offer.node}: {offer.name}: {error}") from error
        finally:
            connection.close()
        if have < offer.size:
            raise PeerError(f"peer {offer.node}: {offer.name} broke off at {have} bytes")


def refusal(status: int, body: bytes) -> str:
    """A peer's refusal in the crew's words, from its status and its own reason."""
    try:
        reason = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        reason = ""
    if status == 429:
        return (
            "refuses this box for a minute after too many badly signed requests: a different "
            "[peers] secret_file"
        )
    if status == 401:
        return "asked for no peer signature: not an edged peer API there"
    if reason == "wrong peer signature":
        return "refused this box's signature: a different [peers] secret_file"
    shown = str(reason)[:60] if reason else f"HTTP {status}"
    return f"refused this box's request ({shown})"


def _read_until(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    """Up to `limit` bytes of the body, or PeerError once `deadline` (monotonic) passes."""
    body = bytearray()
    while len(body) < limit and (chunk := response.read1(min(CHUNK, limit - len(body)))):
        body += chunk
        if time.monotonic() > deadline:
            raise PeerError("answered too slowly")
    return bytes(body)

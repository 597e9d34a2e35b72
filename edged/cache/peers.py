"""Peer replication, the decisions: what a peer box offers, which source a missing clip comes
from, and which peer's manifest to follow while the upstream is out of reach. No I/O here
(`edged.cache.peerlink` does the HTTP); time and facts are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edged.cache.manifest import ManifestEntry
from edged.cache.ranges import valid_name

UPSTREAM = "upstream"  # the source that is not a peer
PEER_ORIGIN = "peer:"  # an asset's `source` when it came from a peer: "peer:<node>"
NO_PEER = "upstream out of reach, no peer has it"  # a pass's reason a clip is not here
REFUSED_SECONDS = 300.0  # a peer's offer that failed verification is not taken again this long
RATE_WEIGHT = 0.5  # how much the newest download counts in a source's rate
FLOOR_RATE = 64 * 1024  # bytes/s a peer download must keep on average ...
MIN_DOWNLOAD_SECONDS = 30.0  # ... after this many seconds at least (review 19, finding 4)
SIZE_FACTOR = 2  # a peer's prepared copy may be this many times the upstream object's size ...
SIZE_SLACK = 1 << 20  # ... plus this many bytes (a remux's container overhead)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class PeerOffer:
    """One clip a peer holds: its prepared bytes (`size`, `sha256`, what the download is
    verified against) and the sha256 of the upstream object it was made from."""

    node: str
    address: str
    port: int
    name: str
    size: int
    sha256: str
    origin_sha256: str


@dataclass(frozen=True)
class PeerManifest:
    """The manifest a peer replicates from: its object key, ETag, and the upstream's
    Last-Modified for it as the upstream stated it (unix seconds, carried along from peer to
    peer in signed listings; never a box's own clock, which may be wrong at a venue)."""

    node: str
    address: str
    port: int
    key: str
    etag: str
    modified: float


@dataclass(frozen=True)
class PeerListing:
    """What one peer answered: its clips by name and the manifest it follows (if any)."""

    node: str
    offers: Mapping[str, PeerOffer] = field(default_factory=dict)
    manifest: PeerManifest | None = None


def peers_off(secret_file: str, event: str, default_event: str) -> str:
    """Why peer replication stays off though [peers] is enabled, or "": no secret of its own
    (never the admin token), or the event never set (boxes of other events would mix their
    clips; review 19, finding 1 and low item 15)."""
    if not secret_file:
        return (
            "no [peers] secret_file (the same random secret on every box of the event: "
            "head -c 32 /dev/urandom | base64 > peer.secret; chmod 600)"
        )
    if event == default_event:
        return f"[node] event is not set (still {default_event!r})"
    return ""


def parse_listing(
    document: object, address: str, port: int, node: str = "", event: str = ""
) -> PeerListing | None:
    """A peer's `/api/v1/peer/index` answer, or None when it is not one, or names another
    node or event than mDNS gave (`node`, `event`, when given); entries that do not look right
    are left out one by one (a peer is trusted with the secret, not with shapes)."""
    if not isinstance(document, dict):
        return None
    named = document.get("node")
    if not isinstance(named, str) or not _NODE.match(named) or node not in ("", named):
        return None
    if event and document.get("event") != event:
        return None
    node = named
    offers: dict[str, PeerOffer] = {}
    assets = document.get("assets")
    for item in assets if isinstance(assets, list) else ():
        offer = _offer(item, node, address, port)
        if offer is not None:
            offers[offer.name] = offer
    return PeerListing(node, offers, _manifest(document.get("manifest"), node, address, port))


def _offer(item: object, node: str, address: str, port: int) -> PeerOffer | None:
    if not isinstance(item, dict):
        return None
    name, size = item.get("name"), item.get("size")
    sha256, origin = item.get("sha256"), item.get("origin_sha256", "")
    if not (isinstance(name, str) and valid_name(name)):
        return None
    if type(size) is not int or size <= 0:
        return None
    if not (isinstance(sha256, str) and _SHA256.match(sha256)):
        return None
    if not (isinstance(origin, str) and (origin == "" or _SHA256.match(origin))):
        return None
    return PeerOffer(node, address, port, name, size, sha256, origin)


def _manifest(item: object, node: str, address: str, port: int) -> PeerManifest | None:
    if not isinstance(item, dict):
        return None
    key, etag, modified = item.get("key"), item.get("etag"), item.get("modified")
    if not (isinstance(key, str) and key and isinstance(etag, str) and etag):
        return None
    if not isinstance(modified, int | float) or isinstance(modified, bool):
        return None
    return PeerManifest(node, address, port, key, etag, float(modified))


def listing_document(
    node: str, event: str, assets: Iterable[Any], manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The answer to `/api/v1/peer/index`: every clip here with its sizes and checksums, and
    the manifest this box follows (key, ETag, the upstream's Last-Modified)."""
    return {
        "node": node,
        "event": event,
        "assets": [
            {
                "name": asset.name,
                "size": asset.size,
                "sha256": asset.sha256,
                "origin_sha256": asset.origin_sha256,
            }
            for asset in assets
        ],
        "manifest": dict(manifest) if manifest else None,
    }


def freshest_manifest(listings: Iterable[PeerListing], key: str) -> PeerManifest | None:
    """Of the peers following manifest `key`, the one the upstream modified last (by its own
    Last-Modified, not any box's clock)."""
    found = [
        listing.manifest
        for listing in listings
        if listing.manifest is not None and listing.manifest.key == key
    ]
    return max(
        found, key=lambda manifest: (manifest.modified, manifest.etag, manifest.node), default=None
    )


def offers_for(
    entry: ManifestEntry, listings: Iterable[PeerListing], refused: Mapping[Any, float], now: float
) -> list[PeerOffer]:
    """The peers' offers of `entry`: made from the object the manifest names (its sha256,
    when it gives one), and not refused lately."""
    offers = []
    for listing in listings:
        offer = listing.offers.get(entry.name)
        if offer is None:
            continue
        if entry.sha256 and offer.origin_sha256 != entry.sha256:
            continue
        if refused.get(offer_identity(offer), 0.0) > now:
            continue
        offers.append(offer)
    return offers


def offer_bound(known: int | None, offers: Sequence[PeerOffer]) -> int:
    """The most bytes an offer of a clip may claim: SIZE_FACTOR times the upstream object's
    size (the manifest's or the upstream's, when known) plus SIZE_SLACK; with no size known,
    the same over the smallest offer (one inflated claim never sets the bar for the others)."""
    base = known if known else min((offer.size for offer in offers), default=0)
    return SIZE_FACTOR * base + SIZE_SLACK


def plausible_offers(offers: Sequence[PeerOffer], known: int | None) -> list[PeerOffer]:
    """The offers within `offer_bound`; the others are never planned for nor downloaded."""
    bound = offer_bound(known, offers)
    return [offer for offer in offers if offer.size <= bound]


def peer_plan_size(known: int | None, offers: Sequence[PeerOffer]) -> int | None:
    """The bytes a clip is planned with when only peers have it: the smallest plausible offer
    (at least the upstream size known); a larger offer is taken only if the plan has room."""
    sizes = [offer.size for offer in plausible_offers(offers, known)]
    return max(known or 0, min(sizes)) if sizes else None


def fits_on_disk(free: int, need: int, min_free: int) -> bool:
    """Whether a peer download of `need` more bytes leaves the disk its `min_free` bytes
    (recordings come first; review 19, finding 3)."""
    return free - max(need, 0) >= min_free


def offer_identity(offer: PeerOffer) -> tuple[str, str, str]:
    """What a refusal belongs to: this peer's these bytes of this clip."""
    return (offer.node, offer.name, offer.sha256)


Source = PeerOffer | str  # a peer's offer, or UPSTREAM


def order_sources(
    upstream_up: bool, offers: Sequence[PeerOffer], rates: Mapping[str, float]
) -> list[Source]:
    """The sources to try for one clip, in order. With the upstream out of reach: the peers,
    the fastest known first, then the ones not measured. Otherwise the upstream is measured
    first; then a peer goes before it when it was faster, or is not measured yet (a peer on
    the venue LAN usually is faster); slower peers stay behind it, in case it fails."""
    known = sorted(
        (offer for offer in offers if offer.node in rates),
        key=lambda offer: (-rates[offer.node], offer.node),
    )
    unknown = sorted((offer for offer in offers if offer.node not in rates), key=_by_node)
    if not upstream_up:
        return [*known, *unknown]
    upstream_rate = rates.get(UPSTREAM)
    if upstream_rate is None:
        return [UPSTREAM, *known, *unknown]
    faster = [offer for offer in known if rates[offer.node] > upstream_rate]
    slower = [offer for offer in known if rates[offer.node] <= upstream_rate]
    return [*faster, *unknown, UPSTREAM, *slower]


def _by_node(offer: PeerOffer) -> str:
    return offer.node


def download_deadline(
    size: int, now: float, floor_rate: float = FLOOR_RATE, minimum: float = MIN_DOWNLOAD_SECONDS
) -> float:
    """When a download of `size` bytes started at `now` is given up: at the floor rate, and
    never sooner than `minimum` seconds (a slow-dripping peer never holds the pass)."""
    return now + max(minimum, size / floor_rate)


def next_rate(previous: float | None, size: int, seconds: float) -> float | None:
    """A source's rate in bytes per second after a download of `size` bytes in `seconds`:
    a moving average; None when nothing can be learned (a resumed tail, a zero time)."""
    if size <= 0 or seconds <= 0:
        return previous
    rate = size / seconds
    return rate if previous is None else RATE_WEIGHT * rate + (1 - RATE_WEIGHT) * previous


def part_name(name: str, node: str) -> str:
    """The partial file of a download from peer `node`: resumed only from that peer (its
    prepared bytes are not the upstream's, nor another peer's)."""
    return f"{name}.{node}.peer"


def part_clip(part: str) -> str:
    """The clip name of a peer download's partial file."""
    return part.removesuffix(".peer").rpartition(".")[0]

"""What a box of the same event may ask: the clips here with their checksums, the manifest this
box follows, and a clip's bytes (Range). Every route needs the peers' secret (`[peers]
secret_file`, else the admin token): the pinned set holds staged and exclusive clips, which a
guest must never see or fetch (review 16b), and a peer needs them all.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from edged.cache.peerlink import ASSET_PATH, INDEX_PATH, MANIFEST_PATH
from edged.cache.peers import listing_document
from edged.cache.ranges import valid_name
from edged.cache.store import Asset

logger = logging.getLogger(__name__)

WARN_SECONDS = 300.0  # a wrong secret is a warning this often, else debug (a box left misset)


class Refusals:
    """When a wrong secret was last a warning: one line per WARN_SECONDS, the rest at debug."""

    def __init__(self) -> None:
        self._next = float("-inf")

    def level(self, now: float) -> int:
        if now < self._next:
            return logging.DEBUG
        self._next = now + WARN_SECONDS
        return logging.WARNING


@dataclass(frozen=True)
class PeerShelf:
    """What the peer routes read: the secret, who this box is, its clips and manifest."""

    secret: str
    node: Callable[[], str]
    event: Callable[[], str]
    assets: Callable[[], Sequence[Asset]]
    path: Callable[[str], Path]
    manifest: Callable[[], tuple[dict[str, Any], bytes] | None]  # (key, etag, read_at), bytes
    refusals: Refusals = field(default_factory=Refusals)


SHELF = web.AppKey("peer_shelf", PeerShelf)


def _allowed(request: web.Request, shelf: PeerShelf) -> web.Response | None:
    """None when the request carries the peers' secret; else the refusal to send."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip() if scheme.lower() == "bearer" else ""
    if not presented:
        return web.json_response({"error": "peers only: send the event's peer secret"}, status=401)
    raw = presented.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(raw, shelf.secret.encode()):
        logger.log(
            shelf.refusals.level(time.monotonic()),
            "refused %s from %s: wrong peer secret (check [peers] secret_file on both boxes)",
            request.path,
            request.remote,
        )
        return web.json_response({"error": "wrong peer secret"}, status=403)
    return None


async def index(request: web.Request) -> web.Response:
    shelf = request.app[SHELF]
    refused = _allowed(request, shelf)
    if refused is not None:
        return refused
    shared = shelf.manifest()
    document = listing_document(
        shelf.node(), shelf.event(), shelf.assets(), shared[0] if shared else None
    )
    return web.json_response(document, headers={"Cache-Control": "no-store"})


async def manifest(request: web.Request) -> web.Response:
    shelf = request.app[SHELF]
    refused = _allowed(request, shelf)
    if refused is not None:
        return refused
    shared = shelf.manifest()
    if shared is None:
        return web.json_response({"error": "no manifest read yet"}, status=404)
    facts, raw = shared
    return web.Response(
        body=raw,
        content_type="application/json",
        headers={"ETag": f'"{facts["etag"]}"', "Cache-Control": "no-store"},
    )


async def asset(request: web.Request) -> web.StreamResponse:
    shelf = request.app[SHELF]
    refused = _allowed(request, shelf)
    if refused is not None:
        return refused
    name = request.match_info["name"]
    if not valid_name(name) or not any(held.name == name for held in shelf.assets()):
        return web.json_response({"error": "no such clip here"}, status=404)
    # aiohttp answers Range (206, 416) and reads the file in its executor.
    return web.FileResponse(shelf.path(name), headers={"Cache-Control": "no-store"})


def install(app: web.Application, shelf: PeerShelf) -> None:
    """The peer routes, on an app whose box replicates with its peers."""
    app[SHELF] = shelf
    app.router.add_get(INDEX_PATH, index)
    app.router.add_get(MANIFEST_PATH, manifest)
    app.router.add_get(ASSET_PATH + "{name}", asset)

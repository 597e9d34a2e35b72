"""What a box of the same event may ask: the clips here with their checksums, the manifest this
box follows, and a clip's bytes (Range). Every route needs a request signed with the key of the
peers' secret (`[peers] secret_file`; `edged.cache.peerauth`), and signs its listing and manifest
answers: the pinned set holds staged and exclusive clips, which a guest must never see or fetch
(review 16b), and a peer needs them all. A client that sends too many unsigned or wrongly
signed requests is refused for a while (429) before its MAC is even looked at (review 19).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from edged.cache.peerauth import ANSWER_HEADER, TIME_HEADER, RequestVerifier, WrongTries, answer_mac
from edged.cache.peerlink import ASSET_PATH, INDEX_PATH, MANIFEST_PATH
from edged.cache.peers import listing_document
from edged.cache.ranges import valid_name
from edged.cache.store import Asset
from edged.web.join_guard import client_key

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
    """What the peer routes read: the key of the peers' secret, who this box is, its clips and
    manifest."""

    key: bytes
    node: Callable[[], str]
    event: Callable[[], str]
    assets: Callable[[], Sequence[Asset]]
    path: Callable[[str], Path]
    manifest: Callable[[], tuple[dict[str, Any], bytes] | None]  # (key, etag, modified), bytes
    refusals: Refusals = field(default_factory=Refusals)
    clock: Callable[[], float] = time.time  # this box's unix time, as the MACs check it
    tries: WrongTries = field(default_factory=WrongTries)
    verifier: RequestVerifier = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifier", RequestVerifier(self.key))


SHELF = web.AppKey("peer_shelf", PeerShelf)
# Refusals of requests whose MAC is right (a clock far off, a nonce seen): a box of the event,
# not a guess at the key, so they use up no wrong tries (review s7a, D1).
KEY_HOLDERS = frozenset({"stale", "replayed"})


def _refusal(status: int, reason: str) -> web.Response:
    response = web.json_response({"error": reason}, status=status)
    if status == 429:
        response.headers["Retry-After"] = "60"
    return response


def _allowed(request: web.Request, shelf: PeerShelf) -> tuple[str, web.Response | None]:
    """(the request's nonce, None) when a holder of the peers' key signed it; else the
    refusal to send."""
    client, now = client_key(request.remote or ""), shelf.clock()
    if shelf.tries.blocked(client, now):
        return "", _refusal(429, "too many wrong peer requests; wait a minute")
    nonce, reason = shelf.verifier.check(
        request.method,
        request.raw_path,
        request.headers.get("Range", ""),
        request.headers.get("Authorization", ""),
        now,
    )
    if not reason:
        return nonce, None
    if reason not in KEY_HOLDERS:  # the limiter is against guessing the key
        shelf.tries.failed(client, now)
    if reason == "missing":
        return "", _refusal(401, "peers only: sign the request with the event's peer secret")
    logger.log(
        shelf.refusals.level(time.monotonic()),
        "refused %s from %s: %s peer signature (check [peers] secret_file on both boxes "
        "and their clocks)",
        request.path,
        request.remote,
        reason,
    )
    refusal = _refusal(403, f"{reason} peer signature")
    if reason == "stale":  # the peer's clock is off: it may sign with this one's
        refusal.headers[TIME_HEADER] = str(int(now))
    return "", refusal


def _signed(nonce: str, shelf: PeerShelf, body: bytes, **headers: str) -> web.Response:
    """An answer a peer takes: its body signed over the request's nonce."""
    headers = {**headers, ANSWER_HEADER: answer_mac(shelf.key, nonce, body)}
    headers["Cache-Control"] = "no-store"
    return web.Response(body=body, content_type="application/json", headers=headers)


async def index(request: web.Request) -> web.Response:
    shelf = request.app[SHELF]
    nonce, refused = _allowed(request, shelf)
    if refused is not None:
        return refused
    shared = shelf.manifest()
    document = listing_document(
        shelf.node(), shelf.event(), shelf.assets(), shared[0] if shared else None
    )
    return _signed(nonce, shelf, json.dumps(document).encode())


async def manifest(request: web.Request) -> web.Response:
    shelf = request.app[SHELF]
    nonce, refused = _allowed(request, shelf)
    if refused is not None:
        return refused
    shared = shelf.manifest()
    if shared is None:
        return web.json_response({"error": "no manifest read yet"}, status=404)
    facts, raw = shared
    return _signed(nonce, shelf, raw, ETag=f'"{facts["etag"]}"')


async def asset(request: web.Request) -> web.StreamResponse:
    shelf = request.app[SHELF]
    _, refused = _allowed(request, shelf)
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

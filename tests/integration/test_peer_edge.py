"""The cache in front never passes the peer routes (review 19, finding 6): peers talk box to
box, so the shipped configs/nginx/edged-edge.conf answers /api/v1/peer/ with 404 itself, even to
a correctly signed request, and the box never sees it."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edged.cache.peerauth import authorization, new_nonce, peer_key
from edged.cache.peerlink import INDEX_PATH
from edged.web import peer_api
from tests.edge_cache import running_edge

pytestmark = pytest.mark.integration

SECRET = "the-event-peer-secret-0123456789"


def status_of(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def test_the_edge_answers_the_peer_routes_with_404_and_never_passes_them(
    tmp_path: Path,
) -> None:
    app = web.Application()
    peer_api.install(
        app,
        peer_api.PeerShelf(
            key=peer_key(SECRET),
            node=lambda: "box",
            event=lambda: "gala",
            assets=list,
            path=lambda name: tmp_path / name,
            manifest=lambda: None,
        ),
    )
    box = TestServer(app, host="127.0.0.1")
    await box.start_server()
    edge_context = running_edge(tmp_path / "nginx", f"127.0.0.1:{box.port}")
    edge = await asyncio.to_thread(edge_context.__enter__)
    try:
        direct = str(box.make_url(INDEX_PATH))
        for url in (direct, edge.url + INDEX_PATH):
            key = peer_key(SECRET)
            signed = authorization(key, "GET", INDEX_PATH, "", time.time(), new_nonce())
            headers = {"Authorization": signed}
            expected = 200 if url == direct else 404
            assert await asyncio.to_thread(status_of, url, headers) == expected, url
        assert await asyncio.to_thread(status_of, edge.url + "/api/v1/other", {}) == 404
        to_box = await asyncio.to_thread(edge.to_box)
        assert to_box["/api/v1/other"] == 1  # the edge passes the rest
        assert not [uri for uri in to_box if uri.startswith("/api/v1/peer/")]
    finally:
        await asyncio.to_thread(edge_context.__exit__, None, None, None)
        await box.close()

"""Peer replication at the venue (#19): real peer endpoints (aiohttp on loopback, real asset
stores with real clips) and, at the end, three real daemons finding each other over mDNS on
loopback with the upstream (moto) out of reach for two of them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from edged.cache.peerauth import (
    ANSWER_HEADER,
    WrongTries,
    answer_verifies,
    authorization,
    new_nonce,
    peer_key,
)
from edged.cache.peerlink import ASSET_PATH, INDEX_PATH, PeerAddress, PeerSource
from edged.cache.peers import NO_PEER, REFUSED_SECONDS, part_name
from edged.cache.store import Asset, AssetStore
from edged.cache.upstream import Replicator
from edged.fileio import file_sha256
from edged.s3bucket import S3Bucket, UpstreamUnreachable
from edged.upload.s3 import S3Store
from edged.web import peer_api
from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.integration.test_replication import gets, put_manifest, upload_clip
from tests.integration.upload_support import make_store, moto, upstream_settings
from tests.s3server import MotoProcess
from tests.support import DaemonProcess, until

pytestmark = pytest.mark.integration
__all__ = ["moto"]

SECRET = "the-event-peer-secret-0123456789"
OTHER_SECRET = "another-event-secret-0123456789"
MANIFEST_KEY = "manifest.json"


def closed_port() -> int:
    """A loopback port nothing listens on: the upstream out of reach."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_upstream() -> S3Store:
    return S3Store(
        endpoint=f"127.0.0.1:{closed_port()}",
        secure=False,
        region="us-east-1",
        bucket="edged",
        access_key="edged",
        secret_key="not-used-nothing-answers",  # noqa: S106 - nothing listens
    )


def manifest_document(clips: dict[str, bytes]) -> bytes:
    entries = [
        {"name": name, "pin": True, "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in clips.items()
    ]
    return json.dumps({"assets": entries}).encode()


def holding(root: Path, clips: dict[str, Path]) -> AssetStore:
    """A peer's store holding `clips`, as its replicator would have stored them."""
    store = AssetStore(root, max_bytes=10**9)
    for name, source in clips.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        store.add(source, name, pin=True, origin="upstream", origin_sha256=digest)
    return store


@asynccontextmanager
async def peer_server(
    node: str,
    store: AssetStore,
    manifest: bytes,
    ranges: list[str] | None = None,
    tries: WrongTries | None = None,
    inflated: int = 0,
    drip: bool = False,
    manifest_facts: dict[str, Any] | None = None,
    clock_ahead: float = 0.0,
) -> AsyncIterator[TestServer]:
    """A peer's endpoint, as the daemon installs it, on a loopback port; `ranges` gets the
    Range header ("" for none) of every request for a clip's bytes; `inflated`, when set, is
    the size its listing claims for every clip; `drip`: a clip's bytes come one every 0.1 s."""

    def assets() -> list[Asset]:
        held = store.assets()
        return [replace(asset, size=inflated) for asset in held] if inflated else list(held)

    @web.middleware
    async def note_range(request: web.Request, handler: Handler) -> web.StreamResponse:
        if ranges is not None and request.path.startswith(ASSET_PATH):
            ranges.append(request.headers.get("Range", ""))
        if drip and request.path.startswith(ASSET_PATH):
            return await dripping(request, handler)
        return await handler(request)

    app = web.Application(middlewares=[note_range])
    facts = manifest_facts or {"key": MANIFEST_KEY, "etag": "etag-1", "modified": 100.0}
    shared = (facts, manifest)
    peer_api.install(
        app,
        peer_api.PeerShelf(
            key=peer_key(SECRET),
            node=lambda: node,
            event=lambda: "gala",
            assets=assets,
            path=store.path,
            manifest=lambda: shared,
            tries=tries or WrongTries(burst=100),
            clock=lambda: time.time() + clock_ahead,
        ),
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def at(node: str, server: TestServer) -> PeerAddress:
    assert server.port is not None
    return PeerAddress(node, "127.0.0.1", server.port)


def corrupt(path: Path) -> bytes:
    """Flip one byte in the middle of `path` (same size); the original bytes."""
    original = path.read_bytes()
    middle = len(original) // 2
    path.write_bytes(original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :])
    return original


@pytest.fixture
def clips(tmp_path: Path) -> dict[str, Path]:
    made = tmp_path / "made"
    made.mkdir()
    return {name: make_clip(made / name, seconds=1) for name in ("teaser.mp4", "finale.mp4")}


async def test_a_peer_serving_a_corrupt_file_is_refused_and_the_clip_comes_from_another(
    tmp_path: Path, clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    manifest = manifest_document({name: path.read_bytes() for name, path in clips.items()})
    bad_store = await asyncio.to_thread(holding, tmp_path / "bad", clips)
    good_store = await asyncio.to_thread(holding, tmp_path / "good", clips)
    await asyncio.to_thread(corrupt, bad_store.path("teaser.mp4"))
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET)
    counted: list[str] = []
    replicator = Replicator(
        here, upstream, MANIFEST_KEY, "assets", peers=source, counted=counted.append
    )
    caplog.set_level(logging.INFO, logger="edged.cache.upstream")
    async with (
        peer_server("a-bad", bad_store, manifest) as bad,
        peer_server("b-good", good_store, manifest) as good,
    ):
        # "a-bad" sorts first among peers not measured yet: it is asked first.
        source.set_peers(
            [
                at("a-bad", bad),
                at("b-good", good),
            ]
        )
        fetched = await asyncio.to_thread(replicator.sync)
    assert fetched == ["teaser.mp4", "finale.mp4"]  # the manifest's order
    status = replicator.status()
    assert status["upstream_reachable"] is False and status["peers"] == ["a-bad", "b-good"]
    teaser, finale = here.get("teaser.mp4"), here.get("finale.mp4")
    assert teaser is not None and finale is not None
    # finale too from b-good: measured now, it goes before a peer not measured yet
    assert teaser.source == "peer:b-good" and finale.source == "peer:b-good"
    for name, made in clips.items():
        asset = here.get(name)
        assert asset is not None and asset.pinned
        assert asset.origin_sha256 == await asyncio.to_thread(file_sha256, made)
        assert asset.sha256 == await asyncio.to_thread(file_sha256, here.path(name))
    assert counted == ["peer", "peer"]
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().endswith("refused")]
    assert len(refusals) == 1 and "teaser.mp4 from peer a-bad" in refusals[0]
    assert not list(here.partial.iterdir())


async def test_a_clip_only_a_corrupt_peer_has_waits_and_is_retried(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    only = {"teaser.mp4": clips["teaser.mp4"]}
    manifest = manifest_document({"teaser.mp4": only["teaser.mp4"].read_bytes()})
    bad_store = await asyncio.to_thread(holding, tmp_path / "bad", only)
    original = await asyncio.to_thread(corrupt, bad_store.path("teaser.mp4"))
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET)
    now = 1000.0
    replicator = Replicator(here, upstream, MANIFEST_KEY, "assets", peers=source, clock=lambda: now)
    async with peer_server("a-bad", bad_store, manifest) as bad:
        source.set_peers([at("a-bad", bad)])
        assert await asyncio.to_thread(replicator.sync) == []
        assert here.get("teaser.mp4") is None and not list(here.partial.iterdir())
        waiting = {item["name"]: item for item in replicator.status()["not_replicated"]}
        assert waiting["teaser.mp4"]["kind"] == NO_PEER
        # The same bad bytes are not asked for again within the refusal's window ...
        assert await asyncio.to_thread(replicator.sync) == []
        # ... the peer mends its copy, and the window passes: the clip arrives.
        await asyncio.to_thread(bad_store.path("teaser.mp4").write_bytes, original)
        now += REFUSED_SECONDS + 1
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4"]
    asset = here.get("teaser.mp4")
    assert asset is not None and asset.source == "peer:a-bad"


async def test_a_peer_download_resumes_by_range_and_a_bad_part_is_fetched_afresh(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    only = {"teaser.mp4": clips["teaser.mp4"]}
    manifest = manifest_document({"teaser.mp4": only["teaser.mp4"].read_bytes()})
    store = await asyncio.to_thread(holding, tmp_path / "peer", only)
    stored = await asyncio.to_thread(store.path("teaser.mp4").read_bytes)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET)
    replicator = Replicator(here, upstream, MANIFEST_KEY, "assets", peers=source)
    part = here.partial / part_name("teaser.mp4", "a-peer")
    half = len(stored) // 2
    ranges: list[str] = []
    async with peer_server("a-peer", store, manifest, ranges) as server:
        source.set_peers([at("a-peer", server)])
        await asyncio.to_thread(part.write_bytes, stored[:half])  # a download broken off
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4"]
        assert ranges == [f"bytes={half}-"]  # only the rest crossed the LAN
        await asyncio.to_thread(here.remove, "teaser.mp4")
        await asyncio.to_thread(part.write_bytes, bytes(half))  # a part that is wrong
        ranges.clear()
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4"]
        assert ranges == [f"bytes={half}-", ""]  # resumed, did not verify: once afresh
    asset = here.get("teaser.mp4")
    assert asset is not None and asset.source == "peer:a-peer"
    assert not await asyncio.to_thread(lambda: list(here.partial.iterdir()))


async def test_an_inflated_offer_is_never_downloaded_and_the_clip_comes_from_an_honest_peer(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """Review 19, finding 3: a peer claiming 10**12 bytes for a clip (sorted first) is never
    asked for bytes, and does not make the clip "cannot fit" for the honest peer."""
    only = {"teaser.mp4": clips["teaser.mp4"]}
    manifest = manifest_document({"teaser.mp4": only["teaser.mp4"].read_bytes()})
    big_store = await asyncio.to_thread(holding, tmp_path / "big", only)
    good_store = await asyncio.to_thread(holding, tmp_path / "good", only)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**8)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET)
    replicator = Replicator(here, upstream, MANIFEST_KEY, "assets", peers=source)
    big_ranges: list[str] = []
    async with (
        peer_server("a-big", big_store, manifest, big_ranges, inflated=10**12) as big,
        peer_server("b-good", good_store, manifest) as good,
    ):
        source.set_peers([at("a-big", big), at("b-good", good)])
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4"]
    asset = here.get("teaser.mp4")
    assert asset is not None and asset.source == "peer:b-good"
    assert big_ranges == []
    assert not await asyncio.to_thread(lambda: list(here.partial.iterdir()))


async def dripping(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A clip's headers as the peer would answer, then its bytes one every 0.1 s."""
    answer = await handler(request)
    if answer.status >= 300:
        return answer
    name = request.match_info["name"]
    data = await asyncio.to_thread(request.app[peer_api.SHELF].path(name).read_bytes)
    response = web.StreamResponse(headers={"Content-Length": str(len(data))})
    await response.prepare(request)
    for index in range(len(data)):
        await response.write(data[index : index + 1])
        await asyncio.sleep(0.1)
    return response


async def test_a_slow_dripping_peer_is_given_up_and_the_clip_comes_from_another(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """Review 19, finding 4: a peer sending a byte every 0.1 s (each read within the socket
    timeout) no longer holds the pass for the clip's size x 0.1 s: the download has a deadline
    from its size at a floor rate, then the next peer gives the clip."""
    only = {"teaser.mp4": clips["teaser.mp4"]}
    manifest = manifest_document({"teaser.mp4": only["teaser.mp4"].read_bytes()})
    slow_store = await asyncio.to_thread(holding, tmp_path / "slow", only)
    good_store = await asyncio.to_thread(holding, tmp_path / "good", only)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**8)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET, floor_rate=10**6, min_seconds=1.0)
    replicator = Replicator(here, upstream, MANIFEST_KEY, "assets", peers=source)
    slow_ranges: list[str] = []
    async with (
        peer_server("a-slow", slow_store, manifest, slow_ranges, drip=True) as slow,
        peer_server("b-good", good_store, manifest) as good,
    ):
        source.set_peers([at("a-slow", slow), at("b-good", good)])
        fetched = await asyncio.wait_for(asyncio.to_thread(replicator.sync), 30.0)
    assert fetched == ["teaser.mp4"] and slow_ranges == [""]  # asked first, given up
    asset = here.get("teaser.mp4")
    assert asset is not None and asset.source == "peer:b-good"


async def test_a_listing_naming_another_node_or_event_than_mdns_is_not_taken(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """Review 19, finding 5: a box answering as "b-good" when mDNS named it "a-liar" (or for
    another event) is left out: it cannot take another box's name, rates or partial files."""
    store = await asyncio.to_thread(holding, tmp_path / "peer", clips)
    source = PeerSource(SECRET)
    async with (
        peer_server("b-good", store, b"{}") as liar,
        peer_server("b-good", store, b"{}") as good,
    ):
        assert liar.port is not None and good.port is not None
        source.set_peers(
            [
                PeerAddress("a-liar", "127.0.0.1", liar.port, "gala"),
                PeerAddress("b-good", "127.0.0.1", good.port, "gala"),
            ]
        )
        listings = await asyncio.to_thread(source.listings)
        assert [(listing.node, listing.offers["teaser.mp4"].port) for listing in listings] == [
            ("b-good", good.port)
        ]
        source.set_peers([PeerAddress("b-good", "127.0.0.1", good.port, "another-event")])
        assert await asyncio.to_thread(source.listings) == []


class Switchable:
    """The real upstream, or, while `down`, one out of reach (every call refused as a lost
    link is)."""

    def __init__(self, real: S3Store) -> None:
        self.real = real
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if self.down:

            def refused(*args: object, **kwargs: object) -> None:
                raise UpstreamUnreachable("out of reach (test)")

            return refused
        return getattr(self.real, name)


async def test_a_peers_manifest_is_provisional_and_the_buckets_is_read_once_it_is_back(
    tmp_path: Path, clips: dict[str, Path], moto: MotoProcess
) -> None:
    """Review 19, finding 2: a peer's listing gives a manifest with other bytes under the
    bucket's real ETag and a Last-Modified far ahead. While the upstream is out of reach the
    box follows it; once the upstream answers, the box reads the bucket's manifest (whatever
    the ETag says) and follows that."""
    for path in clips.values():
        await asyncio.to_thread(upload_clip, moto, path, 1)
    datas = {name: await asyncio.to_thread(path.read_bytes) for name, path in clips.items()}
    real = [
        {"name": n, "pin": True, "sha256": hashlib.sha256(d).hexdigest()} for n, d in datas.items()
    ]
    await asyncio.to_thread(put_manifest, moto, real)
    upstream = Switchable(make_store(moto))
    facts = await asyncio.to_thread(upstream.stat, MANIFEST_KEY)
    assert facts is not None
    only = {"teaser.mp4": clips["teaser.mp4"]}
    store = await asyncio.to_thread(holding, tmp_path / "peer", only)
    forged = manifest_document({"teaser.mp4": datas["teaser.mp4"]})
    claim = {"key": MANIFEST_KEY, "etag": facts.etag, "modified": 1e12}
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    source = PeerSource(SECRET)
    replicator = Replicator(here, cast(S3Bucket, upstream), MANIFEST_KEY, "assets", peers=source)
    async with peer_server("a-peer", store, forged, manifest_facts=claim) as server:
        source.set_peers([at("a-peer", server)])
        upstream.down = True
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4"]
        shared = replicator.shared_manifest()
        assert shared is not None and shared[1] == forged  # provisional
        upstream.down = False
        assert await asyncio.to_thread(replicator.sync) == ["finale.mp4"]
    shared = replicator.shared_manifest()
    assert shared is not None and json.loads(shared[1])["assets"] == real
    assert shared[0]["modified"] == facts.modified > 0  # the bucket's, not the peer's claim
    finale = here.get("finale.mp4")
    assert finale is not None and finale.source == "upstream"


async def test_an_upstream_lost_during_a_peer_download_does_not_cut_it_short(
    tmp_path: Path, clips: dict[str, Path], moto: MotoProcess
) -> None:
    """Review 19, low item 14: the manifest check between a peer download's chunks found the
    upstream gone and ended the pass; now the peer download goes on."""
    for path in clips.values():
        await asyncio.to_thread(upload_clip, moto, path, 1)
    datas = {name: await asyncio.to_thread(path.read_bytes) for name, path in clips.items()}
    entries = [
        {"name": n, "pin": True, "sha256": hashlib.sha256(d).hexdigest()} for n, d in datas.items()
    ]
    await asyncio.to_thread(put_manifest, moto, entries)
    upstream = Switchable(make_store(moto))
    store = await asyncio.to_thread(holding, tmp_path / "peer", clips)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    source = PeerSource(SECRET)
    replicator = Replicator(
        here, cast(S3Bucket, upstream), MANIFEST_KEY, "assets", manifest_poll=0.0, peers=source
    )

    class LoseUpstream(list[str]):
        def append(self, item: str) -> None:  # the peer is asked for a clip's bytes
            upstream.down = True
            super().append(item)

    async with peer_server("a-peer", store, b"{}", LoseUpstream()) as server:
        source.set_peers([at("a-peer", server)])
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4", "finale.mp4"]
    finale = here.get("finale.mp4")
    assert finale is not None and finale.source == "peer:a-peer"


async def test_a_peer_whose_clock_is_an_hour_off_still_replicates(
    tmp_path: Path, clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Pis at a venue may have no NTP: a peer refusing the request's time states its own
    clock, and the box signs with it from then on (the MAC, window and nonce still hold)."""
    only = {"teaser.mp4": clips["teaser.mp4"]}
    manifest = manifest_document({"teaser.mp4": only["teaser.mp4"].read_bytes()})
    store = await asyncio.to_thread(holding, tmp_path / "peer", only)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET)
    replicator = Replicator(here, upstream, MANIFEST_KEY, "assets", peers=source)
    caplog.set_level(logging.INFO, logger="edged.cache.peerlink")
    async with peer_server("a-peer", store, manifest, clock_ahead=3600.0) as server:
        source.set_peers([at("a-peer", server)])
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4"]
    said = [r.getMessage() for r in caplog.records if "its clock is" in r.getMessage()]
    assert len(said) == 1
    found = re.search(r"its clock is \+(\d+) s", said[0])
    assert found is not None and 3590 < int(found.group(1)) <= 3600


async def test_a_peer_download_never_takes_the_disk_under_its_free_space(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """Review 19, finding 3: recordings need the disk's [storage] min_free_bytes; a peer
    download that would go under it is not started."""
    only = {"teaser.mp4": clips["teaser.mp4"]}
    manifest = manifest_document({"teaser.mp4": only["teaser.mp4"].read_bytes()})
    store = await asyncio.to_thread(holding, tmp_path / "peer", only)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    upstream = await asyncio.to_thread(unreachable_upstream)
    source = PeerSource(SECRET)
    free = (await asyncio.to_thread(shutil.disk_usage, tmp_path)).free
    replicator = Replicator(
        here, upstream, MANIFEST_KEY, "assets", peers=source, min_free_bytes=free
    )
    ranges: list[str] = []
    async with peer_server("a-peer", store, manifest, ranges) as server:
        source.set_peers([at("a-peer", server)])
        assert await asyncio.to_thread(replicator.sync) == []
    assert ranges == [] and here.get("teaser.mp4") is None


async def test_with_the_upstream_up_a_peer_not_measured_goes_before_it(
    tmp_path: Path, clips: dict[str, Path], moto: MotoProcess
) -> None:
    """The upstream is measured with the first clip; the peer, not measured yet, gives the
    second (a box on the venue LAN usually is faster); the upstream never sends it."""
    for path in clips.values():
        await asyncio.to_thread(upload_clip, moto, path, 1)  # made again, uploaded as is
    datas = {name: await asyncio.to_thread(path.read_bytes) for name, path in clips.items()}
    await asyncio.to_thread(
        put_manifest,
        moto,
        [
            {"name": n, "pin": True, "sha256": hashlib.sha256(d).hexdigest()}
            for n, d in datas.items()
        ],
    )
    store = await asyncio.to_thread(holding, tmp_path / "peer", clips)
    here = await asyncio.to_thread(AssetStore, tmp_path / "here", max_bytes=10**9)
    source = PeerSource(SECRET)
    counted: list[str] = []
    replicator = Replicator(
        here, make_store(moto), MANIFEST_KEY, "assets", peers=source, counted=counted.append
    )
    async with peer_server("a-peer", store, b"{}") as server:
        source.set_peers([at("a-peer", server)])
        assert await asyncio.to_thread(replicator.sync) == ["teaser.mp4", "finale.mp4"]
    teaser, finale = here.get("teaser.mp4"), here.get("finale.mp4")
    assert teaser is not None and finale is not None
    assert (teaser.source, finale.source) == ("upstream", "peer:a-peer")
    assert counted == ["peer"]
    assert [await asyncio.to_thread(gets, moto, name) for name in datas] == [1, 0]


def signed(path: str, range_: str = "", secret: str = SECRET) -> tuple[dict[str, str], str]:
    """The headers of a peer's GET of `path`, and its nonce."""
    nonce = new_nonce()
    headers = {
        "Authorization": authorization(peer_key(secret), "GET", path, range_, time.time(), nonce)
    }
    return ({**headers, "Range": range_} if range_ else headers), nonce


async def test_the_peer_endpoint_needs_a_request_signed_with_the_event_secret(
    tmp_path: Path, clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The listing names staged clips: a guest (unsigned, the wrong key, the secret itself as
    a Bearer, a replay) gets nothing; a peer gets answers signed over its nonce."""
    store = await asyncio.to_thread(holding, tmp_path / "peer", clips)
    caplog.set_level(logging.DEBUG, logger="edged.web.peer_api")
    async with (
        peer_server("box", store, b"{}") as server,
        aiohttp.ClientSession(str(server.make_url("/"))) as client,
    ):
        for path in (INDEX_PATH, "/api/v1/peer/manifest", "/api/v1/peer/assets/teaser.mp4"):
            async with client.get(path) as response:
                assert response.status == 401, path
                assert "teaser" not in await response.text()
            bearer = {"Authorization": f"Bearer {SECRET}"}  # the old way: no longer a key
            async with client.get(path, headers=bearer) as response:
                assert response.status == 401, path
            wrong, _ = signed(path, secret=OTHER_SECRET)
            async with client.get(path, headers=wrong) as response:
                assert response.status == 403, path
        warnings = [r for r in caplog.records if "wrong peer signature" in r.getMessage()]
        assert [r.levelno for r in warnings] == [logging.WARNING] + [logging.DEBUG] * 2
        headers, nonce = signed(INDEX_PATH)
        async with client.get(INDEX_PATH, headers=headers) as response:
            body = await response.read()
            assert answer_verifies(peer_key(SECRET), nonce, body, response.headers[ANSWER_HEADER])
        listed = {item["name"] for item in json.loads(body)["assets"]}
        assert listed == {"teaser.mp4", "finale.mp4"}
        async with client.get(INDEX_PATH, headers=headers) as response:  # the same nonce again
            assert response.status == 403
        clip = "/api/v1/peer/assets/teaser.mp4"
        ranged, _ = signed(clip, "bytes=10-19")
        async with client.get(clip, headers=ranged) as response:
            assert response.status == 206
            assert await response.read() == store.path("teaser.mp4").read_bytes()[10:20]
        moved = {**ranged, "Range": "bytes=0-"}  # a Range the MAC does not cover
        async with client.get(clip, headers=moved) as response:
            assert response.status == 403
        # A file that exists outside the clips: refused, and nothing of it in the answer.
        assert (store.root / "index.json").exists()
        for escape in ("..%2Findex.json", "..%2F..%2Fpeer%2Findex.json"):
            path = "/api/v1/peer/assets/" + escape
            async with client.get(path, headers=signed(path)[0]) as response:
                assert response.status == 404, escape
                assert "assets" not in await response.text(), escape
        absent = "/api/v1/peer/assets/absent.mp4"
        async with client.get(absent, headers=signed(absent)[0]) as response:
            assert response.status == 404


async def test_too_many_wrong_peer_requests_are_refused_before_the_mac_is_looked_at(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """Review 19, finding 6: a client guessing keys gets 403 for its first tries, then 429
    even for a rightly signed request (another client: test_wrong_tries_count_per_client)."""
    store = await asyncio.to_thread(holding, tmp_path / "peer", clips)
    async with (
        peer_server("box", store, b"{}", tries=WrongTries(burst=3, interval=3600.0)) as server,
        aiohttp.ClientSession(str(server.make_url("/"))) as client,
    ):
        for _ in range(3):
            async with client.get(
                INDEX_PATH, headers=signed(INDEX_PATH, secret=OTHER_SECRET)[0]
            ) as response:
                assert response.status == 403
        async with client.get(INDEX_PATH, headers=signed(INDEX_PATH)[0]) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "60"
            assert "teaser" not in await response.text()


async def test_a_responder_without_the_secret_never_receives_it_and_is_not_a_peer(
    tmp_path: Path,
) -> None:
    """Anyone on the LAN can advertise _edged._tcp with the event's name (review 19, finding 1):
    what the box sends it never holds the secret nor its key, and its listing, unsigned or
    signed with a guessed key, is not taken."""
    received: list[bytes] = []
    answers = iter([{}, {ANSWER_HEADER: "0" * 64}])

    async def spoof(request: web.Request) -> web.Response:
        received.append(repr(sorted(request.headers.items())).encode() + request.path.encode())
        listing: dict[str, object] = {
            "node": "spoof",
            "event": "gala",
            "assets": [],
            "manifest": None,
        }
        return web.json_response(listing, headers=next(answers, {}))

    app = web.Application()
    app.router.add_get(INDEX_PATH, spoof)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        source = PeerSource(SECRET)
        source.set_peers([at("spoof", server)])
        assert await asyncio.to_thread(source.listings) == []
        assert await asyncio.to_thread(source.listings) == []
    finally:
        await server.close()
    assert len(received) == 2
    for seen in received:
        assert SECRET.encode() not in seen
        assert peer_key(SECRET).hex().encode() not in seen
        assert b"EdgedPeer t=" in seen


def box_index(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    """The box's asset index, by name (read as the daemon wrote it, atomically)."""
    assert daemon.data_dir is not None
    try:
        document = json.loads((daemon.data_dir / "cache" / "index.json").read_text())
    except FileNotFoundError:
        return {}
    return {asset["name"]: asset for asset in document["assets"]}


def holds_all(daemon: DaemonProcess, names: list[str]) -> bool:
    return set(box_index(daemon)) == set(names)


def peer_count(daemon: DaemonProcess) -> float:
    with urllib.request.urlopen(daemon.url + "/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    found = re.search(r'^edged_cache_requests_total\{result="peer"\} (\S+)$', text, re.M)
    assert found is not None
    return float(found.group(1))


def guest_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_without_a_peer_secret_file_peers_are_off_and_the_admin_token_opens_nothing(
    tmp_path: Path, moto: MotoProcess, start_daemon: StartDaemon
) -> None:
    """Review 19, finding 1: the admin token was the peer secret by default; now a box
    without [peers] secret_file has no peer routes at all, and says why once."""
    down = {**upstream_settings(tmp_path, moto), "endpoint": f"127.0.0.1:{closed_port()}"}
    daemon = start_daemon(
        {
            "node": {"event": "gala"},
            "media": {"test_pattern": "off"},
            "cache": {"manifest": MANIFEST_KEY},
            "upstream": down,
        }
    )
    said = [line for line in daemon.lines if "peers: off, no [peers] secret_file" in line]
    assert len(said) == 1  # read while it started
    assert guest_get(daemon.url + INDEX_PATH)[0] == 404
    assert daemon.stop() == 0


def test_three_boxes_end_with_the_pinned_set_with_the_upstream_down_for_two(
    tmp_path: Path, moto: MotoProcess, start_daemon: StartDaemon
) -> None:
    made = tmp_path / "made"
    made.mkdir()
    names = ["teaser.mp4", "interview.mp4", "finale.mp4"]  # the manifest's priority order
    clips = {name: upload_clip(moto, made / name, seconds=1) for name in names}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in clips.items()}
    entries: list[dict[str, object]] = [
        {"name": name, "pin": True, "sha256": digests[name]} for name in names
    ]
    entries[2]["publish_at"] = "2099-01-01T00:00:00Z"  # staged: peers need it, guests must not
    put_manifest(moto, entries)
    secret = tmp_path / "peer.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    upstream = upstream_settings(tmp_path, moto)
    down = {**upstream, "endpoint": f"127.0.0.1:{closed_port()}"}

    def settings(upstream: dict[str, object]) -> dict[str, dict[str, object]]:
        return {
            "node": {"event": "gala"},
            "media": {"test_pattern": "off"},
            "cache": {"manifest": MANIFEST_KEY},
            "upstream": upstream,
            "peers": {"secret_file": str(secret), "recheck_seconds": 1.0},
        }

    # Started side by side (each start waits seconds on mDNS), then each awaited.
    boxes = {
        "box-a": start_daemon(settings(upstream), name="box-a", wait=False),
        "box-b": start_daemon(settings(down), name="box-b", wait=False),
        "box-c": start_daemon(settings(down), name="box-c", wait=False),
    }
    for daemon in boxes.values():
        daemon.wait_ready()
    for node, daemon in boxes.items():
        until(partial(holds_all, daemon, names), 45.0, f"{node}'s clips")
    for node, daemon in boxes.items():
        index = box_index(daemon)
        assert daemon.data_dir is not None
        for name in names:
            asset = index[name]
            stored = (daemon.data_dir / "cache" / "assets" / f"{name}.mp4").read_bytes()
            assert hashlib.sha256(stored).hexdigest() == asset["sha256"], (node, name)
            assert asset["origin_sha256"] == digests[name] and asset["pinned"], (node, name)
            if node == "box-a":
                assert asset["source"] == "upstream"
            else:
                assert asset["source"] in {f"peer:{other}" for other in boxes if other != node}
        by_arrival = sorted(names, key=lambda name: index[name]["added"])
        assert by_arrival == names, node
    assert [peer_count(daemon) for daemon in boxes.values()] == [0, 3, 3]
    guest = boxes["box-b"]
    status, listing = guest_get(guest.url + "/api/v1/assets")
    assert status == 200 and "teaser.mp4" in listing and "finale.mp4" not in listing
    assert guest_get(guest.url + "/assets/finale.mp4")[0] == 404
    assert guest_get(guest.url + INDEX_PATH)[0] == 401
    for daemon in boxes.values():
        assert daemon.stop() == 0

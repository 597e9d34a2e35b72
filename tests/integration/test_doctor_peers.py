"""`edged doctor`'s peers line against real peer endpoints (aiohttp on loopback, the daemon's
own peer API): each other box of the event asked with a request signed by this box's key."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from edged.cache.peerauth import WrongTries
from edged.cache.peerlink import PeerAddress, PeerSource
from edged.cache.store import AssetStore
from edged.config import Config, NodeConfig, PeersConfig
from edged.discovery import Peer
from edged.doctor import FAIL, OK, WARN, peers_line
from tests.integration.test_peer_replication import OTHER_SECRET, SECRET, peer_server

pytestmark = pytest.mark.integration


def config_with(tmp_path: Path, secret: str) -> Config:
    secret_file = tmp_path / "peer.secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    return replace(
        Config(),
        node=NodeConfig(name="tent-a", event="gala"),
        peers=PeersConfig(secret_file=str(secret_file)),
    )


def found(node: str, port: int, event: str = "gala") -> Peer:
    return Peer(node, node, event, "test", ("127.0.0.1",), port, "/metrics")


async def test_boxes_with_the_event_secret_share_and_one_with_another_is_named(
    tmp_path: Path,
) -> None:
    store = await asyncio.to_thread(AssetStore, tmp_path / "store", max_bytes=10**6)
    async with peer_server("tent-b", store, b"{}") as b, peer_server("tent-c", store, b"{}") as c:
        assert b.port is not None and c.port is not None
        boxes = [found("tent-b", b.port), found("tent-c", c.port), found("tent-z", 9, "other")]

        good = await asyncio.to_thread(peers_line, config_with(tmp_path, SECRET), boxes)
        assert (good.status, good.detail) == (
            OK,
            "sharing clips with tent-b, tent-c (event 'gala')",
        )

        wrong = await asyncio.to_thread(peers_line, config_with(tmp_path, OTHER_SECRET), boxes)
        assert wrong.status == WARN
        assert wrong.detail.startswith("tent-b: 127.0.0.1:")
        assert "refused this box's signature" in wrong.detail
        assert "tent-c: " in wrong.detail

        lying = [found("tent-d", b.port)]  # answers as tent-b
        named = await asyncio.to_thread(peers_line, config_with(tmp_path, SECRET), lying)
        assert named.status == WARN
        assert "another node's or event's listing" in named.detail


async def test_a_short_secret_fails_without_asking_anyone(tmp_path: Path) -> None:
    check = await asyncio.to_thread(peers_line, config_with(tmp_path, "short"), [])
    assert check.status == FAIL
    assert "peer secret" in check.detail


async def test_boxes_with_clocks_apart_stay_friends_however_often_the_doctor_asks(
    tmp_path: Path,
) -> None:
    """Review s7a, D1: each doctor run's first request by its own clock was refused as stale
    and counted as a wrong try; ten runs locked this box (and its daemon) out for minutes."""
    store = await asyncio.to_thread(AssetStore, tmp_path / "store", max_bytes=10**6)
    ahead = peer_server("tent-b", store, b"{}", tries=WrongTries(burst=3), clock_ahead=600.0)
    async with ahead as b:
        assert b.port is not None
        config = config_with(tmp_path, SECRET)
        for _ in range(5):
            check = await asyncio.to_thread(peers_line, config, [found("tent-b", b.port)])
            assert check.status == OK, check.detail
        daemon_side = PeerSource(SECRET)
        daemon_side.set_peers([PeerAddress("tent-b", "127.0.0.1", b.port, "gala")])
        assert [listing.node for listing in await asyncio.to_thread(daemon_side.listings)] == [
            "tent-b"
        ]


async def test_a_box_that_stopped_listening_to_this_one_says_why(tmp_path: Path) -> None:
    """Review s7a, D1/D3: a 429 showed as a bare "answered HTTP 429"."""
    store = await asyncio.to_thread(AssetStore, tmp_path / "store", max_bytes=10**6)
    async with peer_server("tent-b", store, b"{}", tries=WrongTries(burst=2)) as b:
        assert b.port is not None
        config, boxes = config_with(tmp_path, OTHER_SECRET), [found("tent-b", b.port)]
        details = [(await asyncio.to_thread(peers_line, config, boxes)).detail for _ in range(3)]
        assert "a different [peers] secret_file" in details[0]
        assert "refuses this box for a minute" in details[-1]


async def test_a_box_whose_mdns_cannot_be_browsed_is_not_told_to_switch_others_on(
    tmp_path: Path,
) -> None:
    """Review s7a, D2: a failed browse read as "no other box answers"."""
    check = await asyncio.to_thread(
        peers_line, config_with(tmp_path, SECRET), OSError("no multicast")
    )
    assert (check.status, check.detail) == (WARN, "cannot browse mDNS: no peer can be found")

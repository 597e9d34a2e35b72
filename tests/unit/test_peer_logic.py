"""Peer replication's decisions (edged.cache.peers): pure, fast."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.cache.manifest import ManifestEntry
from edged.cache.peerauth import WrongTries, secret_weakness
from edged.cache.peerlink import PeerSource
from edged.cache.peers import (
    UPSTREAM,
    PeerListing,
    PeerManifest,
    PeerOffer,
    download_deadline,
    fits_on_disk,
    freshest_manifest,
    listing_document,
    next_rate,
    offer_identity,
    offers_for,
    order_sources,
    parse_listing,
    part_clip,
    part_name,
    peer_plan_size,
    peers_off,
    plausible_offers,
)
from edged.discovery import Peer, peers_of_event
from edged.errors import StartupError

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def offer(node: str, name: str = "teaser.mp4", origin: str = SHA_B, size: int = 1000) -> PeerOffer:
    return PeerOffer(node, "127.0.0.1", 8080, name, size, SHA_A, origin)


def test_a_listing_round_trips_and_bad_entries_are_left_out_one_by_one() -> None:
    asset = SimpleNamespace(name="teaser.mp4", size=1000, sha256=SHA_A, origin_sha256=SHA_B)
    manifest = {"key": "manifest.json", "etag": "e1", "modified": 5.0}
    document = listing_document("box-a", "gala", [asset], manifest)
    document["assets"] += [
        {"name": "../etc/passwd", "size": 10, "sha256": SHA_A},
        {"name": "empty.mp4", "size": 0, "sha256": SHA_A},
        {"name": "bool.mp4", "size": True, "sha256": SHA_A},
        {"name": "short.mp4", "size": 10, "sha256": "abc"},
        {"name": "origin.mp4", "size": 10, "sha256": SHA_A, "origin_sha256": 7},
        "not an object",
    ]
    listing = parse_listing(document, "127.0.0.1", 8080)
    assert listing is not None
    assert listing.node == "box-a"
    assert list(listing.offers) == ["teaser.mp4"]
    assert listing.offers["teaser.mp4"] == PeerOffer(
        "box-a", "127.0.0.1", 8080, "teaser.mp4", 1000, SHA_A, SHA_B
    )
    assert listing.manifest == PeerManifest("box-a", "127.0.0.1", 8080, "manifest.json", "e1", 5.0)


def test_a_document_that_is_no_listing_is_none() -> None:
    assert parse_listing([], "127.0.0.1", 1) is None
    assert parse_listing({"node": "../x"}, "127.0.0.1", 1) is None
    listing = parse_listing({"node": "b", "assets": "x", "manifest": {"key": 1}}, "127.0.0.1", 1)
    assert listing == PeerListing("b", {}, None)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists))
def test_any_json_value_parses_or_is_none(document: object) -> None:
    parse_listing({"node": "n", "assets": document, "manifest": document}, "127.0.0.1", 1)
    parse_listing(document, "127.0.0.1", 1)


def test_the_freshest_manifest_of_the_same_key_is_followed() -> None:
    old = PeerManifest("a", "127.0.0.1", 1, "manifest.json", "e1", 10.0)
    new = PeerManifest("b", "127.0.0.1", 2, "manifest.json", "e2", 20.0)
    other = PeerManifest("c", "127.0.0.1", 3, "other.json", "e3", 30.0)
    listings = [PeerListing(m.node, {}, m) for m in (old, new, other)] + [PeerListing("d")]
    assert freshest_manifest(listings, "manifest.json") == new
    assert freshest_manifest(listings, "none.json") is None


def test_offers_match_the_manifest_checksum_and_skip_refused_ones() -> None:
    entry = ManifestEntry("teaser.mp4", "assets/teaser.mp4", True, SHA_B)
    good, stale, refused = offer("a"), offer("b", origin=SHA_C), offer("c")
    listings = [PeerListing(o.node, {o.name: o}) for o in (good, stale, refused)]
    listings.append(PeerListing("d", {"other.mp4": offer("d", "other.mp4")}))
    refusals = {offer_identity(refused): 100.0}
    assert offers_for(entry, listings, refusals, now=50.0) == [good]
    assert offers_for(entry, listings, refusals, now=100.0) == [good, refused]
    unchecked = ManifestEntry("teaser.mp4", "assets/teaser.mp4", True, "")
    assert offers_for(unchecked, listings, refusals, now=50.0) == [good, stale]


def test_upstream_out_of_reach_takes_peers_fastest_known_first() -> None:
    a, b, c = offer("a"), offer("b"), offer("c")
    assert order_sources(False, [c, b, a], {}) == [a, b, c]
    assert order_sources(False, [a, b, c], {"c": 10.0, "b": 20.0}) == [b, c, a]
    assert order_sources(False, [], {UPSTREAM: 5.0}) == []


def test_upstream_is_measured_first_then_faster_or_unmeasured_peers_go_before_it() -> None:
    fast, slow, new = offer("fast"), offer("slow"), offer("new")
    assert order_sources(True, [slow, fast], {}) == [UPSTREAM, fast, slow]
    rates = {UPSTREAM: 100.0, "fast": 1000.0, "slow": 10.0}
    assert order_sources(True, [slow, new, fast], rates) == [fast, new, UPSTREAM, slow]
    assert order_sources(True, [], rates) == [UPSTREAM]


@given(
    st.booleans(),
    st.lists(st.sampled_from("abcdef"), unique=True),
    st.dictionaries(st.sampled_from([*"abcdef", UPSTREAM]), st.floats(0.1, 1e9)),
)
def test_every_source_is_tried_once(up: bool, nodes: list[str], rates: dict[str, float]) -> None:
    offers = [offer(node) for node in nodes]
    ordered = order_sources(up, offers, rates)
    assert sorted(map(str, ordered)) == sorted(map(str, offers + ([UPSTREAM] if up else [])))


def test_rates_average_and_ignore_what_cannot_be_measured() -> None:
    assert next_rate(None, 1000, 2.0) == 500.0
    assert next_rate(500.0, 1000, 1.0) == 750.0
    assert next_rate(500.0, 0, 1.0) == 500.0
    assert next_rate(None, 1000, 0.0) is None


def test_a_peer_part_names_its_clip_and_peer() -> None:
    assert part_name("gala.teaser.mp4", "box-a") == "gala.teaser.mp4.box-a.peer"
    assert part_clip(part_name("gala.teaser.mp4", "box-a")) == "gala.teaser.mp4"


def test_the_peers_are_the_boxes_of_this_event_but_itself() -> None:
    def box(instance: str, event: str, port: int = 8080) -> Peer:
        return Peer(instance, instance, event, "1", ("127.0.0.1",), port, "/metrics")

    found = [box("c", "gala"), box("Self", "gala"), box("a", "gala"), box("x", "other")]
    found.append(box("noport", "gala", port=0))
    assert [p.instance for p in peers_of_event(found, "gala", "self")] == ["a", "c"]


def test_a_short_peer_secret_stops_the_start() -> None:
    with pytest.raises(StartupError, match="shorter than 16"):
        PeerSource("short")


@pytest.mark.parametrize("secret", ["galagalagalagala", "GALAGALAGALAGALA2026", "a1" * 16])
def test_a_simple_peer_secret_stops_the_start(secret: str) -> None:
    with pytest.raises(StartupError, match=r"too simple.*urandom"):
        PeerSource(secret)


def test_a_random_peer_secret_passes() -> None:
    assert secret_weakness("k3J9vQ2mXw7LpZ0aBcD4eF6gH8iJ1kL5mN+/=") == ""
    assert secret_weakness("the-event-peer-secret-0123456789") == ""
    assert secret_weakness("0f3a9c1e7b2d4a6f8e0c1b3d5a7f9e2c") == ""  # hex


def test_an_inflated_offer_is_never_planned_for_nor_sets_the_bar() -> None:
    """Review 19, finding 3: one peer claiming a huge size neither makes the clip "cannot fit"
    for the honest offers nor gets downloaded."""
    honest, other, inflated = offer("a", size=1000), offer("b", size=1200), offer("z", size=10**12)
    offers = [inflated, honest, other]
    assert plausible_offers(offers, None) == [honest, other]
    assert peer_plan_size(None, offers) == 1000
    assert plausible_offers(offers, 900) == [honest, other]  # the upstream's size: a bound
    assert peer_plan_size(900, offers) == 1000
    assert plausible_offers([inflated], 1000) == [] and peer_plan_size(1000, [inflated]) is None
    assert peer_plan_size(None, []) is None


def test_a_download_has_a_deadline_from_its_size_at_the_floor_rate() -> None:
    assert download_deadline(64 * 1024 * 100, 1000.0) == 1100.0  # 100 s at 64 KiB/s
    assert download_deadline(1000, 1000.0) == 1030.0  # never under 30 s
    assert download_deadline(10**6, 0.0, floor_rate=10**6, minimum=1.0) == 1.0


def test_records_of_this_box_itself_are_never_peers() -> None:
    """Review 19, finding 5: its node name, an old advertised name (still cached after a
    rename) carrying its node, or an address and port it announces."""

    def box(instance: str, node: str, address: str = "10.0.0.2", port: int = 8080) -> Peer:
        return Peer(instance, node, "gala", "1", (address,), port, "/metrics")

    found = [
        box("gala-box", "other"),
        box("self-2", "self"),  # its node under another advertised name
        box("old-name", "old-name", "10.0.0.9", 8080),  # its own address and port
        box("same-host", "same-host", "10.0.0.9", 9090),  # another box on the same host
    ]
    own = frozenset({("10.0.0.9", 8080)})
    chosen = peers_of_event(found, "gala", "self-3", "self", own)
    assert [p.instance for p in chosen] == ["gala-box", "same-host"]


def test_a_listing_of_another_node_or_event_than_mdns_named_is_none() -> None:
    document: dict[str, object] = {
        "node": "b-good",
        "event": "gala",
        "assets": [],
        "manifest": None,
    }
    assert parse_listing(document, "127.0.0.1", 1, "b-good", "gala") is not None
    assert parse_listing(document, "127.0.0.1", 1, "a-liar", "gala") is None
    assert parse_listing(document, "127.0.0.1", 1, "b-good", "other") is None
    assert parse_listing(document, "127.0.0.1", 1) is not None  # nothing to compare


def test_wrong_tries_count_per_client_and_come_back_with_time() -> None:
    tries = WrongTries(burst=2, interval=10.0)
    for _ in range(2):
        assert not tries.blocked("10.0.0.5", 0.0)
        tries.failed("10.0.0.5", 0.0)
    assert tries.blocked("10.0.0.5", 1.0) and not tries.blocked("10.0.0.6", 1.0)
    assert not tries.blocked("10.0.0.5", 10.0)  # one try back after `interval`
    tries.failed("10.0.0.5", 10.0)
    assert tries.blocked("10.0.0.5", 10.0)


def test_manifests_are_ordered_by_the_upstreams_last_modified_then_etag() -> None:
    a = PeerManifest("z", "127.0.0.1", 1, "manifest.json", "e1", 20.0)
    b = PeerManifest("a", "127.0.0.1", 2, "manifest.json", "e2", 20.0)
    listings = [PeerListing(m.node, {}, m) for m in (a, b)]
    assert freshest_manifest(listings, "manifest.json") == b  # same second: by ETag, not node


def test_peers_stay_off_without_a_secret_of_their_own_or_an_event() -> None:
    assert "no [peers] secret_file" in peers_off("", "gala", "default")  # never the admin token
    assert "[node] event is not set" in peers_off("/etc/edged/peer.secret", "default", "default")
    assert peers_off("/etc/edged/peer.secret", "gala", "default") == ""


def test_a_peer_download_leaves_the_disk_its_free_space() -> None:
    assert fits_on_disk(free=10_000, need=4_000, min_free=6_000)
    assert not fits_on_disk(free=10_000, need=4_001, min_free=6_000)
    assert fits_on_disk(free=10_000, need=-5, min_free=10_000)  # a part longer than the offer

"""The pure parts of mDNS: names, addresses, TXT records, peers from garbage."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf.asyncio import AsyncServiceInfo

from edged import config
from edged.discovery import (
    ADVERTISED_FILE,
    EDGED_SERVICE,
    Advertised,
    Advertiser,
    advertised_addresses,
    dns_label,
    forget_advertised,
    free_label,
    instance_label,
    peer_from_info,
    read_advertised,
    service_properties,
    write_advertised,
)


def test_dns_label_examples() -> None:
    assert dns_label("Tent-Box") == "tent-box"
    assert dns_label("box_1.example.org") == "box-1-example-org"
    assert dns_label("---") == "edged"
    assert dns_label("ü" * 80) == "edged"


@given(st.text())
def test_dns_label_is_always_a_valid_label(name: str) -> None:
    label = dns_label(name)
    assert 1 <= len(label) <= 63
    assert all(char.isascii() and (char.isalnum() or char == "-") for char in label)
    assert not label.startswith("-") and not label.endswith("-")


# Linux allows 64 characters (HOST_NAME_MAX); a DNS label and a node name allow 63.
LONGEST_HOST = "b" * 63 + "x"


def test_a_64_character_host_name_gives_the_name_mdns_advertises() -> None:
    """Issue #21 item 12: the node was the whole 64 characters (config refuses that) while mDNS
    advertised 63."""
    node = config.node_name(config.Config(), LONGEST_HOST)
    assert node == "b" * 63
    assert config.from_mapping({"node": {"name": node}}).node.name == node
    assert dns_label(node) == node
    assert config.node_name(config.Config(), "b" * 62 + "-x.venue.lan") == "b" * 62


@given(st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9_.-]{60,70}", fullmatch=True))
def test_any_host_name_gives_one_valid_node_name(hostname: str) -> None:
    node = config.node_name(config.Config(), hostname)
    assert config.from_mapping({"node": {"name": node}}).node.name == node
    assert dns_label(node) == node
    advertiser = Advertiser(node=node, port=8080, addresses=["127.0.0.1"], properties={})
    assert advertiser.requested_label == node


def test_a_configured_name_wins_over_the_host_name() -> None:
    configured = config.from_mapping({"node": {"name": "Tent_Box"}})
    assert config.node_name(configured, LONGEST_HOST) == "Tent_Box"


def test_addresses_for_every_interface_skip_loopback_and_link_local() -> None:
    found = ["127.0.0.1", "192.168.4.10", "169.254.1.2", "fe80::1", "10.1.1.1", "192.168.4.10"]
    assert advertised_addresses("0.0.0.0", found) == ["10.1.1.1", "192.168.4.10"]


def test_addresses_fall_back_to_loopback_and_follow_a_bound_host() -> None:
    assert advertised_addresses("0.0.0.0", ["127.0.0.1"]) == ["127.0.0.1"]
    assert advertised_addresses("10.0.0.5", ["10.0.0.5", "10.0.0.6"]) == ["10.0.0.5"]


def test_addresses_restricted_to_chosen_interfaces() -> None:
    found = ["127.0.0.1", "10.1.1.1", "10.2.2.2"]
    assert advertised_addresses("", found, ["127.0.0.1"]) == ["127.0.0.1"]
    assert advertised_addresses("", found, ["10.2.2.2"]) == ["10.2.2.2"]


def test_txt_record_matches_design() -> None:
    assert service_properties(node="a", event="b", version="1") == {
        "node": "a",
        "event": "b",
        "version": "1",
        "path": "/",
        "metrics": "/metrics",
    }


def test_peer_from_garbage_txt() -> None:
    info = AsyncServiceInfo(
        EDGED_SERVICE,
        f"odd.{EDGED_SERVICE}",
        addresses=[socket.inet_aton("10.0.0.9")],
        port=8080,
        properties={b"node": b"\xff\xfe", b"metrics": b"http://evil", b"junk": None},
    )
    peer = peer_from_info(info)
    assert peer.node == "\ufffd\ufffd"
    assert peer.event == ""
    assert peer.metrics_path == "/metrics"
    assert peer.addresses == ("10.0.0.9",)


def test_free_label_takes_the_next_number_nothing_answers_to() -> None:
    assert free_label("twin", []) == "twin"
    assert free_label("twin", ["other"]) == "twin"
    assert free_label("twin", ["twin"]) == "twin-2"
    assert free_label("twin", ["TWIN", "twin-2", "twin-4"]) == "twin-3"
    assert free_label("twin-2", ["twin-2"]) == "twin-2-2"


@given(st.text(), st.sets(st.text(alphabet="ab-2345", max_size=70), max_size=20))
def test_free_label_is_a_label_no_one_answers_to(name: str, answering: set[str]) -> None:
    requested = dns_label(name)
    taken = answering | {requested, f"{requested}-2"}
    label = free_label(requested, taken)
    assert label not in {name.lower() for name in taken}
    assert dns_label(label) == label  # a valid label: at most 63 characters, no edge hyphen
    assert label.startswith(requested[:50].rstrip("-"))


def test_instance_label() -> None:
    assert instance_label(f"twin-2.{EDGED_SERVICE}", EDGED_SERVICE) == "twin-2"


def test_advertised_record_round_trip_and_garbage(tmp_path: Path) -> None:
    assert read_advertised(tmp_path) is None
    record = Advertised(name="twin-2", requested="twin", port=8080, pid=42)
    write_advertised(tmp_path, record)
    assert read_advertised(tmp_path) == record
    forget_advertised(tmp_path)
    forget_advertised(tmp_path)  # twice is fine
    assert read_advertised(tmp_path) is None
    for garbage in (
        "",
        "[]",
        "{",
        '{"name": "", "requested": "twin", "port": 1, "pid": 2}',
        '{"name": "a", "requested": "twin", "port": true, "pid": 2}',
        '{"name": "a", "requested": "twin", "port": 1, "pid": "2"}',
        '{"name": "a", "requested": 3, "port": 1, "pid": 2}',
        '{"name": "a", "port": 1, "pid": 2}',
    ):
        (tmp_path / ADVERTISED_FILE).write_text(garbage)
        assert read_advertised(tmp_path) is None, garbage
    (tmp_path / ADVERTISED_FILE).write_bytes(b"\xff\xfe")
    assert read_advertised(tmp_path) is None
    (tmp_path / ADVERTISED_FILE).unlink()
    (tmp_path / ADVERTISED_FILE).mkdir()  # unreadable: doctor says so instead of "not running"
    with pytest.raises(OSError):  # noqa: PT011 - any error reading it
        read_advertised(tmp_path)

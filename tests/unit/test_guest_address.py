"""The guests' link: the LAN address chosen from given facts (never this machine's own LAN)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from edged.guest.address import (
    InterfaceAddress,
    default_route_address,
    follow_link,
    http_url,
    interface_addresses,
    lan_host,
    landing_url,
    typed_url,
)

LO = InterfaceAddress("lo", "127.0.0.1")
ETH = InterfaceAddress("eth0", "192.168.1.20")
WLAN = InterfaceAddress("wlan0", "10.42.0.1")
LINK_LOCAL = InterfaceAddress("usb0", "169.254.3.4")
PUBLIC = InterfaceAddress("wwan0", "100.64.1.2")


def test_a_server_bound_to_one_address_is_reached_at_it() -> None:
    assert lan_host("10.42.0.1", [LO, ETH, WLAN], "192.168.1.20") == "10.42.0.1"
    assert lan_host("127.0.0.1", [LO, ETH], "192.168.1.20") == "127.0.0.1"


def test_on_every_address_the_default_routes_interface_serves_the_lan() -> None:
    assert lan_host("0.0.0.0", [LO, ETH, WLAN], "192.168.1.20") == "192.168.1.20"
    assert lan_host("", [LO, WLAN, ETH], "10.42.0.1") == "10.42.0.1"
    assert lan_host("::", [LO, ETH], "192.168.1.20") == "192.168.1.20"


def test_without_a_default_route_a_private_address_of_an_interface_that_is_up() -> None:
    assert lan_host("", [LO, PUBLIC, WLAN], None) == "10.42.0.1"
    assert lan_host("", [LO, LINK_LOCAL, ETH], None) == "192.168.1.20"
    down = InterfaceAddress("eth1", "192.168.9.9", up=False)
    assert lan_host("", [LO, down, WLAN], None) == "10.42.0.1"


def test_a_route_through_an_interface_that_is_down_or_unknown_is_not_taken() -> None:
    down = InterfaceAddress("eth1", "192.168.9.9", up=False)
    assert lan_host("", [LO, down, ETH], "192.168.9.9") == "192.168.1.20"
    assert lan_host("", [LO, ETH], "172.16.0.5") == "192.168.1.20"


def test_preferred_addresses_come_first() -> None:
    assert lan_host("", [LO, ETH, WLAN], None, preferred=["10.42.0.1"]) == "10.42.0.1"


def test_loopback_only_when_nothing_else() -> None:
    assert lan_host("", [LO], None) == "127.0.0.1"
    assert lan_host("", [], None) == "127.0.0.1"
    assert lan_host("", [LO, LINK_LOCAL], "127.0.0.1") == "127.0.0.1"


addresses = st.builds(
    InterfaceAddress,
    st.sampled_from(["lo", "eth0", "wlan0"]),
    st.ip_addresses(v=4).map(str),
    st.booleans(),
)


@given(st.lists(addresses), st.none() | st.ip_addresses(v=4).map(str))
def test_never_loopback_when_an_interface_that_is_up_has_another(
    interfaces: list[InterfaceAddress], route: str | None
) -> None:
    host = lan_host("0.0.0.0", interfaces, route)
    usable = [
        entry.address
        for entry in interfaces
        if entry.up
        and not entry.address.startswith(("127.", "169.254."))
        and entry.address != "0.0.0.0"
    ]
    if usable:
        assert host in usable
    else:
        assert host == "127.0.0.1"


def test_the_urls() -> None:
    assert landing_url("", "192.168.1.20", 8080) == "http://192.168.1.20:8080/"
    assert landing_url("https://popup.example.com/", "192.168.1.20", 8080) == (
        "https://popup.example.com/"
    )
    assert http_url("fd00::1", 80) == "http://[fd00::1]:80/"
    assert typed_url("box-2", 8080) == "http://box-2.local:8080/"
    assert typed_url("", 8080) == ""


def test_the_adapters_give_facts_of_the_right_shape() -> None:
    """Whatever this machine's network: IPv4 facts, a route address or None."""
    facts = interface_addresses()
    assert all(entry.address.count(".") == 3 for entry in facts)
    route = default_route_address()
    assert route is None or route.count(".") == 3


async def test_a_new_lan_address_is_followed() -> None:
    """A box up before its Wi-Fi: loopback first, then the access point's address."""
    looks = iter(["http://127.0.0.1:8080/", "http://10.42.0.1:8080/"])
    current = ["http://127.0.0.1:8080/"]
    seen = asyncio.Event()

    def changed(url: str) -> None:
        current[0] = url
        seen.set()

    follower = asyncio.create_task(
        follow_link(lambda: next(looks, current[0]), lambda: current[0], changed, interval=0.01)
    )
    try:
        await asyncio.wait_for(seen.wait(), timeout=10)
    finally:
        follower.cancel()
    assert current == ["http://10.42.0.1:8080/"]

"""The guests' link: the box's LAN address (phones' browsers often cannot resolve `.local`), or
`[guest] public_url`; `<name>.local` stays the second, typed form."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psutil

WILDCARDS = ("", "0.0.0.0", "::")  # noqa: S104 - names of the wildcard, not a bind
LOOPBACK = "127.0.0.1"
# A documentation address (RFC 5737): a UDP socket "connected" to it learns the source address of
# the default route; connect() on UDP sends nothing.
ROUTE_PROBE = ("192.0.2.1", 9)
# How often the daemon looks at the LAN address again: an interface up after edged started (a
# Pi's Wi-Fi access point), a new DHCP lease.
LINK_CHECK_SECONDS = 30.0


@dataclass(frozen=True)
class InterfaceAddress:
    """One IPv4 address of a network interface, and whether that interface is up."""

    interface: str
    address: str
    up: bool = True


def _lan_candidate(entry: InterfaceAddress) -> bool:
    try:
        parsed = ipaddress.IPv4Address(entry.address)
    except ValueError:
        return False
    return entry.up and not (parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified)


def lan_host(
    bound_host: str,
    interfaces: Sequence[InterfaceAddress],
    route_address: str | None,
    preferred: Iterable[str] = (),
) -> str:
    """The address phones on the LAN reach the box at: the one the HTTP server is bound to when it
    is one address; else the default route's source address when an interface that is up has it;
    else (no default route: a venue network without internet) a private address of an interface
    that is up, `preferred` ones first ([mdns] interfaces); loopback only when nothing else."""
    if bound_host not in WILDCARDS:
        return bound_host
    candidates = [entry for entry in interfaces if _lan_candidate(entry)]
    if route_address and any(entry.address == route_address for entry in candidates):
        return route_address
    wanted = set(preferred)

    def rank(entry: InterfaceAddress) -> tuple[bool, bool, str, str]:
        private = ipaddress.IPv4Address(entry.address).is_private
        return (entry.address not in wanted, not private, entry.interface, entry.address)

    return min(candidates, key=rank).address if candidates else LOOPBACK


def http_url(host: str, port: int) -> str:
    """`http://host:port/`, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def landing_url(public_url: str, host: str, port: int) -> str:
    """The link the QR code carries: `[guest] public_url` when set, else the LAN address."""
    return public_url or http_url(host, port)


def typed_url(advertised_name: str, port: int) -> str:
    """The `.local` form a guest may type ("" without mDNS)."""
    return http_url(f"{advertised_name}.local", port) if advertised_name else ""


def interface_addresses() -> list[InterfaceAddress]:
    """Every IPv4 address of this host's interfaces, with whether each is up (psutil)."""
    stats = psutil.net_if_stats()
    return [
        InterfaceAddress(name, address.address, name in stats and stats[name].isup)
        for name, addresses in psutil.net_if_addrs().items()
        for address in addresses
        if address.family == socket.AF_INET
    ]


def default_route_address() -> str | None:
    """The source address of the default route (a UDP connect: no packet leaves), or None when
    there is no route (a LAN without internet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(ROUTE_PROBE)
        except OSError:
            return None
        return str(probe.getsockname()[0])


async def follow_link(
    link: Callable[[], str],
    current: Callable[[], str],
    changed: Callable[[str], None],
    interval: float = LINK_CHECK_SECONDS,
) -> None:
    """Every `interval` s, the guests' link again (`link` runs in a thread: psutil, a socket);
    `changed(new)` when it is not `current()`."""
    while True:
        await asyncio.sleep(interval)
        new = await asyncio.to_thread(link)
        if new != current():
            changed(new)

"""What stands before `/join`'s form: the same-origin check, the client a sign-up is counted
against (the connection's address, or X-Forwarded-For's behind a trusted proxy), and the limit
per client. Pure: no request, no clock; join.py passes the headers and the time in."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Sequence


def same_origin(host: str, origin: str | None, fetch_site: str | None) -> bool:
    """Whether a POST comes from the box's own page: Sec-Fetch-Site when the browser sends it,
    else Origin against Host; a client that sends neither is no browser (nothing to forge)."""
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    if origin is None:
        return True
    _, _, authority = origin.partition("://")
    return bool(host) and authority.lower() == host.lower()


def normalized_address(text: str) -> str | None:
    """An IP address in one spelling (an IPv4-mapped IPv6 one as IPv4), or None if not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def proxy_addresses(configured: Iterable[str]) -> frozenset[str]:
    """`[guest] trusted_proxies`, normalized (config lets through only address-shaped text)."""
    return frozenset(a for a in map(normalized_address, configured) if a is not None)


def client_key(address: str) -> str:
    """What a client's limits count against: an IPv4 address, or an IPv6 address's /64 (a phone
    may take any number of addresses in its /64: SLAAC, privacy addresses)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


def client_address(
    remote: str | None, forwarded_for: Sequence[str], proxies: frozenset[str]
) -> str:
    """The client a request counts against: the connection's address, unless it is a trusted
    proxy's; then X-Forwarded-For's last hop that is no trusted proxy (the hops to its left are
    the client's own word). No such hop, or one that is no address: the proxy's own. Limits
    count against its `client_key`."""
    peer = remote or ""
    if normalized_address(peer) not in proxies:
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = normalized_address(hop)
        if address is None:
            return peer
        if address not in proxies:
            return address
    return peer


class ClientLimiter:
    """A token bucket per client address: `burst` sign-ups at once, then one per `interval`
    seconds. It remembers `max_clients` addresses; the least recent is forgotten first."""

    def __init__(self, burst: int = 5, interval: float = 10.0, max_clients: int = 4096) -> None:
        self._burst = burst
        self._interval = interval
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str, now: float) -> bool:
        level, updated = self._buckets.pop(client, (float(self._burst), now))
        level = min(float(self._burst), level + (now - updated) / self._interval)
        allowed = level >= 1.0
        self._buckets[client] = (level - 1.0 if allowed else level, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return allowed

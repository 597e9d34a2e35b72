"""Before /join's form: the same-origin check, whose address a sign-up counts against (behind a
trusted proxy: X-Forwarded-For's), and the per-client limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.web.join_guard import (
    ClientLimiter,
    client_address,
    client_key,
    normalized_address,
    proxy_addresses,
    same_origin,
)


@pytest.mark.parametrize(
    ("host", "origin", "site", "ok"),
    [
        ("box:8080", "http://box:8080", None, True),
        ("box:8080", "http://evil.example", None, False),
        ("box:8080", None, "same-origin", True),
        ("box:8080", "http://box:8080", "cross-site", False),
        ("box:8080", None, "same-site", False),
        ("box:8080", None, None, True),
        ("box:8080", "null", None, False),
    ],
)
def test_same_origin(host: str, origin: str | None, site: str | None, ok: bool) -> None:
    assert same_origin(host, origin, site) is ok


def test_the_limiter_allows_a_burst_then_one_per_interval() -> None:
    limiter = ClientLimiter(burst=3, interval=10.0, max_clients=2)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another phone is not held back
    assert not limiter.allow("a", 5.0)
    assert limiter.allow("a", 15.0)
    limiter.allow("c", 15.0)  # "b" is forgotten (two clients at most)
    assert [limiter.allow("b", 15.0) for _ in range(4)] == [True, True, True, False]


@given(
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=80),
    burst=st.integers(1, 10),
    interval=st.floats(0.1, 10),
)
def test_a_client_gets_its_burst_then_one_per_interval(
    gaps: list[float], burst: int, interval: float
) -> None:
    """Never more than the burst plus the refill (2e03fd7's property, lost in ae22b44)."""
    limiter, now, allowed = ClientLimiter(burst, interval), 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.allow("10.0.0.2", now)
    assert allowed <= burst + now / interval
    assert ClientLimiter(burst, interval).allow("10.0.0.2", now)  # a fresh bucket is full


def test_an_ipv6_client_counts_by_its_64() -> None:
    """Review 16b, finding 7: a phone may use any address in its /64 (SLAAC, privacy)."""
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("10.0.0.2") == "10.0.0.2"
    assert client_key("") == ""  # no peer address (a Unix socket): one client


def test_addresses_have_one_spelling() -> None:
    assert normalized_address(" 10.0.0.7 ") == "10.0.0.7"
    assert normalized_address("::ffff:10.0.0.7") == "10.0.0.7"
    assert normalized_address("2001:DB8:0::1") == "2001:db8::1"
    assert normalized_address("10.0.0.7:5060") is None
    assert normalized_address("unknown") is None
    assert proxy_addresses(["10.0.0.1", "::FFFF:10.0.0.2", "fe80::1"]) == {
        "10.0.0.1",
        "10.0.0.2",
        "fe80::1",
    }


PROXIES = proxy_addresses(["10.0.0.1", "10.0.0.2"])


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        # No proxy in between: the connection's address, whatever the header says.
        ("192.168.1.20", [], "192.168.1.20"),
        ("192.168.1.20", ["203.0.113.9"], "192.168.1.20"),
        (None, ["203.0.113.9"], ""),
        # From a trusted proxy: the hop it wrote (the last), the client's own hops ignored.
        ("10.0.0.1", ["192.168.1.20"], "192.168.1.20"),
        ("10.0.0.1", ["1.2.3.4, 192.168.1.20"], "192.168.1.20"),
        ("::ffff:10.0.0.1", ["192.168.1.20"], "192.168.1.20"),
        # Through two trusted proxies: the last hop that is none of them.
        ("10.0.0.1", ["1.2.3.4, 192.168.1.20, 10.0.0.2"], "192.168.1.20"),
        ("10.0.0.1", ["1.2.3.4, 192.168.1.20", "10.0.0.2"], "192.168.1.20"),  # two headers
        ("10.0.0.1", ["::ffff:192.168.1.20"], "192.168.1.20"),
        # Nothing usable: the proxy's own bucket, never a string the client chose.
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["10.0.0.2"], "10.0.0.1"),
        ("10.0.0.1", ["192.168.1.20, garbage"], "10.0.0.1"),
        ("10.0.0.1", [""], "10.0.0.1"),
        ("10.0.0.1", ["192.168.1.20:5060"], "10.0.0.1"),
    ],
)
def test_the_client_behind_a_trusted_proxy_is_x_forwarded_fors_last_untrusted_hop(
    remote: str | None, forwarded: list[str], client: str
) -> None:
    assert client_address(remote, forwarded, PROXIES) == client


def test_without_trusted_proxies_x_forwarded_for_is_never_read() -> None:
    assert client_address("127.0.0.1", ["192.168.1.20"], frozenset()) == "127.0.0.1"

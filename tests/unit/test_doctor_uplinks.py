"""The doctor's line for each uplink, from the pool's description of it."""

from __future__ import annotations

from typing import Any

from edged.doctor import OK, WARN, uplink_check


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "interface": "wwan0",
        "address": "10.64.3.2",
        "up": True,
        "speed_mbps": 0,
        "metered": True,
        "classes": ["guest", "clip", "manifest"],
        "route": True,
        "budget_left_bytes": 1000,
    }
    return {**base, **changes}


def test_a_reaching_uplink_is_ok_and_says_what_it_carries() -> None:
    check = uplink_check(row())
    assert (check.name, check.status) == ("uplink wwan0", OK)
    assert check.detail == (
        "10.64.3.2; up; metered; carries guest, clip, manifest; route to upstream: yes; "
        "budget left today 1000 bytes"
    )


def test_an_uplink_without_a_route_warns() -> None:
    check = uplink_check(row(route=False, budget_left_bytes=None, speed_mbps=100, metered=False))
    assert check.status == WARN
    assert "100 Mbit/s; unmetered" in check.detail
    assert "route to upstream: no" in check.detail
    assert "budget" not in check.detail
    assert check.advice


def test_a_spent_budget_warns() -> None:
    check = uplink_check(row(budget_left_bytes=0))
    assert check.status == WARN
    assert "tomorrow" in check.advice


def test_the_kernels_route_unchecked() -> None:
    check = uplink_check(row(interface="default", address="", route=None, budget_left_bytes=None))
    assert check.status == OK
    assert "the kernel's choice of address" in check.detail
    assert "route to upstream: not checked" in check.detail

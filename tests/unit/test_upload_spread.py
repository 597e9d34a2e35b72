"""The parts of one upload dealt over several uplinks (#20): edged/upload/spread.py's decisions
and edged/upload/dealer.py's dealing, with rates and time given."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.upload import spread
from edged.upload.dealer import Lane, Part, PartDealer
from edged.upload.policy import MIN_PART_SIZE, PartSpan
from edged.upload.s3 import S3Store
from edged.upload.spread import (
    Sender,
    expected_free,
    makespan,
    request_order,
    senders_per_uplink,
    spread_part_size,
    takes_next,
)
from edged.upload.uplinks import ALL_CLASSES, Uplink

MiB = 1024 * 1024
SLOW, FAST = 2e6, 4e6  # bytes per second: 16 and 32 Mbit/s


def test_parallel_parts_are_shared_over_the_uplinks() -> None:
    assert senders_per_uplink(2, 1) == 2
    assert senders_per_uplink(2, 2) == 1
    assert senders_per_uplink(4, 2) == 2
    assert senders_per_uplink(1, 3) == 1


def test_makespan_gives_each_part_to_the_sender_that_finishes_it_first() -> None:
    senders = [Sender(0.0, 1.0), Sender(0.0, 2.0)]
    # 4 -> fast (2 s); 4 -> slow (4 s) vs fast (4 s): the first of equals; 2 -> fast (5 s)
    assert makespan(senders, [4, 4, 2]) == 4.0
    assert makespan(senders, []) == 0.0


def test_a_sender_takes_while_rates_are_unknown() -> None:
    senders = [Sender(0.0, 0.0), Sender(5.0, FAST)]
    assert takes_next(0, senders, [5 * MiB], now=0.0)


def test_a_slow_link_takes_parts_in_the_middle_of_a_file() -> None:
    senders = [Sender(0.0, SLOW), Sender(1.0, FAST)]
    assert takes_next(0, senders, [5 * MiB] * 6, now=0.0)


def test_the_last_part_waits_for_the_fast_link_when_it_would_finish_it_sooner() -> None:
    senders = [Sender(0.0, SLOW), Sender(0.2, FAST)]  # the fast link is free in 0.2 s
    assert not takes_next(0, senders, [4 * MiB], now=0.0)
    senders = [Sender(0.0, SLOW), Sender(2.0, FAST)]  # ... in 2 s: the slow one is sooner
    assert takes_next(0, senders, [4 * MiB], now=0.0)


def test_when_all_are_free_the_first_to_finish_takes_the_next_part() -> None:
    senders = [Sender(0.0, SLOW), Sender(0.0, FAST)]
    assert not takes_next(0, senders, [5 * MiB, 4 * MiB], now=0.0)
    assert takes_next(1, senders, [5 * MiB, 4 * MiB], now=0.0)


@given(
    rates=st.lists(st.floats(1e5, 1e8), min_size=2, max_size=4),
    sizes=st.lists(st.integers(1, 64 * MiB), min_size=1, max_size=8),
)
def test_of_senders_all_free_exactly_one_takes(rates: list[float], sizes: list[int]) -> None:
    senders = [Sender(0.0, rate) for rate in rates]
    takers = [i for i in range(len(senders)) if takes_next(i, senders, sizes, now=0.0)]
    assert len(takers) == 1


def test_a_sender_overdue_is_expected_later_the_longer_it_is_late() -> None:
    assert expected_free(0.0, 4_000_000, FAST, now=0.5) == 1.0
    assert expected_free(0.0, 4_000_000, FAST, now=3.0) == 5.0
    assert expected_free(0.0, 4_000_000, 0.0, now=3.0) == 3.0


def test_part_sizes_that_let_two_links_share_a_24_mib_file() -> None:
    assert spread_part_size(24 * MiB, 16 * MiB, [SLOW, FAST]) == 8 * MiB  # 1 part : 2 parts
    assert spread_part_size(24 * MiB, 16 * MiB, [FAST, FAST]) == 12 * MiB
    assert spread_part_size(24 * MiB, 16 * MiB, [0.0, FAST]) == MIN_PART_SIZE  # not measured
    assert spread_part_size(24 * MiB, 16 * MiB, [FAST]) == 16 * MiB  # one sender: as configured
    assert spread_part_size(4096 * MiB, 16 * MiB, [SLOW, FAST]) == 16 * MiB  # tail negligible


def test_each_part_size_is_planned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 GiB in parts of up to 128 MiB: 394 counts of parts, 70 sizes (it took 1.7 s)."""
    plans: list[int] = []

    def counted(senders: Sequence[Sender], sizes: Sequence[int]) -> float:
        plans.append(len(sizes))
        return makespan(senders, sizes)

    monkeypatch.setattr(spread, "makespan", counted)
    assert spread_part_size(2048 * MiB, 128 * MiB, [SLOW, FAST]) == 114 * MiB
    assert len(plans) == len(set(plans)) <= 128 - 5 + 1


@given(
    size=st.integers(6 * MiB, 600 * MiB),
    configured=st.integers(MIN_PART_SIZE, 64 * MiB),
    rates=st.lists(st.floats(0, 1e8), min_size=1, max_size=4),
)
def test_a_spread_part_size_is_one_s3_takes(size: int, configured: int, rates: list[float]) -> None:
    chosen = spread_part_size(size, configured, rates)
    assert MIN_PART_SIZE <= chosen <= configured


# -- the dealer ------------------------------------------------------------------------------


def lane(name: str) -> Lane:
    uplink = Uplink(name, "10.0.0.2", metered=False, classes=ALL_CLASSES, daily_budget=0)
    return Lane(uplink, S3Store.__new__(S3Store))  # a store never called here


def part(number: int, size: int = 5 * MiB) -> Part:
    return (PartSpan(number, (number - 1) * size, size), b"", f"md5-{number}")


async def test_a_part_lost_on_one_uplink_goes_by_the_other() -> None:
    eth, wwan = lane("eth0"), lane("wwan0")
    dealer = PartDealer([eth, wwan], [5 * MiB, 5 * MiB])
    await dealer.put(part(1))
    first = await dealer.take(eth)
    await dealer.put(part(2))
    second = await dealer.take(wwan)
    assert first is not None and second is not None
    assert await dealer.lost(eth, first)  # wwan0 is left
    await dealer.finish_reading()
    assert await dealer.take(eth) is None  # dropped: its senders stop
    await dealer.done(wwan, 1.0)
    assert await dealer.take(wwan) == first
    await dealer.done(wwan, 1.0)
    assert await dealer.take(wwan) is None  # all acknowledged
    assert wwan.rate == 5 * MiB


async def test_the_last_uplink_lost_says_none_is_left() -> None:
    eth = lane("eth0")
    dealer = PartDealer([eth], [5 * MiB])
    await dealer.put(part(1))
    taken = await dealer.take(eth)
    assert taken is not None
    assert not await dealer.lost(eth, taken)


async def test_a_sender_waits_while_a_part_in_flight_may_come_back() -> None:
    eth, wwan = lane("eth0"), lane("wwan0")
    dealer = PartDealer([eth, wwan], [5 * MiB])
    await dealer.put(part(1))
    taken = await dealer.take(eth)
    assert taken is not None
    await dealer.finish_reading()
    waiting = asyncio.ensure_future(dealer.take(wwan))
    await asyncio.sleep(0)
    assert not waiting.done()
    await dealer.lost(eth, taken)
    assert await waiting == taken


async def test_asked_to_yield_the_dealer_deals_no_more_and_keeps_nothing_back() -> None:
    eth, wwan = lane("eth0"), lane("wwan0")
    asked = [False]
    dealer = PartDealer([eth, wwan], [5 * MiB] * 4, should_yield=lambda: asked[0])
    await dealer.put(part(1))
    first = await dealer.take(eth)
    await dealer.put(part(2))  # read ahead
    asked[0] = True
    second = await dealer.take(wwan)  # no part boundary since it was read: no need to ask
    assert first is not None and second is not None
    await dealer.put(part(3))  # read ahead
    await dealer.done(wwan, 1.0)  # a part boundary: part 3 is asked about again
    assert await dealer.take(wwan) is None  # the part read ahead is not sent
    assert dealer.yielded
    await dealer.put(part(4))  # the reader is not held: the part is left for the resumption
    assert await dealer.lost(eth, first)  # in flight and lost: not dealt again, nothing fails
    assert await dealer.take(eth) is None


def test_two_free_senders_of_one_uplink_are_two() -> None:
    eth = lane("eth0")
    twin = Lane(eth.uplink, eth.store)
    assert twin != eth
    assert [eth, twin].index(twin) == 1  # the dealer finds a sender by itself, not its twin


def test_the_dealer_module_does_not_import_the_s3_adapter() -> None:
    code = "import sys, edged.upload.dealer; print('edged.upload.s3' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_links_parts_in_flight_share_its_time() -> None:
    """Two parts at once get half the link each: bytes over share is the link's rate."""
    link = spread.LinkShare()
    first, second = link.start(0.0), link.start(0.0)
    assert link.end(first, 10.0) == 5.0  # 10 MB in 10 s by a connection: 2 MB/s by the link
    assert link.end(second, 10.0) == 5.0
    staggered = link.start(20.0)  # alone from 20 to 22, shared to 24, ...
    later = link.start(22.0)
    assert link.end(staggered, 24.0) == 3.0
    assert link.end(later, 26.0) == 3.0  # ... then alone: 6 s busy, 6 s of shares


def test_small_requests_go_by_an_unmetered_link_then_the_fastest() -> None:
    eth, wlan = lane("eth0").uplink, lane("wlan0").uplink
    wwan = Uplink("wwan0", "10.0.1.2", metered=True, classes=ALL_CLASSES, daily_budget=0)
    assert eth is not None and wlan is not None
    assert request_order([wwan, eth, wlan], [9e6, 1e6, 2e6]) == [wlan, eth, wwan]
    assert request_order([eth, wlan], [0.0, 0.0]) == [eth, wlan]  # not measured: as given


async def test_a_sender_whose_uplink_may_carry_no_more_stops_and_the_others_go_on() -> None:
    eth, wwan = lane("eth0"), lane("wwan0")
    budget_left = {"eth0": True, "wwan0": True}
    dealer = PartDealer([eth, wwan], [5 * MiB] * 3, may_send=lambda each: budget_left[each.link])
    await dealer.put(part(1))
    first = await dealer.take(wwan)
    await dealer.put(part(2))
    budget_left["wwan0"] = False  # spent by its first part
    await dealer.done(wwan, 1.0)
    assert await dealer.take(wwan) is None  # it stops
    assert dealer.retired == ["wwan0"]
    assert await dealer.take(eth) == part(2)  # the other takes the rest
    await dealer.put(part(3))
    await dealer.done(eth, 1.0)
    assert await dealer.take(eth) == part(3)
    assert first is not None and not dealer.yielded


async def test_with_no_uplink_left_that_may_carry_it_the_upload_yields() -> None:
    eth = lane("eth0")
    budget_left = [True]
    dealer = PartDealer([eth], [5 * MiB] * 3, may_send=lambda each: budget_left[0])
    await dealer.put(part(1))
    assert await dealer.take(eth) == part(1)
    await dealer.put(part(2))
    budget_left[0] = False
    await dealer.done(eth, 1.0)
    assert await dealer.take(eth) is None
    assert dealer.yielded  # the rest waits for a link, the parts sent are kept
    await dealer.put(part(3))  # the reader is not held

"""The uplink pool (edged/upload/links.py) over interface facts the test gives, and its adapters
on this machine's loopback only."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import UplinkConfig
from edged.metrics import UplinkMetrics
from edged.upload import links, uplinks
from edged.upload.classes import UploadClass
from edged.upload.links import CapSchedule, Discovery, UplinkPool
from edged.upload.policy import BACKOFF_CAP_SECONDS
from edged.upload.s3 import S3Store
from edged.upload.uplinks import InterfaceFacts, Uplink
from tests.support import eventually

UPSTREAM = ("203.0.113.9", 443)
LO = InterfaceFacts("lo", ("127.0.0.1",), up=True, loopback=True)
ETH = InterfaceFacts("eth0", ("192.168.1.20",), up=True, speed_mbps=1000)
WWAN = InterfaceFacts("wwan0", ("10.64.3.2",), up=True)
WWAN_RULE = UplinkConfig(match="wwan*", metered=True, daily_budget=1000)


class Venue:
    """The interfaces of a box, and which sources reach the upstream; changed by the test."""

    def __init__(self, *facts: InterfaceFacts) -> None:
        self.facts = list(facts)
        self.route: str | None = facts[0].ipv4[0] if facts else None
        self.unreachable: set[str] = set()
        self.probes: list[str] = []
        self.now = datetime(2026, 11, 30, 12, 0).astimezone()
        self.monotonic = 1000.0

    def discovery(self) -> Discovery:
        def reaches(source: str, host: str, port: int, interface: str) -> bool:
            self.probes.append(source)
            return source not in self.unreachable

        return Discovery(
            facts=lambda: list(self.facts),
            route=lambda host, port: self.route,
            reaches=reaches,
            local_now=lambda: self.now,
            monotonic=lambda: self.monotonic,
        )


def store(name: str = "default") -> S3Store:
    return S3Store(
        endpoint="127.0.0.1:9",
        secure=False,
        region="us-east-1",
        bucket="edged",
        access_key=name,
        secret_key="secret-secret",  # noqa: S106 - never used: no request is made
    )


def sample(registry: CollectorRegistry, name: str, interface: str) -> float | None:
    return registry.get_sample_value(name, {"interface": interface})


async def test_without_rules_one_uplink_carries_everything_by_the_default_store() -> None:
    venue = Venue(ETH, LO, WWAN)
    default = store()
    pool = UplinkPool((), default, UPSTREAM, discovery=venue.discovery())
    await pool.refresh()
    (uplink,) = pool.uplinks
    assert uplink.interface == "eth0"
    assert pool.carried_classes() == frozenset(UploadClass)
    assert pool.usable(UploadClass.RECORDING) == [uplink]
    assert pool.store_for(uplink) is default
    assert venue.probes == []  # unbound: the uploader's own probe speaks for it
    assert pool.describe()[0]["route"] is True


async def test_a_metered_link_alone_carries_no_recording(tmp_path: Path) -> None:
    venue = Venue(ETH, WWAN)
    registry = CollectorRegistry()
    made: list[Uplink] = []

    def factory(uplink: Uplink) -> S3Store:
        made.append(uplink)
        return store(uplink.interface)

    default = store()
    pool = UplinkPool(
        [WWAN_RULE],
        default,
        UPSTREAM,
        store_factory=factory,
        metrics=UplinkMetrics(registry),
        discovery=venue.discovery(),
    )
    await pool.refresh()
    assert sorted(venue.probes) == ["10.64.3.2", "192.168.1.20"]
    eth, wwan = pool.uplinks
    assert pool.usable(UploadClass.RECORDING) == [eth]
    assert pool.usable(UploadClass.CLIP) == [eth, wwan]
    assert pool.store_for(wwan) is pool.store_for(wwan)
    assert made == [eth, wwan]  # made as the pool looked
    pool.store_for(eth)  # the default store's policy prefixes (the event changed) are followed
    default.set_policy_prefixes(["gala/box/", "older/box/"])
    assert pool.store_for(wwan).policy_prefixes == ["gala/box/", "older/box/"]
    pool.failed(eth, ConnectionResetError("reset by peer"))
    assert pool.usable(UploadClass.RECORDING) == []
    assert UploadClass.RECORDING not in pool.carried_classes()
    assert UploadClass.CLIP in pool.carried_classes()
    assert sample(registry, "edged_uplink_up", "eth0") == 0
    assert sample(registry, "edged_uplink_up", "wwan0") == 1
    assert pool.describe()[0]["dropped_reason"] == "reset by peer"


async def test_a_spent_budget_stops_the_link_until_the_next_local_day(tmp_path: Path) -> None:
    venue = Venue(ETH, WWAN)
    registry = CollectorRegistry()
    budget = tmp_path / links.BUDGET_FILE
    pool = UplinkPool(
        [WWAN_RULE],
        store(),
        UPSTREAM,
        budget_file=budget,
        metrics=UplinkMetrics(registry),
        discovery=venue.discovery(),
    )
    await pool.refresh()
    wwan = pool.uplinks[1]
    pool.sent(wwan, 600, 2.0)
    assert pool.throughput(wwan) == 300.0
    assert sample(registry, "edged_uplink_budget_remaining_bytes", "wwan0") == 400
    assert sample(registry, "edged_uplink_budget_remaining_bytes", "eth0") is None
    assert sample(registry, "edged_uplink_bytes_total", "wwan0") == 600
    pool.sent(wwan, 400, 1.0)
    assert pool.usable(UploadClass.CLIP) == [pool.uplinks[0]]
    await pool.save()
    assert stat.S_IMODE(os.stat(budget).st_mode) == 0o600
    # a restart the same day remembers what was spent
    again = UplinkPool(
        [WWAN_RULE], store(), UPSTREAM, budget_file=budget, discovery=venue.discovery()
    )
    await again.refresh()
    assert [u.interface for u in again.usable(UploadClass.CLIP)] == ["eth0"]
    assert again.describe()[1]["budget_left_bytes"] == 0
    venue.now = datetime(2026, 12, 1, 0, 1).astimezone()
    assert [u.interface for u in again.usable(UploadClass.CLIP)] == ["eth0", "wwan0"]


async def test_an_unreachable_link_is_dropped_and_probed_again_after_its_backoff() -> None:
    venue = Venue(ETH, WWAN)
    venue.unreachable.add("10.64.3.2")
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    await pool.refresh()
    assert [u.interface for u in pool.usable(UploadClass.CLIP)] == ["eth0"]
    assert pool.describe()[1]["route"] is False
    venue.probes.clear()
    await pool.refresh()
    assert venue.probes == []  # backing off: not probed before its time
    venue.unreachable.clear()
    venue.monotonic += BACKOFF_CAP_SECONDS  # its backoff is over
    await pool.refresh()
    assert venue.probes == ["10.64.3.2"]
    assert [u.interface for u in pool.usable(UploadClass.CLIP)] == ["eth0", "wwan0"]


async def test_an_interface_that_goes_is_forgotten() -> None:
    venue = Venue(ETH, WWAN)
    registry = CollectorRegistry()
    pool = UplinkPool(
        [WWAN_RULE], store(), UPSTREAM, metrics=UplinkMetrics(registry), discovery=venue.discovery()
    )
    await pool.refresh()
    assert sample(registry, "edged_uplink_up", "wwan0") == 1
    venue.facts = [ETH]
    await pool.refresh()
    assert [u.interface for u in pool.uplinks] == ["eth0"]
    assert sample(registry, "edged_uplink_up", "wwan0") is None


def test_a_torn_state_file_counts_nothing(tmp_path: Path) -> None:
    path = tmp_path / links.BUDGET_FILE
    assert links.read_spent(path) == {}
    assert links.last_seen(path) == ([], None)
    for torn in ('{"spent": {"wwan0": ["2026-11-30"', '{"spent": {"wwan0": 5}}', "[1]", "{}"):
        path.write_text(torn)
        assert links.read_spent(path) == {}
        assert links.last_seen(path) == ([], None)
    links.write_state(path, {"wwan0": ("2026-11-30", 5)}, [{"interface": "wwan0"}], 1.5)
    assert links.read_spent(path) == {"wwan0": ("2026-11-30", 5)}
    assert links.last_seen(path) == ([{"interface": "wwan0"}], 1.5)


async def test_the_daemons_pool_saves_what_it_saw_and_others_only_read(tmp_path: Path) -> None:
    venue = Venue(ETH, WWAN)
    path = tmp_path / links.BUDGET_FILE
    looker = UplinkPool(
        [WWAN_RULE], store(), UPSTREAM, budget_file=path, discovery=venue.discovery()
    )
    await looker.refresh()  # the doctor's look: it writes nothing
    assert not path.exists()
    await looker.save()
    rows, at = links.last_seen(path)
    assert [row["interface"] for row in rows] == ["eth0", "wwan0"]
    assert at is not None
    before = path.stat().st_mtime_ns
    await looker.save()  # nothing changed: not written again
    assert path.stat().st_mtime_ns == before


def test_the_upstream_address_of_an_endpoint() -> None:
    assert links.upstream_address("s3.example.org", True) == ("s3.example.org", 443)
    assert links.upstream_address("s3.example.org", False) == ("s3.example.org", 80)
    assert links.upstream_address("10.0.0.5:9000", True) == ("10.0.0.5", 9000)


# -- the adapters, on loopback ---------------------------------------------------------------------


def test_loopback_is_found_and_is_no_candidate() -> None:
    facts = {item.name: item for item in links.interface_facts()}
    assert facts["lo"].loopback
    assert "127.0.0.1" in facts["lo"].ipv4
    assert facts["lo"].up


def test_the_route_and_the_reach_of_loopback() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert links.route_source("127.0.0.1", port) == "127.0.0.1"
        assert links.reaches("127.0.0.1", "127.0.0.1", port)
        assert links.reaches("127.0.0.1", "127.0.0.1", port, "lo")
    assert not links.reaches("127.0.0.1", "127.0.0.1", port, "lo", seconds=1.0)  # closed now


async def test_before_its_first_look_the_pool_carries_everything_as_before() -> None:
    default = store()
    pool = UplinkPool((), default, UPSTREAM, discovery=Venue(WWAN).discovery())
    assert pool.carried_classes() == frozenset(UploadClass)
    (uplink,) = pool.usable(UploadClass.RECORDING)
    assert pool.store_for(uplink) is default


async def test_with_rules_nothing_goes_before_the_pools_first_look() -> None:
    """Finding 8: with rules, the kernel's route may be the metered link: before the first look
    no class is carried (the uploader takes nothing), and the first look tells the uploader."""
    venue = Venue(WWAN, ETH)  # the kernel's route is the metered link
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    assert pool.carried_classes() == frozenset()
    assert pool.usable(UploadClass.RECORDING) == []
    changes: list[frozenset[UploadClass]] = []
    task = asyncio.create_task(
        pool.keep_current(
            CapSchedule(), lambda cap: None, lambda: changes.append(pool.carried_classes()), 0.01
        )
    )
    try:
        await eventually(lambda: changes, 10, "the uploader told of the first look")
        assert changes[0] == frozenset(UploadClass)
        assert [u.interface for u in pool.usable(UploadClass.RECORDING)] == ["eth0"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_pool_keeps_the_classes_and_the_cap_current() -> None:
    venue = Venue(ETH, WWAN)
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    schedule = CapSchedule(uplinks.cap_schedule({"10:00-22:00": 250_000}), default=1000)
    caps: list[int] = []
    changes: list[frozenset[UploadClass]] = []
    task = asyncio.create_task(
        pool.keep_current(
            schedule, caps.append, lambda: changes.append(pool.carried_classes()), interval=0.01
        )
    )
    try:
        await eventually(lambda: caps == [250_000], 10, "the day's cap")
        venue.facts = [WWAN]  # the wired link is unplugged: no recording goes
        await eventually(lambda: len(changes) == 2, 10, "the classes changed")
        assert changes == [frozenset(UploadClass), uplinks.METERED_CLASSES]  # the first look too
        venue.now = venue.now.replace(hour=23)
        await eventually(lambda: caps == [250_000, 1000], 10, "the night's cap")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_uplink_in_one_line() -> None:
    venue = Venue(ETH, WWAN)
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    await pool.refresh()
    eth, wwan = pool.uplinks
    pool.sent(wwan, 1000, 1.0)
    pool.failed(eth, TimeoutError("timed out"))
    lines = [links.uplink_line(row) for row in pool.describe()]
    assert lines == [
        "eth0      192.168.1.20  unmetered  guest,clip,manifest,recording  dropped (timed out)"
        "  0 B/s",
        "wwan0     10.64.3.2  metered  guest,clip,manifest  budget spent  1000 B/s"
        "  budget left 0 B",
    ]


def test_the_pool_looks_again_when_a_backoff_ends() -> None:
    assert links.next_look(60.0, [], 100.0) == 60.0
    assert links.next_look(60.0, [104.0, 130.0], 100.0) == 4.0
    assert links.next_look(60.0, [99.0], 100.0) == links.MIN_LOOK_SECONDS
    assert links.next_look(60.0, [500.0], 100.0) == 60.0


async def test_a_state_file_that_cannot_be_written_stops_neither_the_cap_nor_the_classes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 9: save() failing (a full disk, here a missing directory) is a warning, once;
    the schedule's cap is set and the classes are told all the same."""
    venue = Venue(ETH, WWAN)
    pool = UplinkPool(
        [WWAN_RULE],
        store(),
        UPSTREAM,
        budget_file=tmp_path / "gone" / links.BUDGET_FILE,
        discovery=venue.discovery(),
    )
    schedule = CapSchedule(uplinks.cap_schedule({"10:00-22:00": 250_000}), default=1000)
    caps: list[int] = []
    changes: list[frozenset[UploadClass]] = []
    task = asyncio.create_task(
        pool.keep_current(
            schedule, caps.append, lambda: changes.append(pool.carried_classes()), interval=0.01
        )
    )
    try:
        await eventually(lambda: caps == [250_000], 10, "the day's cap")
        venue.facts = [WWAN]
        await eventually(lambda: changes, 10, "the classes changed")
        pool.sent(pool.uplinks[0], 10, 1.0)  # something to save, again
        await pool.save()
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "uplinks" in r.message]
    assert len(warned) == 1, warned


async def test_a_link_that_probes_fine_but_fails_again_backs_off_longer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Finding 4: a connect probe can pass where a part cannot (a PMTU black hole, a captive
    portal): the probe lets the link be used again, but only bytes carried reset its failures,
    so each failure in a row waits longer and warns once."""
    venue = Venue(ETH, WWAN)
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    await pool.refresh()
    eth = pool.uplinks[0]
    for _ in range(3):  # backoffs of 1-2 s, 2-4 s, 4-8 s when failures add up
        pool.failed(eth, TimeoutError("part stalled"))
        venue.monotonic += 2.0
        await pool.refresh()
    assert eth not in pool.usable(UploadClass.RECORDING)  # still backing off
    venue.monotonic += BACKOFF_CAP_SECONDS
    await pool.refresh()
    assert eth in pool.usable(UploadClass.RECORDING)  # the probe passed: tried again
    pool.sent(eth, 1000, 1.0)  # a part went: its failures are forgotten
    pool.failed(eth, TimeoutError("part stalled"))
    venue.monotonic += 2.0
    await pool.refresh()
    assert eth in pool.usable(UploadClass.RECORDING)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "dropped" in r.message]
    assert len(warned) == 2, warned  # the first failure in a row, and the one after a part went


async def test_an_interface_no_rule_names_joins_only_when_its_probe_passes() -> None:
    """Finding 5: with rules, the box's own guest AP (or docker0, wg0) is no uplink: an
    interface no rule names joins after a probe that passes, and one whose first probe fails is
    left out (not listed as dropped, no metric), and not probed again until its address changes."""
    guest_ap = InterfaceFacts("wlan1", ("10.42.0.1",), up=True)
    venue = Venue(ETH, guest_ap, WWAN)
    venue.unreachable.add("10.42.0.1")
    registry = CollectorRegistry()
    pool = UplinkPool(
        [WWAN_RULE],
        store(),
        UPSTREAM,
        metrics=UplinkMetrics(registry),
        discovery=venue.discovery(),
    )
    await pool.refresh()
    assert [u.interface for u in pool.uplinks] == ["eth0", "wwan0"]  # eth0's probe passed
    assert [row["interface"] for row in pool.describe()] == ["eth0", "wwan0"]
    assert sample(registry, "edged_uplink_up", "wlan1") is None
    venue.probes.clear()
    venue.monotonic += BACKOFF_CAP_SECONDS
    await pool.refresh()
    assert venue.probes == []
    venue.facts = [ETH, InterfaceFacts("wlan1", ("10.42.0.7",), up=True), WWAN]
    venue.unreachable.clear()  # a new address, and a route: it is an uplink now
    await pool.refresh()
    assert [u.interface for u in pool.uplinks] == ["eth0", "wlan1", "wwan0"]
    venue.unreachable.add("10.64.3.2")  # a named one that fails is listed as dropped
    venue.facts = [ETH, WWAN, InterfaceFacts("wwan1", ("10.64.9.9",), up=True)]
    venue.unreachable.add("10.64.9.9")
    venue.monotonic += BACKOFF_CAP_SECONDS
    pool.failed(pool.uplinks[2], TimeoutError("timed out"))
    venue.monotonic += BACKOFF_CAP_SECONDS
    await pool.refresh()
    assert [row["interface"] for row in pool.describe()] == ["eth0", "wwan0", "wwan1"]
    assert not any(row["usable"] for row in pool.describe()[1:])


async def test_a_link_dropped_and_back_between_two_looks_wakes_the_uploader() -> None:
    """Finding 2: a transfer drops eth0 (the uploader then sees no recording carried and may
    sleep a day), and the next look finds it back: the classes changed for the uploader though
    the two looks saw the same."""
    venue = Venue(ETH, WWAN)
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    await pool.refresh()
    schedule = CapSchedule(uplinks.cap_schedule({"00:00-00:00": 1000}))
    caps: list[int] = []
    changes: list[frozenset[UploadClass]] = []
    task = asyncio.create_task(
        pool.keep_current(
            schedule, caps.append, lambda: changes.append(pool.carried_classes()), 0.01
        )
    )
    try:
        await eventually(lambda: caps, 10, "the first look")  # its cap is set after it
        eth = pool.uplinks[0]
        pool.failed(eth, TimeoutError("part stalled"))  # both before the next look
        venue.monotonic += BACKOFF_CAP_SECONDS
        await eventually(lambda: changes, 10, "the uploader told")
        assert changes == [frozenset(UploadClass)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_stores_of_the_uplinks_are_made_off_the_event_loop() -> None:
    """Finding 12: making a store binds a probe socket and loads certificates: the pool makes
    them in a thread when it looks, and store_for only hands them out."""
    venue = Venue(ETH, WWAN)
    threads: list[int] = []

    def factory(uplink: Uplink) -> S3Store:
        threads.append(threading.get_ident())
        return store(uplink.interface)

    pool = UplinkPool(
        [WWAN_RULE], store(), UPSTREAM, store_factory=factory, discovery=venue.discovery()
    )
    await pool.refresh()
    eth, wwan = pool.uplinks
    assert pool.store_for(wwan) is pool.store_for(wwan)
    pool.store_for(eth)
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_a_link_dropped_during_a_long_wait_is_probed_when_its_backoff_ends() -> None:
    """A transfer's failure wakes the pool's look, so the dropped link is probed when its backoff
    ends, not at the next minute (found testing finding 1)."""
    venue = Venue(ETH, WWAN)
    pool = UplinkPool([WWAN_RULE], store(), UPSTREAM, discovery=venue.discovery())
    caps: list[int] = []
    schedule = CapSchedule(uplinks.cap_schedule({"00:00-00:00": 1000}))
    task = asyncio.create_task(pool.keep_current(schedule, caps.append, lambda: None))
    try:
        await eventually(lambda: caps, 10, "the first look")  # then it waits a minute
        pool.failed(pool.uplinks[0], TimeoutError("part stalled"))
        venue.monotonic += BACKOFF_CAP_SECONDS
        await eventually(lambda: venue.probes.count("192.168.1.20") == 2, 10, "eth0 probed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""The venue's uplinks as plain decisions: which interfaces are candidates, what each may carry,
its daily byte budget, its measured throughput and backoff, and the bandwidth cap's schedule.

Time and the interfaces' facts are passed in; edged/upload/links.py is the adapter around this.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from fnmatch import fnmatchcase

from edged.config import UplinkConfig
from edged.upload.classes import UploadClass
from edged.upload.policy import backoff_seconds

ALL_CLASSES = frozenset(UploadClass)
# A metered link (a phone's hotspot, an LTE dongle) carries what a crew needs out soon: guests'
# data and clips, and the manifests and sidecars beside them (tiny); never the day's recordings.
METERED_CLASSES = frozenset({UploadClass.GUEST, UploadClass.CLIP, UploadClass.MANIFEST})
DEFAULT_INTERFACE = "default"  # the kernel's route when no interface holds its source address
THROUGHPUT_WEIGHT = 0.3  # of a new measurement in the running average
_WINDOW = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


@dataclass(frozen=True)
class Uplink:
    """One way out to the upstream."""

    interface: str  # "eth0", "wwan0"
    address: str  # its IPv4 source address ("" = the kernel's choice)
    metered: bool
    classes: frozenset[UploadClass]  # what it may carry
    daily_budget: int  # bytes a day, 0 = no budget


@dataclass(frozen=True)
class InterfaceFacts:
    """What the system says of one interface (psutil's net_if_addrs and net_if_stats)."""

    name: str
    ipv4: tuple[str, ...]
    up: bool
    speed_mbps: int = 0  # 0 = unknown
    loopback: bool = False


def is_candidate(facts: InterfaceFacts) -> bool:
    """Up, with an IPv4 address, not loopback (whether it reaches the upstream is probed)."""
    return facts.up and bool(facts.ipv4) and not facts.loopback


def rule_for(interface: str, rules: Sequence[UplinkConfig]) -> UplinkConfig | None:
    """The first rule naming `interface`, by name or by pattern (`wwan*`)."""
    return next(
        (rule for rule in rules if rule.match == interface or fnmatchcase(interface, rule.match)),
        None,
    )


def classes_of(rule: UplinkConfig | None) -> frozenset[UploadClass]:
    """What a link may carry: the rule's classes, else by default all, or METERED_CLASSES."""
    if rule is None:
        return ALL_CLASSES
    if rule.classes:
        return frozenset(UploadClass(name) for name in rule.classes)
    return METERED_CLASSES if rule.metered else ALL_CLASSES


def uplink_for(name: str, address: str, rule: UplinkConfig | None) -> Uplink:
    return Uplink(
        interface=name,
        address=address,
        metered=rule is not None and rule.metered,
        classes=classes_of(rule),
        daily_budget=rule.daily_budget if rule is not None else 0,
    )


def interface_of(address: str | None, facts: Iterable[InterfaceFacts]) -> InterfaceFacts | None:
    """The interface holding `address` (the source the kernel picks toward the upstream)."""
    if not address:
        return None
    return next((item for item in facts if address in item.ipv4), None)


def plan_uplinks(
    facts: Sequence[InterfaceFacts], rules: Sequence[UplinkConfig], route_address: str | None
) -> list[Uplink]:
    """The uplinks to use. Without rules: one, the kernel's route (today's behaviour). With rules:
    every candidate interface (a rule, else unmetered and carrying all; the pool keeps one no rule
    names only when its probe passes); the route when none is, and alone when it is loopback
    (the upstream lives on this box: no other link leads there)."""
    route = interface_of(route_address, facts)
    if rules and not (route is not None and route.loopback):
        planned = [
            uplink_for(item.name, item.ipv4[0], rule_for(item.name, rules))
            for item in sorted(facts, key=lambda item: item.name)
            if is_candidate(item)
        ]
        if planned:
            return planned
    if route is None:
        return [uplink_for(DEFAULT_INTERFACE, "", rule_for(DEFAULT_INTERFACE, rules))]
    return [uplink_for(route.name, route_address or "", rule_for(route.name, rules))]


# -- budgets ---------------------------------------------------------------------------------------

Spent = Mapping[str, tuple[str, int]]  # interface -> (local day "YYYY-MM-DD", bytes sent that day)


def local_day(moment: datetime) -> str:
    """The box's local day of `moment` (an aware datetime in the box's zone)."""
    return moment.date().isoformat()


def spent_on(spent: Spent, interface: str, day: str) -> int:
    """Bytes `interface` sent on `day` (a day gone counts nothing)."""
    recorded_day, nbytes = spent.get(interface, (day, 0))
    return nbytes if recorded_day == day else 0


def with_spent(spent: Spent, interface: str, nbytes: int, day: str) -> dict[str, tuple[str, int]]:
    """The ledger after `interface` sent `nbytes` on `day`."""
    return {**spent, interface: (day, spent_on(spent, interface, day) + max(nbytes, 0))}


def budget_left(uplink: Uplink, spent_today: int) -> int | None:
    """Bytes the uplink may still send today; None when it has no budget."""
    if uplink.daily_budget <= 0:
        return None
    return max(uplink.daily_budget - spent_today, 0)


def may_send(uplink: Uplink, spent_today: int) -> bool:
    left = budget_left(uplink, spent_today)
    return left is None or left > 0


# -- health and throughput -------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkHealth:
    """An uplink's standing: dropped after a failure until `retry_at` (monotonic), then probed.
    A probe that passes lets it be used again, on trial: a connect can pass where a part cannot
    (a PMTU black hole, a captive portal), so only bytes carried forget its failures."""

    failures: int = 0  # in a row, since it last carried bytes
    retry_at: float = 0.0
    reason: str = ""
    on_trial: bool = False  # its probe passed after the last failure

    @property
    def dropped(self) -> bool:
        return self.failures > 0 and not self.on_trial


def after_failure(
    health: LinkHealth, reason: str, now: float, rng: random.Random | None = None
) -> LinkHealth:
    """Dropped; probed again after a backoff that grows with each failure in a row."""
    failures = health.failures + 1
    return LinkHealth(failures, now + backoff_seconds(failures, rng), reason)


def probe_due(health: LinkHealth, now: float) -> bool:
    return health.dropped and now >= health.retry_at


def probe_passed(health: LinkHealth) -> LinkHealth:
    """Used again, its failures kept: the next one backs off longer."""
    return dataclasses.replace(health, retry_at=0.0, reason="", on_trial=health.failures > 0)


def restored(health: LinkHealth) -> LinkHealth:
    """It carried bytes: its failures are forgotten."""
    return LinkHealth()


def measured(previous: float, nbytes: int, seconds: float) -> float:
    """The running throughput in bytes/s after sending `nbytes` in `seconds` (EWMA)."""
    if nbytes <= 0 or seconds <= 0:
        return previous
    sample = nbytes / seconds
    if previous <= 0:
        return sample
    return previous + THROUGHPUT_WEIGHT * (sample - previous)


# -- the cap's schedule ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CapWindow:
    """From `start` to `end` (minutes of the local day; end before start crosses midnight)."""

    start: int
    end: int
    rate: int  # bytes/s, 0 = unlimited

    def holds(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_window(text: str, rate: int) -> CapWindow:
    """`"10:00-22:00"` (config.py has checked the shape) as a window."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window such as '10:00-22:00'")
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    return CapWindow(start_hour * 60 + start_minute, end_hour * 60 + end_minute, rate)


def cap_schedule(schedule: Mapping[str, int]) -> tuple[CapWindow, ...]:
    return tuple(parse_window(text, rate) for text, rate in schedule.items())


def cap_at(windows: Iterable[CapWindow], default: int, at: time) -> int:
    """The bandwidth cap (bytes/s, 0 = unlimited) at local time `at`: the windows holding it
    replace `default`; where windows overlap, the smallest cap holds."""
    minute = at.hour * 60 + at.minute
    rates = [window.rate for window in windows if window.holds(minute)]
    if not rates:
        return default
    limited = [rate for rate in rates if rate > 0]
    return min(limited) if limited else 0

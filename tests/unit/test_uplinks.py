"""The uplink decisions (edged/upload/uplinks.py): candidates, rules, budgets, health, the cap."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta, timezone

from hypothesis import assume, given
from hypothesis import strategies as st

from edged.config import UplinkConfig
from edged.upload import uplinks
from edged.upload.classes import UploadClass
from edged.upload.policy import BACKOFF_CAP_SECONDS
from edged.upload.uplinks import (
    ALL_CLASSES,
    METERED_CLASSES,
    CapWindow,
    InterfaceFacts,
    LinkHealth,
    Uplink,
)

LO = InterfaceFacts("lo", ("127.0.0.1",), up=True, loopback=True)
ETH = InterfaceFacts("eth0", ("192.168.1.20",), up=True, speed_mbps=1000)
WWAN = InterfaceFacts("wwan0", ("10.64.3.2",), up=True)
DOWN = InterfaceFacts("wlan0", ("192.168.8.4",), up=False)
BARE = InterfaceFacts("usb0", (), up=True)
WWAN_RULE = UplinkConfig(match="wwan*", metered=True, daily_budget=2000)


def test_candidates_are_up_with_ipv4_and_not_loopback() -> None:
    assert [f.name for f in (LO, ETH, WWAN, DOWN, BARE) if uplinks.is_candidate(f)] == [
        "eth0",
        "wwan0",
    ]


def test_rules_match_by_name_or_pattern_first_wins() -> None:
    rules = [UplinkConfig(match="eth0"), WWAN_RULE, UplinkConfig(match="*", metered=True)]
    assert uplinks.rule_for("eth0", rules) == rules[0]
    assert uplinks.rule_for("wwan1", rules) == WWAN_RULE
    assert uplinks.rule_for("usb0", rules) == rules[2]
    assert uplinks.rule_for("usb0", rules[:2]) is None


def test_what_a_link_carries_by_default() -> None:
    assert uplinks.classes_of(None) == ALL_CLASSES
    assert uplinks.classes_of(UplinkConfig(match="eth0")) == ALL_CLASSES
    assert uplinks.classes_of(WWAN_RULE) == METERED_CLASSES
    assert UploadClass.RECORDING not in METERED_CLASSES
    assert {UploadClass.GUEST, UploadClass.CLIP} <= METERED_CLASSES
    only = UplinkConfig(match="usb*", metered=True, classes=("guest",))
    assert uplinks.classes_of(only) == {UploadClass.GUEST}


def test_without_rules_the_one_uplink_is_the_kernels_route() -> None:
    facts = [LO, ETH, WWAN]
    assert uplinks.plan_uplinks(facts, [], "192.168.1.20") == [
        Uplink("eth0", "192.168.1.20", metered=False, classes=ALL_CLASSES, daily_budget=0)
    ]
    # an upstream on this box: the route leaves by loopback, and that is the one uplink
    assert uplinks.plan_uplinks(facts, [], "127.0.0.1") == [
        Uplink("lo", "127.0.0.1", metered=False, classes=ALL_CLASSES, daily_budget=0)
    ]
    assert uplinks.plan_uplinks(facts, [], None) == [
        Uplink("default", "", metered=False, classes=ALL_CLASSES, daily_budget=0)
    ]


def test_with_rules_every_candidate_is_an_uplink() -> None:
    planned = uplinks.plan_uplinks([WWAN, LO, DOWN, ETH], [WWAN_RULE], "192.168.1.20")
    assert planned == [
        Uplink("eth0", "192.168.1.20", metered=False, classes=ALL_CLASSES, daily_budget=0),
        Uplink("wwan0", "10.64.3.2", metered=True, classes=METERED_CLASSES, daily_budget=2000),
    ]
    # no candidate at all: the kernel's route still carries the files
    assert [u.interface for u in uplinks.plan_uplinks([LO], [WWAN_RULE], "10.9.9.9")] == ["default"]
    # an upstream on this box: loopback alone leads there, with its rule
    only_lo = uplinks.plan_uplinks(
        [ETH, LO, WWAN], [UplinkConfig(match="lo", metered=True)], "127.0.0.1"
    )
    assert only_lo == [
        Uplink("lo", "127.0.0.1", metered=True, classes=METERED_CLASSES, daily_budget=0)
    ]


def test_budgets_count_the_local_day() -> None:
    link = uplinks.uplink_for("wwan0", "10.64.3.2", WWAN_RULE)
    spent = uplinks.with_spent({}, "wwan0", 1500, "2026-11-30")
    assert uplinks.spent_on(spent, "wwan0", "2026-11-30") == 1500
    assert uplinks.budget_left(link, 1500) == 500
    assert uplinks.may_send(link, 1500)
    spent = uplinks.with_spent(spent, "wwan0", 600, "2026-11-30")
    assert uplinks.budget_left(link, uplinks.spent_on(spent, "wwan0", "2026-11-30")) == 0
    assert not uplinks.may_send(link, 2100)
    assert uplinks.spent_on(spent, "wwan0", "2026-12-01") == 0  # a new day, a new budget
    spent = uplinks.with_spent(spent, "wwan0", 10, "2026-12-01")
    assert spent["wwan0"] == ("2026-12-01", 10)
    unlimited = uplinks.uplink_for("eth0", "192.168.1.20", None)
    assert uplinks.budget_left(unlimited, 10**12) is None
    assert uplinks.may_send(unlimited, 10**12)


def test_the_day_is_the_boxs_local_day() -> None:
    tokyo = timezone(timedelta(hours=9))
    moment = datetime(2026, 11, 30, 23, 30, tzinfo=UTC).astimezone(tokyo)
    assert uplinks.local_day(moment) == "2026-12-01"


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=20))
def test_spending_adds_up_within_a_day(amounts: list[int]) -> None:
    spent: dict[str, tuple[str, int]] = {}
    for amount in amounts:
        spent = uplinks.with_spent(spent, "wwan0", amount, "2026-11-30")
    assert uplinks.spent_on(spent, "wwan0", "2026-11-30") == sum(amounts)


def test_a_failed_link_backs_off_and_is_probed_again() -> None:
    rng = random.Random(1)
    health = uplinks.after_failure(LinkHealth(), "connection refused", 100.0, rng)
    assert health.dropped
    assert health.reason == "connection refused"
    assert not uplinks.probe_due(health, 100.0)
    assert uplinks.probe_due(health, health.retry_at)
    again = uplinks.after_failure(health, "timed out", 200.0, rng)
    assert again.failures == 2
    assert not uplinks.restored(again).dropped
    assert not uplinks.probe_due(LinkHealth(), 1e9)


def test_a_passed_probe_puts_a_link_on_trial_and_only_bytes_forget_its_failures() -> None:
    rng = random.Random(2)
    health = uplinks.after_failure(LinkHealth(), "part stalled", 100.0, rng)
    trial = uplinks.probe_passed(health)
    assert not trial.dropped
    assert trial.failures == 1
    assert not uplinks.probe_due(trial, 1e9)
    again = uplinks.after_failure(trial, "part stalled", 200.0, rng)
    assert again.dropped
    assert again.failures == 2
    assert uplinks.restored(again) == LinkHealth()
    assert uplinks.probe_passed(LinkHealth()) == LinkHealth()


@given(st.integers(min_value=1, max_value=50), st.floats(min_value=0, max_value=1e9))
def test_backoff_is_bounded(failures: int, now: float) -> None:
    health = LinkHealth(failures=failures - 1)
    after = uplinks.after_failure(health, "x", now, random.Random(failures))
    assert now < after.retry_at <= now + BACKOFF_CAP_SECONDS


def test_throughput_is_a_running_average() -> None:
    assert uplinks.measured(0.0, 1000, 1.0) == 1000.0
    assert uplinks.measured(1000.0, 2000, 1.0) == 1300.0
    assert uplinks.measured(1000.0, 0, 1.0) == 1000.0
    assert uplinks.measured(1000.0, 10, 0.0) == 1000.0


@given(
    st.floats(min_value=0, max_value=1e9),
    st.integers(min_value=1, max_value=10**9),
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_throughput_stays_between_old_and_new(previous: float, nbytes: int, seconds: float) -> None:
    after = uplinks.measured(previous, nbytes, seconds)
    sample = nbytes / seconds
    if previous > 0:
        assert min(previous, sample) - 1e-6 <= after <= max(previous, sample) + 1e-6
    else:
        assert after == sample


SCHEDULE = uplinks.cap_schedule({"10:00-22:00": 250_000, "22:00-06:00": 0})


def test_the_cap_follows_the_schedule() -> None:
    assert uplinks.cap_at(SCHEDULE, 1000, time(9, 59)) == 1000  # no window: bandwidth_limit
    assert uplinks.cap_at(SCHEDULE, 1000, time(10, 0)) == 250_000
    assert uplinks.cap_at(SCHEDULE, 1000, time(21, 59)) == 250_000
    assert uplinks.cap_at(SCHEDULE, 1000, time(22, 0)) == 0  # full speed at night
    assert uplinks.cap_at(SCHEDULE, 1000, time(0, 0)) == 0  # across midnight
    assert uplinks.cap_at(SCHEDULE, 1000, time(5, 59)) == 0
    assert uplinks.cap_at(SCHEDULE, 1000, time(6, 0)) == 1000
    assert uplinks.cap_at((), 1000, time(12, 0)) == 1000


def test_overlapping_windows_hold_the_smallest_cap() -> None:
    windows = uplinks.cap_schedule({"09:00-18:00": 500, "12:00-13:00": 100, "00:00-23:59": 0})
    assert uplinks.cap_at(windows, 0, time(12, 30)) == 100
    assert uplinks.cap_at(windows, 0, time(10, 0)) == 500
    assert uplinks.cap_at(windows, 0, time(20, 0)) == 0


@given(st.integers(0, 1439), st.integers(0, 1439), st.integers(0, 1439))
def test_a_window_holds_its_start_not_its_end(start: int, end: int, minute: int) -> None:
    assume(start != end)  # config.py refuses an empty window
    window = CapWindow(start, end, 1)
    assert window.holds(start)
    assert not window.holds(end)
    length = (end - start) % 1440
    assert window.holds(minute) == ((minute - start) % 1440 < length)


def test_windows_are_parsed() -> None:
    assert uplinks.parse_window("22:30-06:15", 7) == CapWindow(22 * 60 + 30, 6 * 60 + 15, 7)


FACTS = st.builds(
    InterfaceFacts,
    name=st.sampled_from(["eth0", "wlan0", "wwan0", "usb0", "lo"]),
    ipv4=st.lists(st.sampled_from(["10.0.0.2", "192.168.1.5", "127.0.0.1"]), max_size=2).map(tuple),
    up=st.booleans(),
    loopback=st.booleans(),
)
RULES = st.lists(
    st.builds(
        UplinkConfig, match=st.sampled_from(["eth0", "w*", "usb?", "*"]), metered=st.booleans()
    ),
    max_size=3,
)


@given(
    st.lists(FACTS, max_size=5, unique_by=lambda f: f.name),
    RULES,
    st.sampled_from([None, "10.0.0.2", "192.168.1.5", "127.0.0.1"]),
)
def test_a_plan_always_has_an_uplink_and_only_candidates_or_the_route(
    facts: list[InterfaceFacts], rules: list[UplinkConfig], route: str | None
) -> None:
    planned = uplinks.plan_uplinks(facts, rules, route)
    assert planned
    route_interface = uplinks.interface_of(route, facts)
    by_name = {item.name: item for item in facts}
    for uplink in planned:
        facts_of = by_name.get(uplink.interface)
        is_route = route_interface is not None and uplink.interface == route_interface.name
        candidate = facts_of is not None and uplinks.is_candidate(facts_of)
        assert uplink.interface == "default" or is_route or candidate
        if uplink.metered:  # the rules here name no classes: the metered default
            assert UploadClass.RECORDING not in uplink.classes
    if not rules:
        assert len(planned) == 1
        assert planned[0].classes == ALL_CLASSES

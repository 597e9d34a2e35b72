"""The venue's uplinks at run time: found with psutil, probed, measured, budgeted, and a store
for each whose connections leave by it. The decisions are edged/upload/uplinks.py's.

Without `[[upload.uplinks]]` the pool holds one uplink, the kernel's route to the upstream,
carrying every class through the default store: uploads go as they always went.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from edged.config import UplinkConfig
from edged.fileio import write_atomically
from edged.metrics import UplinkMetrics
from edged.s3bucket import may_bind_to_device
from edged.upload.classes import UploadClass
from edged.upload.s3 import S3Store
from edged.upload.uplinks import (
    CapWindow,
    InterfaceFacts,
    LinkHealth,
    Spent,
    Uplink,
    after_failure,
    budget_left,
    cap_at,
    local_day,
    may_send,
    measured,
    plan_uplinks,
    probe_due,
    probe_passed,
    restored,
    rule_for,
    spent_on,
    with_spent,
)

logger = logging.getLogger(__name__)

BUDGET_FILE = "uplinks.json"  # the budgets spent and the uplinks last seen
REACH_SECONDS = 3.0  # a TCP connect to the upstream by one uplink
REFRESH_SECONDS = 60.0  # between two looks at the interfaces (and the cap's schedule)
MIN_LOOK_SECONDS = 1.0  # a dropped uplink whose backoff ends is looked at no sooner
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def interface_facts() -> list[InterfaceFacts]:
    """Every interface as psutil sees it (blocking: reads /proc and ioctls)."""
    addresses = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    facts = []
    for name, entries in sorted(addresses.items()):
        stat = stats.get(name)
        ipv4 = tuple(entry.address for entry in entries if entry.family == socket.AF_INET)
        flags = getattr(stat, "flags", "") or ""
        facts.append(
            InterfaceFacts(
                name=name,
                ipv4=ipv4,
                up=bool(stat and stat.isup),
                speed_mbps=stat.speed if stat else 0,
                loopback="loopback" in flags.split(",") or name == "lo",
            )
        )
    return facts


def upstream_address(endpoint: str, secure: bool) -> tuple[str, int]:
    """(host, port) of `[upstream] endpoint` ("s3.example.org" or "10.0.0.5:9000")."""
    host, _, port = endpoint.rpartition(":") if ":" in endpoint else (endpoint, "", "")
    return host, int(port) if port else (443 if secure else 80)


def route_source(host: str, port: int) -> str | None:
    """The source address the kernel picks toward the upstream (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
    except OSError:  # no route, or a name that does not resolve now
        return None


def reaches(
    source: str, host: str, port: int, interface: str = "", seconds: float = REACH_SECONDS
) -> bool:
    """Whether a TCP connection from `source` (by `interface` where the process may bind a
    device, as the store's connections are) reaches the upstream (blocking, bounded)."""
    try:
        address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
            connection.settimeout(seconds)
            if interface and may_bind_to_device(interface):
                connection.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
            connection.bind((source, 0))
            connection.connect(address)
            return True
    except OSError:
        return False


def read_state(path: Path) -> dict[str, Any]:
    """The pool's saved state (the budgets spent, the uplinks last seen); {} when missing/torn."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def read_spent(path: Path) -> dict[str, tuple[str, int]]:
    """The bytes each uplink sent on its last day, as saved; a torn entry counts nothing."""
    try:
        raw = read_state(path).get("spent", {})
        return {str(name): (str(day), int(sent)) for name, (day, sent) in raw.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def last_seen(path: Path) -> tuple[list[dict[str, Any]], float | None]:
    """The uplinks as the daemon last described them, and when (unix time); ([], None) if never."""
    state = read_state(path)
    rows, at = state.get("uplinks"), state.get("at")
    if not isinstance(rows, list) or not isinstance(at, int | float):
        return [], None
    return [row for row in rows if isinstance(row, dict)], float(at)


def write_state(path: Path, spent: Spent, rows: list[dict[str, Any]], at: float) -> None:
    state = {"spent": dict(spent), "uplinks": rows, "at": at}
    write_atomically(path, json.dumps(state).encode(), mode=0o600)


def uplink_line(row: Mapping[str, Any]) -> str:
    """One uplink for `edged uploads`: name, address, metered, classes, standing, rate, budget."""
    standing = (
        "usable"
        if row.get("usable")
        else f"dropped ({row['dropped_reason']})"
        if row.get("dropped_reason")
        else "budget spent"
    )
    words = [
        f"{row['interface']:8}",
        row["address"] or "-",
        "metered" if row["metered"] else "unmetered",
        ",".join(row["classes"]),
        standing,
        f"{row['throughput_bytes_per_second']} B/s",
    ]
    if row["budget_left_bytes"] is not None:
        words.append(f"budget left {row['budget_left_bytes']} B")
    return "  ".join(words)


def next_look(interval: float, retry_at: Sequence[float], now: float) -> float:
    """Seconds until the pool looks again: `interval`, sooner when a dropped uplink's backoff
    ends (not before MIN_LOOK_SECONDS)."""
    due = [moment - now for moment in retry_at]
    return min([interval, *(max(wait, MIN_LOOK_SECONDS) for wait in due)])


@dataclass(frozen=True)
class CapSchedule:
    """The overall cap by local time: `[upload] bandwidth_schedule` over `bandwidth_limit`."""

    windows: tuple[CapWindow, ...] = ()
    default: int = 0

    def at(self, moment: datetime) -> int:
        return cap_at(self.windows, self.default, moment.time())


@dataclass(frozen=True)
class Discovery:
    """The adapters the pool asks (tests give their own facts)."""

    facts: Callable[[], list[InterfaceFacts]] = interface_facts
    route: Callable[[str, int], str | None] = route_source
    reaches: Callable[[str, str, int, str], bool] = reaches
    local_now: Callable[[], datetime] = lambda: datetime.now().astimezone()
    monotonic: Callable[[], float] = time.monotonic


class UplinkPool:
    """The uplinks the uploader may use now; `refresh()` keeps them current."""

    def __init__(
        self,
        rules: Sequence[UplinkConfig],
        default_store: S3Store | None,
        upstream: tuple[str, int] | None,
        *,
        store_factory: Callable[[Uplink], S3Store] | None = None,
        budget_file: Path | None = None,
        metrics: UplinkMetrics | None = None,
        discovery: Discovery | None = None,
    ) -> None:
        self._rules = tuple(rules)
        self._default_store = default_store
        self._upstream = upstream
        self._store_factory = store_factory
        self._budget_file = budget_file
        self._metrics = metrics
        self._discovery = discovery or Discovery()
        # Until the first refresh: the kernel's route, carrying everything (as before uplinks);
        # with rules, nothing (_live).
        self._uplinks: list[Uplink] = plan_uplinks((), (), None)
        self._loaded = False
        self._looked = False  # the first refresh is done
        self._facts: dict[str, InterfaceFacts] = {}
        self._health: dict[str, LinkHealth] = {}
        self._reached: dict[str, bool] = {}
        # Interfaces no rule names whose first probe failed (a guest AP, docker0): no uplinks.
        self._left_out: dict[str, Uplink] = {}
        self._throughput: dict[str, float] = {}
        self._stores: dict[Uplink, S3Store] = {}
        self._spent: dict[str, tuple[str, int]] = {}
        self._spent_dirty = False
        self._saved_rows: list[dict[str, Any]] = []
        self._save_failing = False  # the last save failed: the next failure is logged quietly
        # The fewest classes carried since keep_current last told the uploader: a class dropped
        # and back between two looks is a change it must hear of (it may sleep till it does).
        self._carried_low: frozenset[UploadClass] = frozenset()
        self._look_soon = asyncio.Event()  # a link dropped: its backoff sets the next look
        self._random = random.SystemRandom()

    @property
    def bound(self) -> bool:
        """Whether connections are bound to their uplink (only with `[[upload.uplinks]]`)."""
        return bool(self._rules) and self._store_factory is not None

    @property
    def uplinks(self) -> list[Uplink]:
        return list(self._uplinks)

    # -- the contract ---------------------------------------------------------------------------

    def usable(self, cls: UploadClass) -> list[Uplink]:
        """Up, not backing off, allowed to carry `cls`, with budget left today."""
        return [uplink for uplink in self._live() if cls in uplink.classes]

    def carried_classes(self) -> frozenset[UploadClass]:
        """The classes some usable uplink carries now."""
        return frozenset(cls for uplink in self._live() for cls in uplink.classes)

    def store_for(self, uplink: Uplink) -> S3Store:
        """A store whose connections leave by `uplink` (the default one when unbound)."""
        if not self.bound or not uplink.address or self._store_factory is None:
            return self._require_default()
        store = self._stores.get(uplink)
        if store is None:
            store = self._stores[uplink] = self._store_factory(uplink)
        # the daemon widens the default store's STS policy when the event changes: each follows
        store.set_policy_prefixes(self._require_default().policy_prefixes)
        return store

    def sent(self, uplink: Uplink, nbytes: int, seconds: float) -> None:
        """`nbytes` went by `uplink` in `seconds`: its throughput, its bytes, its budget."""
        name = uplink.interface
        self._throughput[name] = measured(self._throughput.get(name, 0.0), nbytes, seconds)
        self._spent = with_spent(self._spent, name, nbytes, self._today())
        self._spent_dirty = True
        if self._health.get(name, LinkHealth()).failures:
            self._health[name] = restored(self._health[name])
        if self._metrics is not None:
            self._metrics.bytes.labels(name).inc(max(nbytes, 0))
        self._carried_low &= self.carried_classes()  # its budget may be spent
        self._publish()

    def failed(self, uplink: Uplink, error: Exception) -> None:
        """`uplink` failed: dropped, and probed again after a backoff."""
        name = uplink.interface
        before = self._health.get(name, LinkHealth())
        self._health[name] = after_failure(
            before, str(error), self._discovery.monotonic(), self._random
        )
        log = logger.warning if not before.failures else logger.debug  # the first in a row
        log("uplink %s dropped (%s); probed again in %.0f s", name, error, self._wait(name))
        self._carried_low &= self.carried_classes()
        self._look_soon.set()
        self._publish()

    def throughput(self, uplink: Uplink) -> float:
        return self._throughput.get(uplink.interface, 0.0)

    def probe_uplink(self) -> Uplink | None:
        """The uplink to probe the upstream by: a usable one, those on trial after a failure
        last, then unmetered first; None when unbound (the kernel's route speaks) or none is."""

        def order(uplink: Uplink) -> tuple[bool, bool]:
            return self._health.get(uplink.interface, LinkHealth()).on_trial, uplink.metered

        live = sorted(self._live(), key=order) if self.bound else []
        return live[0] if live else None

    async def refresh(self) -> None:
        """Find the interfaces again, probe new and dropped uplinks."""
        first = not self._loaded
        if first and self._budget_file is not None:
            self._spent = await asyncio.to_thread(read_spent, self._budget_file)
        self._loaded = True
        facts, route = await asyncio.to_thread(self._discover)
        self._facts = {item.name: item for item in facts}
        planned = plan_uplinks(facts, self._rules, route)
        names = {uplink.interface for uplink in planned}
        self._left_out = {name: u for name, u in self._left_out.items() if name in names}
        probes = [uplink for uplink in planned if self._must_probe(uplink)]
        if self._upstream is not None and probes:  # at once: each waits up to REACH_SECONDS
            await asyncio.gather(*(self._probe(uplink, *self._upstream) for uplink in probes))
        planned = [uplink for uplink in planned if uplink.interface not in self._left_out]
        if not self._rules:  # the kernel's own route: the uploader's probe says the rest
            self._reached = {uplink.interface: route is not None for uplink in planned}
        gone = {uplink.interface for uplink in self._uplinks} - {u.interface for u in planned}
        self._forget(gone, quietly=first)  # the first look replaces the kernel's route
        self._uplinks = planned
        self._looked = True
        await self._make_stores()
        self._publish()

    async def keep_current(
        self,
        schedule: CapSchedule,
        set_cap: Callable[[int], None],
        classes_changed: Callable[[], None],
        interval: float = REFRESH_SECONDS,
    ) -> None:
        """Refresh every `interval`; tell the uploader when the classes carried change, and set
        its cap when the schedule's changes (a supervised task: runs until cancelled)."""
        self._carried_low, cap = self.carried_classes(), None
        while True:
            await self.refresh()
            if self.carried_classes() != self._carried_low:
                self._carried_low = self.carried_classes()
                classes_changed()
            if schedule.windows and (now := schedule.at(self._discovery.local_now())) != cap:
                cap = now
                set_cap(cap)
            await self.save()
            retry_at = [health.retry_at for health in self._health.values() if health.dropped]
            wait = next_look(interval, retry_at, self._discovery.monotonic())
            self._look_soon.clear()  # until a link is dropped: then the wait is counted again
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._look_soon.wait()

    async def save(self) -> None:
        """Write the budgets spent and the uplinks seen to the data dir (0600), if they changed
        (the daemon's pool only: `edged uploads` reads them there). A write that fails (a full
        disk) is tried again at the next look, with one warning until a write succeeds."""
        rows = self.describe()
        if self._budget_file is None or (not self._spent_dirty and rows == self._saved_rows):
            return
        spent = dict(self._spent)
        try:
            await asyncio.to_thread(write_state, self._budget_file, spent, rows, time.time())
        except OSError as error:
            log = logger.debug if self._save_failing else logger.warning
            log("uplinks: cannot save %s (%s); tried again at the next look", BUDGET_FILE, error)
            self._save_failing = True
            return
        self._save_failing = False
        self._spent_dirty, self._saved_rows = False, rows

    # -- what people see ------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Each uplink for `edged uploads`, the API and the doctor (interface names only)."""
        today = self._today()
        rows = []
        for uplink in self._uplinks:
            health = self._health.get(uplink.interface, LinkHealth())
            facts = self._facts.get(uplink.interface)
            spent = spent_on(self._spent, uplink.interface, today)
            rows.append(
                {
                    "interface": uplink.interface,
                    "address": uplink.address,
                    "up": facts.up if facts else True,
                    "speed_mbps": facts.speed_mbps if facts else 0,
                    "metered": uplink.metered,
                    "classes": sorted(uplink.classes, key=list(UploadClass).index),
                    "route": self._reached.get(uplink.interface),
                    "usable": not health.dropped and may_send(uplink, spent),
                    "dropped_reason": health.reason or None,
                    "throughput_bytes_per_second": round(self.throughput(uplink)),
                    "sent_today_bytes": spent,
                    "budget_left_bytes": budget_left(uplink, spent),
                }
            )
        return rows

    # -- inside ---------------------------------------------------------------------------------

    def _require_default(self) -> S3Store:
        if self._default_store is None:
            raise RuntimeError("no upstream configured: there is no store to send by")
        return self._default_store

    def _today(self) -> str:
        return local_day(self._discovery.local_now())

    def _live(self) -> list[Uplink]:
        if self._rules and not self._looked:
            return []  # the kernel's route may be a metered link: nothing goes before a look
        today = self._today()
        return [
            uplink
            for uplink in self._uplinks
            if not self._health.get(uplink.interface, LinkHealth()).dropped
            and may_send(uplink, spent_on(self._spent, uplink.interface, today))
        ]

    def _wait(self, name: str) -> float:
        return max(self._health[name].retry_at - self._discovery.monotonic(), 0.0)

    def _discover(self) -> tuple[list[InterfaceFacts], str | None]:
        facts = self._discovery.facts()
        route = self._discovery.route(*self._upstream) if self._upstream else None
        return facts, route

    def _must_probe(self, uplink: Uplink) -> bool:
        """Probed by a connect of its own only when bound (unbound, the uploader's probe speaks);
        on first sight, when its address changed, and when a dropped one's backoff is over."""
        if not self._rules or self._upstream is None or not uplink.address:
            return False
        if self._left_out.get(uplink.interface) == uplink:
            return False  # tried once at this address
        known = next((u for u in self._uplinks if u.interface == uplink.interface), None)
        health = self._health.get(uplink.interface, LinkHealth())
        return known != uplink or probe_due(health, self._discovery.monotonic())

    async def _probe(self, uplink: Uplink, host: str, port: int) -> None:
        reached = await asyncio.to_thread(
            self._discovery.reaches, uplink.address, host, port, uplink.interface
        )
        if not reached and self._newcomer_unnamed(uplink):
            self._left_out[uplink.interface] = uplink
            return
        self._left_out.pop(uplink.interface, None)
        self._reached[uplink.interface] = reached
        health = self._health.get(uplink.interface, LinkHealth())
        if reached:
            if health.dropped:
                logger.info("uplink %s reaches the upstream again", uplink.interface)
            self._health[uplink.interface] = probe_passed(health)
        else:
            self.failed(uplink, ConnectionError(f"no connection to {host}:{port}"))

    async def _make_stores(self) -> None:
        """A store for each bound uplink that has none, made in a thread (making one binds a
        probe socket and loads certificates): store_for hands them out on the loop."""
        factory = self._store_factory
        missing = [u for u in self._uplinks if u.address and u not in self._stores]
        if not self.bound or factory is None or not missing:
            return
        made = await asyncio.to_thread(lambda: {uplink: factory(uplink) for uplink in missing})
        self._stores.update(made)

    def _newcomer_unnamed(self, uplink: Uplink) -> bool:
        """An interface no rule names, not yet an uplink: it joins only if its probe passes."""
        joined = any(known.interface == uplink.interface for known in self._uplinks)
        return not joined and rule_for(uplink.interface, self._rules) is None

    def _forget(self, names: set[str], *, quietly: bool) -> None:
        for name in names:
            logger.log(logging.DEBUG if quietly else logging.INFO, "uplink %s is gone", name)
            self._health.pop(name, None)
            self._reached.pop(name, None)
            for uplink in [u for u in self._stores if u.interface == name]:
                self._stores.pop(uplink)
            if self._metrics is not None:
                self._metrics.remove(name)

    def _publish(self) -> None:
        if self._metrics is None:
            return
        today = self._today()
        for uplink in self._uplinks:
            name = uplink.interface
            dropped = self._health.get(name, LinkHealth()).dropped
            self._metrics.up.labels(name).set(0 if dropped else 1)
            self._metrics.bytes.labels(name)
            self._metrics.throughput.labels(name).set(self._throughput.get(name, 0.0))
            left = budget_left(uplink, spent_on(self._spent, name, today))
            if left is not None:
                self._metrics.budget_left.labels(name).set(left)

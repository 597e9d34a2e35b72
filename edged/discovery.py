"""mDNS: advertise this box as `_edged._tcp` and `_http._tcp`, and browse for the others."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edged.config import MAX_LABEL, node_label
from edged.fileio import write_atomically

logger = logging.getLogger(__name__)

EDGED_SERVICE = "_edged._tcp.local."
HTTP_SERVICE = "_http._tcp.local."
# How long the advertiser listens for the names already answering before it picks its own. A
# responder may hold a multicast answer back up to a second (RFC 6762 section 6); zeroconf's
# probing, which follows with the same listener running, catches answers later than that.
LISTEN_SECONDS = 1.0
# The name the running daemon answers to, for `edged doctor` (which cannot ask zeroconf).
ADVERTISED_FILE = "advertised.json"
# Questions asking for multicast answers. zeroconf asks its first question and its probes "QU"
# (answer me by unicast); an answer sent by unicast to port 5353 reaches only one of the
# processes on that host bound to it, often not the one that asked (several responders on one
# host: loopback tests, avahi beside edged). Multicast answers reach every listener.
MULTICAST_ANSWERS = DNSQuestionType.QM


def dns_label(name: str) -> str:
    """A name usable as `<label>.local`: the rule that also makes node names from host names."""
    return node_label(name)


def advertised_addresses(
    host: str, interface_addresses: Iterable[str], only: Iterable[str] = ()
) -> list[str]:
    """The IPv4 addresses a phone can reach the HTTP server at, loopback only as a last resort."""
    wanted = set(only)
    if host not in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return [host]
    addresses = []
    for address in interface_addresses:
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            continue
        if wanted and address not in wanted:
            continue
        if parsed.is_link_local or (parsed.is_loopback and not wanted):
            continue
        addresses.append(address)
    return sorted(set(addresses)) or ["127.0.0.1"]


def free_label(requested: str, taken: Iterable[str]) -> str:
    """`requested`, else the first of `<requested>-2`, `-3`, ... that nothing answers to."""
    names = {name.lower() for name in taken}
    label, number = requested, 2
    while label in names:
        suffix = f"-{number}"
        label = requested[: MAX_LABEL - len(suffix)].rstrip("-") + suffix
        number += 1
    return label


def instance_label(name: str, service_type: str) -> str:
    """`twin-2` from `twin-2._edged._tcp.local.`."""
    return name.removesuffix(f".{service_type}")


def service_properties(*, node: str, event: str, version: str) -> dict[str, str]:
    """The TXT record of both services (DESIGN.md)."""
    return {
        "node": node,
        "event": event,
        "version": version,
        "path": "/",
        "metrics": "/metrics",
    }


def _zeroconf(interfaces: tuple[str, ...]) -> AsyncZeroconf:
    if interfaces:
        return AsyncZeroconf(interfaces=list(interfaces), ip_version=IPVersion.V4Only)
    return AsyncZeroconf(ip_version=IPVersion.V4Only)


class Advertiser:
    """Announces the box while it runs; renames on a name conflict; says goodbye on stop."""

    def __init__(
        self,
        *,
        node: str,
        port: int,
        addresses: list[str],
        properties: Mapping[str, str],
        interfaces: tuple[str, ...] = (),
        listen_seconds: float = LISTEN_SECONDS,
    ) -> None:
        self._requested_label = dns_label(node)
        self._listen_seconds = listen_seconds
        self._port = port
        self._addresses = [ipaddress.IPv4Address(address).packed for address in addresses]
        self._properties = dict(properties)
        self._interfaces = interfaces
        self._zeroconf: AsyncZeroconf | None = None
        self._infos: list[AsyncServiceInfo] = []
        self.label = self._requested_label

    @property
    def endpoints(self) -> frozenset[tuple[str, int]]:
        """The (address, port) pairs this box announces: a record with one of them is itself."""
        return frozenset((str(ipaddress.IPv4Address(a)), self._port) for a in self._addresses)

    @property
    def requested_label(self) -> str:
        """The label asked for: the node name as a DNS label."""
        return self._requested_label

    def _info(self, service_type: str, label: str) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            service_type,
            f"{label}.{service_type}",
            addresses=self._addresses,
            port=self._port,
            properties=self._properties,
            server=f"{label}.local.",
        )

    async def start(self) -> None:
        """Register both services; a taken name becomes `<name>-2`, `<name>-3`, ..."""
        self._zeroconf = _zeroconf(self._interfaces)
        answering: set[str] = set()

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            label = instance_label(name, service_type).lower()
            if state_change is ServiceStateChange.Removed:
                answering.discard(label)
            else:
                answering.add(label)

        # zeroconf's own probe only renames on what its cache holds, and its probes ask for
        # unicast answers: listen first, with questions that ask for multicast answers.
        browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf,
            [EDGED_SERVICE, HTTP_SERVICE],
            handlers=[on_change],
            question_type=MULTICAST_ANSWERS,
        )
        try:
            await asyncio.sleep(self._listen_seconds)
            self.label = free_label(self._requested_label, answering)
            await self._register(self._zeroconf)
        finally:
            await browser.async_cancel()
        if self.label != self._requested_label:
            logger.warning(
                "mDNS name %s is taken on this LAN; advertising as %s",
                self._requested_label,
                self.label,
            )
        logger.info(
            "mDNS: advertising %s.local port %d (%s, %s)",
            self.label,
            self._port,
            EDGED_SERVICE,
            HTTP_SERVICE,
        )

    async def _register(self, zeroconf: AsyncZeroconf) -> None:
        """Probe and announce both services as `self.label` (renamed on an answer heard late)."""
        edged_info = self._info(EDGED_SERVICE, self.label)
        http_info = self._info(HTTP_SERVICE, self.label)
        # Awaiting a call probes for conflicts (and renames); the task it returns announces.
        # Both probed at once: one probe's time at each start, not two.
        announcements = list(
            await asyncio.gather(
                zeroconf.async_register_service(edged_info, allow_name_change=True),
                zeroconf.async_register_service(http_info, allow_name_change=True),
            )
        )
        renamed = instance_label(edged_info.name, EDGED_SERVICE)
        if renamed != self.label:  # an answer that came after the listening: host name too
            self.label = renamed
            await asyncio.gather(*announcements)
            await (await zeroconf.async_unregister_service(http_info))
            edged_info = self._info(EDGED_SERVICE, self.label)
            http_info = self._info(HTTP_SERVICE, self.label)
            announcements = [
                await zeroconf.async_update_service(edged_info),
                await zeroconf.async_register_service(http_info, allow_name_change=True),
            ]
        await asyncio.gather(*announcements)
        self._infos = [edged_info, http_info]
        if http_info.name != f"{self.label}.{HTTP_SERVICE}":
            logger.warning(
                "mDNS: %s is taken by another web service; the box's web page is advertised as %s",
                f"{self.label}.{HTTP_SERVICE}",
                http_info.name,
            )

    async def update_properties(self, properties: Mapping[str, str]) -> None:
        """Re-announce with new TXT records (after a config reload)."""
        self._properties = dict(properties)
        if self._zeroconf is None:
            return
        for index, info in enumerate(self._infos):
            self._infos[index] = self._info(info.type, self.label)
            await (await self._zeroconf.async_update_service(self._infos[index]))

    async def stop(self) -> None:
        """Send goodbye packets and close; safe to call twice."""
        zeroconf, self._zeroconf = self._zeroconf, None
        if zeroconf is None:
            return
        await zeroconf.async_unregister_all_services()
        await zeroconf.async_close()
        logger.info("mDNS: goodbye sent for %s.local", self.label)


@dataclass(frozen=True)
class Advertised:
    """What the running daemon answers to on the LAN: `<name>.local`, asked for `requested`."""

    name: str
    requested: str
    port: int
    pid: int


def write_advertised(data_dir: Path, advertised: Advertised) -> None:
    """Record the advertised name in the data dir atomically (blocking; 0600: edged's umask)."""
    data = json.dumps(asdict(advertised), indent=2) + "\n"
    write_atomically(data_dir / ADVERTISED_FILE, data.encode())


def forget_advertised(data_dir: Path) -> None:
    """Remove the record when the daemon stops advertising (blocking; safe when missing)."""
    (data_dir / ADVERTISED_FILE).unlink(missing_ok=True)


def read_advertised(data_dir: Path) -> Advertised | None:
    """The record the daemon wrote, or None when there is none or it is not one (blocking);
    OSError when it cannot be read (doctor run by another user than edged's)."""
    try:
        record = json.loads((data_dir / ADVERTISED_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    name, requested, port, pid = (record.get(key) for key in ("name", "requested", "port", "pid"))
    if not (isinstance(name, str) and name and isinstance(requested, str) and requested):
        return None
    if type(port) is not int or type(pid) is not int:  # not bool, float or text
        return None
    return Advertised(name=name, requested=requested, port=port, pid=pid)


@dataclass(frozen=True)
class Peer:
    """An edged box found on the LAN."""

    instance: str
    node: str
    event: str
    version: str
    addresses: tuple[str, ...]
    port: int
    metrics_path: str


def _text(properties: Mapping[bytes, bytes | None], key: str) -> str:
    value = properties.get(key.encode())
    return value.decode("utf-8", "replace") if value else ""


def peer_from_info(info: AsyncServiceInfo) -> Peer:
    """A Peer from a resolved service; garbage TXT values become empty or replaced text."""
    properties = info.properties
    instance = instance_label(info.name, info.type)
    metrics_path = _text(properties, "metrics")
    return Peer(
        instance=instance,
        node=_text(properties, "node") or instance,
        event=_text(properties, "event"),
        version=_text(properties, "version"),
        addresses=tuple(info.parsed_addresses(IPVersion.V4Only)),
        port=info.port or 0,
        metrics_path=metrics_path if metrics_path.startswith("/") else "/metrics",
    )


async def browse_peers(listen_seconds: float, interfaces: tuple[str, ...] = ()) -> list[Peer]:
    """Every edged box that answers on the LAN within `listen_seconds`."""
    azc = _zeroconf(interfaces)
    names: set[str] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    browser = AsyncServiceBrowser(
        azc.zeroconf, [EDGED_SERVICE], handlers=[on_change], question_type=MULTICAST_ANSWERS
    )
    try:
        await asyncio.sleep(listen_seconds)
        peers = []
        for name in sorted(names):
            info = AsyncServiceInfo(EDGED_SERVICE, name)
            if await info.async_request(azc.zeroconf, 1000, MULTICAST_ANSWERS) and info.port:
                peers.append(peer_from_info(info))
        return peers
    finally:
        await browser.async_cancel()
        await azc.async_close()


def file_sd_targets(peers: Iterable[Peer]) -> list[dict[str, object]]:
    """Prometheus file_sd groups: one per box, labelled with its node and event."""
    groups: list[dict[str, object]] = []
    for peer in sorted(peers, key=lambda p: p.instance):
        if not peer.addresses or not peer.port:
            continue
        groups.append(
            {
                "targets": [f"{peer.addresses[0]}:{peer.port}"],
                "labels": {
                    "node": peer.node,
                    "event": peer.event,
                    "__metrics_path__": peer.metrics_path,
                },
            }
        )
    return groups


def write_file_sd(path: Path, peers: Iterable[Peer]) -> None:
    """Replace the file atomically, so Prometheus never reads half of it."""
    write_atomically(path, (json.dumps(file_sd_targets(peers), indent=2) + "\n").encode())


async def keep_file_sd(path: Path, stop: asyncio.Event, interfaces: tuple[str, ...] = ()) -> None:
    """Browse until `stop` is set, rewriting `path` whenever a box comes or goes."""
    # Fails at once, with the OSError, on a path that cannot be written; fsync off the loop.
    await asyncio.to_thread(write_file_sd, path, [])
    azc = _zeroconf(interfaces)
    peers: dict[str, Peer] = {}
    changes: asyncio.Queue[tuple[str, ServiceStateChange]] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        changes.put_nowait((name, state_change))

    browser = AsyncServiceBrowser(
        azc.zeroconf, [EDGED_SERVICE], handlers=[on_change], question_type=MULTICAST_ANSWERS
    )
    waiter = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            getter = asyncio.ensure_future(changes.get())
            done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            name, state_change = getter.result()
            if state_change is ServiceStateChange.Removed:
                if peers.pop(name, None) is not None:
                    logger.info("file_sd: %s left", name)
            else:
                info = AsyncServiceInfo(EDGED_SERVICE, name)
                if await info.async_request(azc.zeroconf, 2000, MULTICAST_ANSWERS) and info.port:
                    peers[name] = peer_from_info(info)
                    logger.info("file_sd: %s at %s:%d", name, peers[name].addresses, info.port)
            await asyncio.to_thread(write_file_sd, path, list(peers.values()))
    finally:
        waiter.cancel()
        await browser.async_cancel()
        await azc.async_close()


def peers_of_event(
    peers: Iterable[Peer],
    event: str,
    own_instance: str,
    own_node: str = "",
    own_endpoints: frozenset[tuple[str, int]] = frozenset(),
) -> list[Peer]:
    """The boxes replicating with this one: the same event, reachable, not itself. Itself is
    any record with its advertised name or its node name (an old name after a rename or a
    conflict, still cached) or with an address and port it announces (review 19, finding 5)."""
    own = {own_instance.lower(), own_node.lower()} - {""}
    return sorted(
        (
            peer
            for peer in peers
            if peer.event == event
            and peer.instance.lower() not in own
            and peer.node.lower() not in own
            and not any((address, peer.port) in own_endpoints for address in peer.addresses)
            and peer.addresses
            and peer.port
        ),
        key=lambda peer: peer.instance,
    )


class PeerBrowser:
    """Browses `_edged._tcp` until cancelled and hands every change of the boxes of this event
    to `on_change` (on the loop). `event` and `own_instance` are asked at each change: a reload
    may change the event, a conflict the name this box advertises."""

    def __init__(
        self,
        event: Callable[[], str],
        own_instance: Callable[[], str],
        on_change: Callable[[list[Peer]], None],
        interfaces: tuple[str, ...] = (),
        own_node: Callable[[], str] = str,
        own_endpoints: Callable[[], frozenset[tuple[str, int]]] = frozenset,
    ) -> None:
        self._event = event
        self._own_instance = own_instance
        self._own_node = own_node
        self._own_endpoints = own_endpoints
        self._on_change = on_change
        self._interfaces = interfaces
        self._found: dict[str, Peer] = {}

    async def run(self) -> None:
        azc = _zeroconf(self._interfaces)
        changes: asyncio.Queue[tuple[str, ServiceStateChange]] = asyncio.Queue(maxsize=1024)

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a storm: the next browse catches up
                changes.put_nowait((name, state_change))

        browser = AsyncServiceBrowser(
            azc.zeroconf, [EDGED_SERVICE], handlers=[on_change], question_type=MULTICAST_ANSWERS
        )
        try:
            while True:
                name, state_change = await changes.get()
                await self._note(azc, name, state_change)
                self._on_change(peers_of_event(self._found.values(), *self._filters()))
        finally:
            await browser.async_cancel()
            await azc.async_close()

    def _filters(self) -> tuple[str, str, str, frozenset[tuple[str, int]]]:
        return self._event(), self._own_instance(), self._own_node(), self._own_endpoints()

    async def _note(self, azc: AsyncZeroconf, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            if self._found.pop(name, None) is not None:
                logger.info("peers: %s left", instance_label(name, EDGED_SERVICE))
            return
        info = AsyncServiceInfo(EDGED_SERVICE, name)
        if await info.async_request(azc.zeroconf, 2000, MULTICAST_ANSWERS) and info.port:
            peer = peer_from_info(info)
            if self._found.get(name) != peer:
                logger.debug(
                    "peers: %s (event %s) at %s:%d", name, peer.event, peer.addresses, peer.port
                )
            self._found[name] = peer

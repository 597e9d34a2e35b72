"""The composition root: builds each subsystem, starts them in order, stops them in reverse."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from edged import __version__
from edged import config as config_module
from edged.cache.peerlink import PeerAddress, PeerSource
from edged.cache.peers import peers_off
from edged.cache.store import AssetStore
from edged.cache.upstream import PullThrough, Replicator
from edged.clips.jobs import ClipJobs, ClipOutlets, ClipSettings, FinishedClip
from edged.clips.jobstate import Load
from edged.clips.plan import format_utc
from edged.clock import ClockWatch
from edged.config import Config, LiveConfig, NodeConfig
from edged.datalock import DataDirLock
from edged.devices import Board, capture_cards, detect_board
from edged.devices.manager import DeviceManager
from edged.devices.report import report_json
from edged.discovery import (
    Advertised,
    Advertiser,
    Peer,
    PeerBrowser,
    advertised_addresses,
    forget_advertised,
    service_properties,
    write_advertised,
)
from edged.errors import ConfigError
from edged.guest.address import (
    WILDCARDS,
    default_route_address,
    follow_link,
    interface_addresses,
    lan_host,
    landing_url,
    typed_url,
)
from edged.guest.desk import GuestDesk
from edged.media.recorder import Segment, SegmentIdentity
from edged.media.streams import MediaManager
from edged.metrics import LiveMetrics, Metrics
from edged.notify import SystemdNotifier
from edged.paths import (
    OUTBOX,
    load_or_create_token,
    prepare_data_dir,
    read_private_file,
    resolve_data_dir,
)
from edged.provenance import SigningIdentity, load_identity
from edged.provenance.sidecar import signed
from edged.restream.restreamer import Restreamer, Running, read_keys
from edged.restream.session import Geometry
from edged.supervise import Supervisor
from edged.upload.naming import ObjectNaming
from edged.upload.setup import build_uploader, naming_for
from edged.upload.uploader import Uploader
from edged.web import join, peer_api
from edged.web.adapters import JournalUploads, LazyWhep, MediaLiveView, with_restream
from edged.web.app import HttpServer, create_app
from edged.web.context import Identity, Readiness, WebServices
from edged.web.guest_qr import print_qr

logger = logging.getLogger(__name__)

# Keys a reload applies at once; every other change waits for a restart.
LIVE_KEYS = frozenset({"node.event", "daemon.log_level"})


@dataclass(frozen=True)
class Launch:
    """How the daemon was asked to start: the config, where it came from, and CLI overrides."""

    config: Config
    config_file: Path | None = None
    overrides: Mapping[str, object] = field(default_factory=dict)
    data_dir: str | None = None


def _interface_addresses() -> list[str]:
    return [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family == socket.AF_INET
    ]


class ClipCache(NamedTuple):
    """The clip cache as the daemon built it; pull-through and replication need sync on."""

    store: AssetStore
    pull: PullThrough | None = None
    replication: Callable[[], dict[str, Any]] | None = None  # the replicator's last pass


def _read_peer_secret(path: str) -> str:
    return read_private_file(Path(path).expanduser(), "peer secret file")


def _peers_changed(source: PeerSource, replicator: Replicator, peers: list[Peer]) -> None:
    """The boxes of this event changed: the replicator asks the new set at once."""
    source.set_peers(
        PeerAddress(peer.node, peer.addresses[0], peer.port, peer.event) for peer in peers
    )
    replicator.wake()


def _count_assets(store: AssetStore, pinned: bool) -> float:
    return float(sum(1 for asset in store.assets() if asset.pinned == pinned))


class Daemon:
    """edged while it runs: `serve()` is start-up, waiting for a signal, and bounded shutdown."""

    def __init__(self, launch: Launch, environ: Mapping[str, str] | None = None) -> None:
        self._launch = launch
        self._environ = os.environ if environ is None else environ
        self.config = launch.config
        self.node = config_module.node_name(launch.config, socket.gethostname())
        self.naming: ObjectNaming = naming_for(launch.config, self.node)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()  # every subsystem is up and the port is bound
        self._signals_seen = 0
        self._notifier = SystemdNotifier(self._environ)
        self._identity: Identity | None = None
        self._readiness = Readiness()
        self._metrics: Metrics | None = None
        self._advertiser: Advertiser | None = None
        self.http: HttpServer | None = None
        self._uploader: Uploader | None = None
        self.devices: DeviceManager | None = None
        self.media: MediaManager | None = None
        self.provenance: SigningIdentity | None = None  # the box's key: sidecars, clips
        self.supervisor: Supervisor | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._admin_token = ""
        # Peer replication ([peers]): the replicator's view of the peers, and what they may read.
        self._peer_source: tuple[PeerSource, Replicator] | None = None
        self._peer_shelf: peer_api.PeerShelf | None = None

    def request_stop(self, signal_name: str = "request") -> None:
        """Begin a graceful shutdown; a second call (a second Ctrl-C) exits at once."""
        self._signals_seen += 1
        if self._signals_seen > 1:
            logger.warning("second %s: exiting without waiting for a clean shutdown", signal_name)
            os._exit(1)
        logger.info("%s received: shutting down", signal_name)
        self._stop.set()

    async def serve(self) -> bool:
        """Run until a signal; True when the shutdown finished within its bound."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signal.Signals(signum).name)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        stack = AsyncExitStack()
        try:
            try:
                await self._start(stack)
            except BaseException:
                await stack.aclose()
                raise
            self.started.set()
            await self._stop.wait()
            await self._notifier.stopping()
            try:
                async with asyncio.timeout(self.config.daemon.shutdown_timeout):
                    await stack.aclose()
            except TimeoutError:
                logger.error(
                    "shutdown took longer than daemon.shutdown_timeout = %.1f s; exiting anyway",
                    self.config.daemon.shutdown_timeout,
                )
                return False
            logger.info("edged stopped")
            return True
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            for task in self._background:
                task.cancel()

    async def _start(self, stack: AsyncExitStack) -> None:
        """Each subsystem entered in order through `stack`, which leaves them in reverse."""
        config = self.config
        data_dir, token = await stack.enter_async_context(self._data_dir())
        self.provenance = await self._load_provenance(data_dir)
        metrics = Metrics(
            version=__version__, node=self.node, event=config.node.event, data_dir=data_dir
        )
        self._metrics = metrics
        supervisor = Supervisor(metrics.task_restarts)
        stack.push_async_callback(supervisor.stop)
        self.supervisor = supervisor
        identity = self._identity = Identity(__version__, self.node, config.node.event)
        readiness = self._readiness = Readiness(supervisor.failing)
        readiness.starting("http")
        readiness.starting("uploads")

        devices, board = await stack.enter_async_context(self._devices(metrics))
        uploader = await stack.enter_async_context(self._uploads(data_dir, metrics, supervisor))
        clips = await stack.enter_async_context(
            self._cache(data_dir, metrics, board, uploader, supervisor)
        )
        media = await stack.enter_async_context(
            self._media(data_dir, metrics, board, devices, uploader, supervisor)
        )
        restreamer = await stack.enter_async_context(
            self._restream(data_dir, metrics, media, supervisor)
        )
        whep = await stack.enter_async_context(aclosing(lazy_whep(config.live, metrics.live)))
        clip_jobs = await stack.enter_async_context(
            self._clip_jobs(data_dir, metrics, board, media, clips.store, supervisor)
        )

        services = WebServices(
            identity,
            readiness,
            metrics,
            token,
            self,
            device_report=lambda: report_json(board, devices.devices.values()),
            stream_status=partial(with_restream, media.status, restreamer.by_stream),
            restream=restreamer,
            replication=clips.replication,
            live=MediaLiveView(media, whep),
            clips=clips.store,
            pull=clips.pull,
            uploads=JournalUploads(uploader, lambda: self.naming, data_dir),
            guest=config.guest,
            data_dir=data_dir,
            clip_jobs=clip_jobs,
        )
        guests = await stack.enter_async_context(
            self._guests(data_dir, metrics, uploader, supervisor, identity)
        )
        http = await stack.enter_async_context(self._http(services, guests))
        await stack.enter_async_context(self._mdns(data_dir, http.port, identity))
        await self._announce(http.port, identity)
        freeze_startup_heap()

    async def _load_provenance(self, data_dir: Path) -> SigningIdentity:
        """The box's signing identity, loaded once (made on first start when none is configured)."""
        provenance = await asyncio.to_thread(
            load_identity, self.config.provenance, data_dir, self.node
        )
        trust = "self-made, untrusted" if provenance.self_made else "configured"
        logger.info("signing as %s (%s): %s", provenance.subject, trust, provenance.cert_path)
        return provenance

    @asynccontextmanager
    async def _data_dir(self) -> AsyncIterator[tuple[Path, str]]:
        """The data dir, held by this daemon alone; (its path, the admin token)."""
        config = self.config
        data_dir = prepare_data_dir(
            resolve_data_dir(self._launch.data_dir, config.storage.data_dir, self._environ)
        )
        # One daemon per data dir, before recovery or the journal touch anything in it.
        lock = DataDirLock(data_dir)
        lock.acquire()
        try:
            (data_dir / OUTBOX).mkdir(mode=0o700, exist_ok=True)  # files the crew drops to upload
            token, token_file = load_or_create_token(data_dir, config.http.admin_token_file)
            self._admin_token = token
            logger.info("data dir %s; admin token in %s", data_dir, token_file)
            yield data_dir, token
        finally:
            lock.release()

    @asynccontextmanager
    async def _devices(self, metrics: Metrics) -> AsyncIterator[tuple[DeviceManager, Board]]:
        """Hotplug and the board profile; (the device manager, the board)."""
        self._readiness.starting("devices")
        cards = await asyncio.to_thread(capture_cards)
        manager = DeviceManager(cards, metrics.devices)
        await manager.start()
        try:
            self.devices = manager
            board = await asyncio.to_thread(
                detect_board, Path("/"), {device.name for device in manager.devices.values()}
            )
            logger.info("board: %s (%s)", board.profile.name, board.reason)
            hardware = str(board.profile.hardware_encoder).lower()
            metrics.board.labels(board.profile.id, hardware).set(1)
            self._readiness.started("devices")
            yield manager, board
        finally:
            await manager.stop()

    @asynccontextmanager
    async def _uploads(
        self, data_dir: Path, metrics: Metrics, supervisor: Supervisor
    ) -> AsyncIterator[Uploader]:
        """The upload journal and its worker (which waits, idle, while sync is off)."""
        config = self.config
        uploader = await asyncio.to_thread(
            build_uploader, config, data_dir, self.node, metrics.upload
        )
        try:
            if uploader.configured:  # files queued under an earlier event keep their keys
                pending = await asyncio.to_thread(uploader.journal.pending_keys)
                uploader.store.set_policy_prefixes(self.naming.policy_prefixes(pending))
            await uploader.start(supervisor)
            try:
                supervisor.spawn("clock", ClockWatch(listeners=[uploader.observe_clock]).run)
                self._uploader = uploader
                self._readiness.started("uploads")
                yield uploader
            finally:
                await uploader.stop()
        finally:
            uploader.journal.close()

    @asynccontextmanager
    async def _cache(
        self,
        data_dir: Path,
        metrics: Metrics,
        board: Board,
        uploader: Uploader,
        supervisor: Supervisor,
    ) -> AsyncIterator[ClipCache]:
        """The clip cache; with sync on, pull-through and the manifest's replicator."""
        self._readiness.starting("cache")
        config = self.config
        store = await asyncio.to_thread(
            AssetStore, data_dir / "cache", config.cache.max_bytes, board.profile.encoders
        )
        metrics.cache.bytes.set_function(lambda: float(store.total_bytes))
        for pinned in (True, False):
            metrics.cache.assets.labels(str(pinned).lower()).set_function(
                partial(_count_assets, store, pinned)
            )
        if not uploader.configured:
            self._readiness.started("cache")
            yield ClipCache(store)
            return
        pull = PullThrough(
            store,
            uploader.store,
            config.cache.assets_prefix,
            supervisor,
            listed_only=bool(config.cache.manifest),  # then only what the manifest lists
        )
        if not config.cache.manifest:
            self._readiness.started("cache")
            yield ClipCache(store, pull)
            return
        peers = await self._peer_source_for(config)
        replicator = Replicator(
            store,
            uploader.store,
            config.cache.manifest,
            config.cache.assets_prefix,
            config.cache.recheck_seconds,
            peers=peers,
            peer_recheck=config.peers.recheck_seconds,
            counted=lambda result: metrics.cache.requests.labels(result).inc(),
            min_free_bytes=config.storage.min_free_bytes,
        )
        if peers is not None:
            self._share_with_peers(peers, store, replicator)
        await replicator.start(supervisor)
        try:
            uploader.on_reconnect.append(replicator.wake)  # look again when the link is back
            self._readiness.started("cache")
            yield ClipCache(store, pull, replicator.status)
        finally:
            await replicator.stop()

    def _share_with_peers(
        self, peers: PeerSource, store: AssetStore, replicator: Replicator
    ) -> None:
        """What the peer browser feeds and the peer routes read (wired in `_mdns`, `_http`)."""
        self._peer_source = (peers, replicator)
        self._peer_shelf = peer_api.PeerShelf(
            key=peers.key,
            node=lambda: self.node,
            event=lambda: self.naming.event,
            assets=store.assets,
            path=store.path,
            manifest=replicator.shared_manifest,
        )

    async def _peer_source_for(self, config: Config) -> PeerSource | None:
        """The peers' HTTP with the event's secret, when [peers] replication is on. Never the
        admin token (review 19): without a secret_file, peers are off (one log line)."""
        if not (config.peers.enabled and config.mdns.enabled):
            return None
        off = peers_off(config.peers.secret_file, config.node.event, NodeConfig().event)
        if off:
            logger.info("peers: off, %s", off)
            return None
        secret = await asyncio.to_thread(_read_peer_secret, config.peers.secret_file)
        return PeerSource(secret)

    @asynccontextmanager
    async def _restream(
        self, data_dir: Path, metrics: Metrics, media: MediaManager, supervisor: Supervisor
    ) -> AsyncIterator[Restreamer]:
        """The [[restream]] destinations: each stream's packets pushed to RTMP(S) as they are;
        a key file that cannot be read (or is readable by others) stops the start."""
        configs = self.config.restream
        keys = await asyncio.to_thread(read_keys, configs)
        restreamer = Restreamer(
            configs,
            keys,
            metrics.restream,
            metrics.streams,
            partial(running_streams, media),
            data_dir,
        )
        await restreamer.start(supervisor)
        try:
            yield restreamer
        finally:
            await restreamer.stop()

    @asynccontextmanager
    async def _media(
        self,
        data_dir: Path,
        metrics: Metrics,
        board: Board,
        manager: DeviceManager,
        uploader: Uploader,
        supervisor: Supervisor,
    ) -> AsyncIterator[MediaManager]:
        """The streams: capture, encoders, live outputs and the recorder."""
        config = self.config
        sign = partial(signed, identity=self.provenance) if self.provenance else None
        self._readiness.starting("media")
        media = MediaManager(
            config.media,
            config.storage,
            board,
            metrics.streams,
            data_dir,
            lambda: SegmentIdentity(node=self.node, event=self.naming.event, sign_sidecar=sign),
            self._segment_ready,
            uploader.journal,  # the ledger: which recordings are uploaded, which queued
            gop_cache=config.live.gop_cache,
            audio=config.audio,
        )
        await media.start(manager, supervisor)
        metrics.box.set_facts(
            min_free_bytes=config.storage.min_free_bytes,
            expected_cameras=config.node.expected_cameras,
            present=lambda: cameras_present(media.streams),
        )
        try:
            self.media = media
            self._readiness.started("media")
            yield media
        finally:
            await media.stop()

    @asynccontextmanager
    async def _clip_jobs(
        self,
        data_dir: Path,
        metrics: Metrics,
        board: Board,
        media: MediaManager,
        store: AssetStore,
        supervisor: Supervisor,
    ) -> AsyncIterator[ClipJobs]:
        """The clip job queue: cuts from the spool, finished clips to the cache and upstream;
        retention keeps the segments its jobs need."""
        config = self.config
        self._readiness.starting("clips")
        settings = ClipSettings(
            max_seconds=config.clips.max_seconds,
            gop_seconds=config.media.gop_seconds,
            segment_seconds=config.media.segment_seconds,
            encoders=tuple(board.profile.encoders),
            vertical_mode=config.clips.vertical_mode,
        )
        outlets = ClipOutlets(
            shelf=store,
            publish=self._clip_ready,
            signer=(
                (self.provenance.cert_path, self.provenance.key_path) if self.provenance else None
            ),
            identity=lambda: {"node": self.node, "event": self.naming.event},
            uploaded=self._uploaded_clip,
        )
        jobs = ClipJobs(data_dir, settings, metrics.clip_jobs, outlets, partial(live_load, media))
        await jobs.open()
        try:
            media.retention.keep = jobs.needed_paths
            supervisor.spawn("clip-jobs", jobs.run)
            self._readiness.started("clips")
            yield jobs
        finally:
            await supervisor.cancel("clip-jobs")
            await jobs.close()

    @asynccontextmanager
    async def _guests(
        self,
        data_dir: Path,
        metrics: Metrics,
        uploader: Uploader,
        supervisor: Supervisor,
        identity: Identity,
    ) -> AsyncIterator[GuestDesk]:
        """The check-in desk: sign-ups in the data dir, sent upstream through the uploader."""
        desk = await asyncio.to_thread(
            lambda: GuestDesk(
                data_dir,
                self.config.guest,
                event=lambda: identity.event,
                signups=metrics.guest.signups,
                uploader=uploader,
                naming=lambda: self.naming,
            )
        )
        try:
            desk.start(supervisor)
            yield desk
        finally:
            await supervisor.cancel("guest-sync")
            await supervisor.cancel("guest-retention")
            await desk.close()

    @asynccontextmanager
    async def _http(self, services: WebServices, guests: GuestDesk) -> AsyncIterator[HttpServer]:
        app = create_app(services)
        join.install(app, guests)
        if self._peer_shelf is not None:
            peer_api.install(app, self._peer_shelf)
        http = HttpServer(
            app, self.config.http.host, self.config.http.port, self.config.http.idle_timeout
        )
        await http.start()
        try:
            self.http = http
            self._readiness.started("http")
            yield http
        finally:
            await http.stop()

    @asynccontextmanager
    async def _mdns(self, data_dir: Path, port: int, identity: Identity) -> AsyncIterator[None]:
        """The box on the LAN as `<name>.local`, and the record `edged doctor` reads."""
        config = self.config
        await asyncio.to_thread(forget_advertised, data_dir)  # a SIGKILLed run's record
        if not config.mdns.enabled:
            yield
            return
        self._readiness.starting("mdns")
        advertiser = Advertiser(
            node=self.node,
            port=port,
            addresses=advertised_addresses(
                config.http.host, _interface_addresses(), config.mdns.interfaces
            ),
            properties=self._properties(config),
            interfaces=config.mdns.interfaces,
        )
        self._advertiser = advertiser
        try:
            await advertiser.start()
            # The one name the box answers to on the LAN (renamed on a conflict): the landing
            # page, its URL and QR code, /api/v1/status and `edged doctor` (through the file).
            identity.advertised_name = advertiser.label
            advertised = Advertised(advertiser.label, advertiser.requested_label, port, os.getpid())
            try:
                await asyncio.to_thread(write_advertised, data_dir, advertised)
                self._browse_peers(advertiser)
                self._readiness.started("mdns")
                yield
            finally:
                if self.supervisor is not None:
                    await self.supervisor.cancel("peers")
                await asyncio.to_thread(forget_advertised, data_dir)
        finally:
            await advertiser.stop()

    def _browse_peers(self, advertiser: Advertiser) -> None:
        """The boxes of this event, browsed while the box advertises (peer replication)."""
        if self._peer_source is None or self.supervisor is None:
            return
        browser = PeerBrowser(
            lambda: self.naming.event,
            lambda: advertiser.label,
            partial(_peers_changed, *self._peer_source),
            self.config.mdns.interfaces,
            own_node=lambda: self.node,
            own_endpoints=lambda: advertiser.endpoints,
        )
        self.supervisor.spawn("peers", browser.run)

    async def _announce(self, port: int, identity: Identity) -> None:
        """The landing URL (and its QR code on a terminal), the log line, systemd's READY."""
        config = self.config
        url = f"http://{config.http.host}:{port}/"
        # psutil and a UDP socket: in a thread, as follow_link looks again.
        identity.landing_url = await asyncio.to_thread(self._landing_url, config, port)
        identity.typed_url = typed_url(identity.advertised_name, port)
        if sys.stdout.isatty():
            print_qr(identity.landing_url, identity.typed_url)
        if (
            self.supervisor is not None
            and not config.guest.public_url
            and config.http.host in WILDCARDS
        ):
            self.supervisor.spawn(
                "guest-link",
                lambda: follow_link(
                    partial(self._landing_url, config, port),
                    lambda: identity.landing_url,
                    partial(self._link_changed, identity),
                ),
            )
        logger.info(
            "edged %s ready: %s (node %s, event %s)", __version__, url, self.node, config.node.event
        )
        self._notifier.ready(f"serving on port {port}")

    async def _segment_ready(self, segment: Segment) -> None:
        """A closed recording goes to the upload queue, its sidecar JSON right after it.

        With sync off nothing is queued: the footage stays on the box.
        """
        if self._uploader is None or not self._uploader.configured:
            return
        video = Path(segment.path)
        when = datetime.fromtimestamp(segment.start, UTC)
        # The key follows the event its sidecar names: one owner, even across a reload.
        key = self.naming.for_event(segment.event).key(segment.stream, when, video.name)
        video_id = await self._uploader.enqueue(video, key, kind="recording", sha256=segment.sha256)
        await self._uploader.enqueue(
            segment.sidecar,
            key.removesuffix(".mp4") + ".json",
            kind="sidecar",
            after_id=video_id,
        )

    def _uploaded_clip(self, path: str) -> bool:
        """Whether a finished clip's file went upstream and was verified (blocking); with no
        upstream configured, True: the clip cache holds its copy."""
        uploader = self._uploader
        return uploader is None or not uploader.configured or uploader.journal.is_done(path)

    async def _clip_ready(self, clip: FinishedClip) -> None:
        """A finished clip goes to the upload queue under `<prefix>/<event>/<node>/clips/`, its
        sidecar JSON right after it; with sync off it stays on the box."""
        if self._uploader is None or not self._uploader.configured:
            return
        key = f"{self.naming.node_prefix()}clips/{clip.path.name}"
        if await asyncio.to_thread(self._uploader.journal.is_done, str(clip.path)):
            return  # delivered again after a stop: already upstream, never sent twice
        metadata = {"publish_at": format_utc(clip.publish_at)} if clip.publish_at else {}
        clip_id = await self._uploader.enqueue(
            clip.path, key, kind="clip", metadata=metadata, sha256=clip.sha256
        )
        await self._uploader.enqueue(
            clip.sidecar, key.removesuffix(".mp4") + ".json", kind="sidecar", after_id=clip_id
        )

    def _reload_on_signal(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_logged(), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except ConfigError as error:
            logger.error("SIGHUP: config not reloaded, the running config stays: %s", error)

    def _landing_url(self, config: Config, port: int) -> str:
        """What a phone on the LAN opens: [guest] public_url, else the box's LAN address (phones'
        browsers often cannot resolve `.local`: that name is the typed form)."""
        host = lan_host(
            config.http.host, interface_addresses(), default_route_address(), config.mdns.interfaces
        )
        return landing_url(config.guest.public_url, host, port)

    @staticmethod
    def _link_changed(identity: Identity, url: str) -> None:
        logger.info("guests' link (QR code, poster): %s -> %s", identity.landing_url, url)
        identity.landing_url = url

    def _properties(self, config: Config) -> dict[str, str]:
        # The TXT "node" (Prometheus file_sd's label), the metrics labels and the upstream keys
        # carry the configured node: the box's identity for ops, which an mDNS rename must not
        # change. The LAN name is the advertised one (context.advertised_name).
        return service_properties(node=self.node, event=config.node.event, version=__version__)

    async def _change_event(self, event: str) -> None:
        """Keys, sidecars, the STS policy and the stale-upload prefix all follow the event."""
        self.naming = ObjectNaming(self.naming.prefix, event, self.node)
        if self._uploader is not None and self._uploader.configured:
            uploader = self._uploader
            pending = await asyncio.to_thread(uploader.journal.pending_keys)
            # Files queued under the old event keep their keys: the credentials cover both.
            uploader.store.set_policy_prefixes(self.naming.policy_prefixes(pending))
            uploader.set_stale_prefix(self.naming.node_prefix())
        if self._identity is not None:
            self._identity.event = event
        if self._metrics is not None:
            self._metrics.set_identity(version=__version__, node=self.node, event=event)
        if self._advertiser is not None:
            await self._advertiser.update_properties(self._properties(self.config))

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; apply what can change live, list what needs a restart."""
        if self._launch.config_file is None:
            return {"reloaded": False, "reason": "no config file: running on embedded defaults"}
        loaded = await asyncio.to_thread(config_module.load, self._launch.config_file)
        new = config_module.with_overrides(loaded, self._launch.overrides)
        changed = config_module.changed_keys(self.config, new)
        applied = [key for key in changed if key in LIVE_KEYS]
        pending = [key for key in changed if key not in LIVE_KEYS]
        # Exactly the keys reported as applied change; the others wait for a restart.
        self.config = config_module.with_overrides(
            self.config, {key: config_module.value_of(new, key) for key in applied}
        )
        if "node.event" in changed:
            await self._change_event(self.config.node.event)
        if "daemon.log_level" in changed:
            logging.getLogger("edged").setLevel(self.config.daemon.log_level.upper())
        logger.info(
            "config reloaded: applied %s; on restart %s", applied or "nothing", pending or "nothing"
        )
        return {"reloaded": True, "applied": applied, "restart_required": pending}


def lazy_whep(live: LiveConfig, metrics: LiveMetrics) -> LazyWhep:
    """The WHEP sessions [live] describes, made with the first viewer."""
    return LazyWhep(live.max_viewers, live.ice_addresses, metrics, ice_timeout=live.ice_timeout)


def cameras_present(streams: Mapping[str, Any]) -> int:
    """Streams of a camera or capture card, counted by the metrics' exposition thread while the
    loop may add or remove a stream: from a snapshot (tuple() copies a dict's values without
    letting another thread run), never by iterating the live dict."""
    return sum(entry.device is not None for entry in tuple(streams.values()))


def live_load(media: MediaManager) -> Load:
    """What clip jobs pause for: the thermal level, and frames the streams dropped at encode
    and at their outputs (the recorder behind the disk, the live muxer)."""
    counts = [entry.pipeline.counts for entry in media.streams.values()]
    return Load(
        media.thermal.policy.level,
        sum(count.dropped_encode for count in counts),
        sum(count.dropped_output for count in counts),
    )


def running_streams(media: MediaManager) -> dict[str, Running]:
    """The running streams as the restreamer taps them: pipeline and picture size."""
    return {
        name: Running(
            entry.pipeline,
            Geometry(entry.settings.width, entry.settings.height, entry.settings.fps),
        )
        for name, entry in media.streams.items()
        if not entry.waiting
    }


def freeze_startup_heap() -> None:
    """What startup made (modules, PyAV, the config) lives as long as the daemon: moved out of
    the collector's sight, a full collection under a crowd walks only what requests make
    (a crowd of 1,000 phones: p95 to the first frame's bytes 546 -> 425 ms)."""
    gc.collect()
    gc.freeze()


async def run(launch: Launch) -> bool:
    """Serve until stopped; the entry point `edged run` calls."""
    return await Daemon(launch).serve()

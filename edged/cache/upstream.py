"""Clips from the upstream bucket: the manifest replicator and pull-through on a miss.

Downloads resume by Range and are verified by sha256 before a clip is prepared and served. The
decisions (the plan against the cap, retry, the summary) are in `edged.cache.manifest`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from edged.cache.manifest import (
    CHECKSUM,
    NOT_IN_BUCKET,
    NOT_VIDEO,
    UPSTREAM,
    Failure,
    Manifest,
    ManifestEntry,
    ManifestError,
    PassReport,
    Plan,
    Wanted,
    due,
    failed,
    parse_manifest,
    plan_replication,
)
from edged.cache.peerlink import PeerError, PeerRefused, PeerSource
from edged.cache.peers import (
    NO_PEER,
    PEER_ORIGIN,
    REFUSED_SECONDS,
    PeerListing,
    PeerManifest,
    PeerOffer,
    fits_on_disk,
    freshest_manifest,
    next_rate,
    offer_identity,
    offers_for,
    order_sources,
    part_clip,
    part_name,
    peer_plan_size,
    plausible_offers,
)
from edged.cache.peers import UPSTREAM as FROM_UPSTREAM
from edged.cache.prepare import PrepareError
from edged.cache.store import AssetStore
from edged.errors import EdgedError
from edged.fileio import file_sha256
from edged.media.mp4 import metadata_first
from edged.s3bucket import (
    CredentialsRefused,
    ObjectFacts,
    S3Bucket,
    UpstreamError,
    UpstreamUnreachable,
)
from edged.supervise import Supervisor, describe

logger = logging.getLogger(__name__)

__all__ = ["ManifestEntry", "ManifestError", "PullThrough", "Replicator", "parse_manifest"]

MANIFEST_POLL_SECONDS = 10.0  # during a pass, the manifest is looked at this often
MISS_SECONDS = 15.0  # a name upstream does not have is not asked for again for this long
MISSES_KEPT = 4096


class VerificationError(EdgedError):
    """A download does not match its sha256: refused, never served."""


def fetch_verified(
    s3: S3Bucket,
    key: str,
    part: Path,
    expected_sha256: str,
    progress: object = None,
    facts: ObjectFacts | None = None,
) -> str:
    """Download (resuming) and verify; the sha256 of the bytes. Blocking. `facts`: the object's
    HEAD, when the caller has just asked."""
    facts = facts or s3.stat(key)
    if facts is None:
        raise UpstreamError(f"{key} is not in the bucket")
    s3.download(key, part, facts.size, progress if callable(progress) else (lambda size: None))
    actual = file_sha256(part)
    expected = expected_sha256 or facts.sha256
    if not expected and "-" not in facts.etag:
        expected_md5 = facts.etag
        digest = hashlib.md5()  # noqa: S324 - S3's single-part ETag
        with part.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
        if digest.hexdigest() != expected_md5:
            part.unlink(missing_ok=True)
            raise VerificationError(f"{key}: md5 {digest.hexdigest()} != ETag {expected_md5}")
    elif expected and actual != expected:
        part.unlink(missing_ok=True)
        raise VerificationError(f"{key}: sha256 {actual} != expected {expected}; refused")
    return actual


class ManifestChanged(EdgedError):
    """The manifest changed during a pass: the pass starts over with the new one."""


class Stopping(EdgedError):
    """The replicator is stopping: the pass in its thread ends at the next entry."""


NAMED = ("fetched", "not_replicated", "skipped")  # the status lists that name clips


def counted_status(status: dict[str, Any]) -> dict[str, Any]:
    """The replication status for a client without the token: each list that names clips as
    its length, and whether the last pass had trouble (its text names clips too). A staged
    clip's name is the crew's (review 16b, finding 2)."""
    counted = {key: len(value) if key in NAMED else value for key, value in status.items()}
    if status.get("last_error"):
        counted["last_error"] = "trouble: send the admin token for the clips it names"
    return counted


def _identity(entry: ManifestEntry) -> tuple[str, str, str]:
    """What a failure or a learned size belongs to: the same name, object and checksum."""
    return (entry.name, entry.key, entry.sha256)


class Replicator:
    """Keeps the manifest's clips on the box, in priority order, pinned as it says, within
    `[cache] max_bytes`. A failed entry waits (backoff) without a request; a pass logs one line."""

    def __init__(
        self,
        store: AssetStore,
        s3: S3Bucket,
        manifest_key: str,
        assets_prefix: str,
        interval: float = 300.0,
        *,
        manifest_poll: float = MANIFEST_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        peers: PeerSource | None = None,
        peer_recheck: float = 10.0,
        counted: Callable[[str], None] = lambda result: None,
        min_free_bytes: int = 0,
    ) -> None:
        self._peers = peers
        self._min_free = min_free_bytes  # a peer download never takes the disk under this
        self._peer_recheck = peer_recheck
        self._counted = counted  # a clip fetched from a peer: edged_cache_requests_total{peer}
        self._listings: list[PeerListing] = []  # what the peers held at this pass's start
        self._upstream_up = True  # this pass reads the upstream (else only the peers)
        self._rates: dict[str, float] = {}  # bytes/s by source (FROM_UPSTREAM or a peer node)
        self._refused: dict[tuple[str, str, str], float] = {}  # a peer's bad bytes -> until
        # What a peer asks for: the manifest followed (key, ETag, the upstream's Last-Modified),
        # its bytes. A manifest taken from a peer is provisional: read upstream once reachable.
        self._shared: tuple[dict[str, Any], bytes] | None = None
        self._planned: dict[str, int] = {}  # this pass's planned bytes by clip
        self._spare = 0  # and the bytes the plan leaves under the cap
        self._store = store
        self._s3 = s3
        self._manifest_key = manifest_key
        self._assets_prefix = assets_prefix
        self._interval = interval
        self._manifest_poll = manifest_poll
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._stopping = threading.Event()
        self._supervisor: Supervisor | None = None
        # Touched by the pass thread only; the loop reads `status()`, a snapshot.
        self._manifest = Manifest(())
        self._manifest_etag: str | None = None
        self._manifest_modified = 0.0  # the upstream's Last-Modified of the manifest followed
        self._provisional = False  # it came from a peer (review 19, finding 2)
        self._polled = 0.0
        self._failures: dict[tuple[str, str, str], Failure] = {}
        self._sizes: dict[tuple[str, str, str], int] = {}  # bytes learned: upstream or prepared
        self._trouble = ""  # what the previous pass could not replicate, to log changes only
        self._status: dict[str, Any] = {"manifest": manifest_key, "passes": 0}
        self.passes = 0
        self.last_error = ""

    def shared_manifest(self) -> tuple[dict[str, Any], bytes] | None:
        """The manifest this box follows, for its peers: (key, ETag, modified), its bytes."""
        return self._shared

    def status(self) -> dict[str, Any]:
        """The last pass for the API: clips here, fetched, and each clip not here with its
        reason and when it is tried again."""
        return self._status

    # -- one pass (blocking, in a thread) ------------------------------------------------------

    def sync(self) -> list[str]:
        """One pass over the manifest; the names fetched. A manifest that changes during the
        pass starts it over."""
        while True:
            try:
                return self._pass()
            except ManifestChanged as change:
                logger.info("manifest %s changed (%s): the pass starts over", *change.args)

    def _pass(self) -> list[str]:
        self._refresh()
        manifest = self._manifest
        self._store.want(manifest.names)
        now = self._clock()
        report = PassReport(rejected=len(manifest.rejected))
        wanted: list[Wanted] = []
        heads: dict[str, ObjectFacts] = {}
        offered: dict[str, list[PeerOffer]] = {}
        unfit: dict[str, tuple[str, str]] = {}
        for index, entry in enumerate(manifest.entries):
            local = self._store.get(entry.name)
            if local is not None and (not entry.sha256 or local.origin_sha256 == entry.sha256):
                if local.pinned != entry.pin:
                    self._store.set_pinned(entry.name, entry.pin)
                report.held += 1
                wanted.append(Wanted(entry, held=local.size))
                continue
            failure = self._failures.get(_identity(entry))
            if failure is not None and not due(failure, now):
                report.problem(failure.kind, index, entry.name)
                continue
            found = offers_for(entry, self._listings, self._refused, now)
            offered[entry.name] = plausible_offers(found, self._size(entry))
            size = self._wanted_size(entry, failure, now, heads, offered[entry.name])
            if size is None:
                failure = self._failures.get(_identity(entry))
                report.problem(failure.kind if failure else NO_PEER, index, entry.name)
                if failure is None:
                    unfit[entry.name] = (NO_PEER, "asked again when a peer may have it")
                continue
            wanted.append(Wanted(entry, size=size))
        plan = self._plan(wanted, manifest)
        position = {entry.name: index for index, entry in enumerate(manifest.entries)}
        for entry, kind, reason in plan.cannot_fit:
            report.problem(kind, position[entry.name], entry.name)
            unfit[entry.name] = (kind, reason)
        for entry in plan.fetch:
            self._checkpoint()
            if self._fetch(entry, heads.get(entry.name), offered.get(entry.name, [])):
                report.fetched.append(entry.name)
                report.held += 1
            else:
                failure = self._failures.get(_identity(entry))
                kind = failure.kind if failure else NO_PEER
                report.problem(kind, position[entry.name], entry.name)
                if failure is None:
                    unfit[entry.name] = (kind, "no peer gave bytes that verify; tried again")
        self._finish(report, unfit)
        return report.fetched

    def _plan(self, wanted: list[Wanted], manifest: Manifest) -> Plan:
        """The pass's plan against the cap, and what it leaves: the bytes planned per clip and
        the room to spare (a peer's offer larger than planned is taken only within it)."""
        listed = set(manifest.names)
        fixed = sum(a.size for a in self._store.assets() if a.pinned and a.name not in listed)
        plan = plan_replication(wanted, fixed, self._store.max_bytes)
        sizes = {item.entry.name: item.size or 0 for item in wanted if item.held is None}
        self._planned = {entry.name: sizes[entry.name] for entry in plan.fetch}
        used = fixed + sum(item.held or 0 for item in wanted) + sum(self._planned.values())
        self._spare = max(0, self._store.max_bytes - used)
        return plan

    def _wanted_size(
        self,
        entry: ManifestEntry,
        failure: Failure | None,
        now: float,
        heads: dict[str, ObjectFacts],
        offers: list[PeerOffer],
    ) -> int | None:
        """The bytes `entry` needs on the box, or None when it cannot be had this pass: not
        upstream (the entry failed), or the upstream is out of reach and no peer has it."""
        size = self._size(entry)
        if not self._upstream_up:
            return peer_plan_size(size, offers)
        if size is None or failure is not None:
            facts = self._head(entry, now)
            if facts is None:
                return None
            heads[entry.name] = facts
            size = max(facts.size, size or 0)
        return size

    def _refresh(self) -> None:
        """Read the manifest again when its ETag changed (a HEAD a pass, a GET on a change);
        with the upstream out of reach, the one the peers read last (or the one held)."""
        self._checkpoint(poll=False)
        self._listings = self._peers.listings() if self._peers is not None else []
        self._upstream_up = True
        try:
            facts = self._s3.stat(self._manifest_key)
        except (UpstreamUnreachable, CredentialsRefused):
            if not self._refresh_from_peers():
                raise
            return
        self._polled = self._clock()
        if facts is None:
            raise ManifestError(f"manifest {self._manifest_key} is not in the bucket")
        if facts.etag == self._manifest_etag and not self._provisional:
            return
        self._adopt(self._s3.read(self._manifest_key), facts.etag, facts.modified)
        self._provisional = False

    def _refresh_from_peers(self) -> bool:
        """With the upstream out of reach: follow the freshest manifest a peer read, or the
        one held; False when no peer answers or there is no manifest at all."""
        if not self._listings:
            return False
        chosen = freshest_manifest(self._listings, self._manifest_key)
        if chosen is None and self._manifest_etag is None:
            return False
        self._upstream_up = False
        if self._peers is not None and chosen is not None and self._newer(chosen):
            try:
                raw = self._peers.manifest(chosen)
            except PeerError as error:
                raise UpstreamUnreachable(f"upstream out of reach; {error}") from error
            self._adopt(raw, chosen.etag, chosen.modified)
            self._provisional = True
            logger.info(
                "upstream out of reach: manifest %s as peer %s read it (ETag %s)",
                self._manifest_key,
                chosen.node,
                chosen.etag,
            )
        return True

    def _newer(self, chosen: PeerManifest) -> bool:
        """A peer's manifest replaces the one held only when the upstream modified it later
        (an older copy never replaces a newer one read upstream)."""
        if self._manifest_etag is None:
            return True
        return chosen.etag != self._manifest_etag and chosen.modified > self._manifest_modified

    def _adopt(self, raw: bytes, etag: str, modified: float) -> None:
        """A manifest document read (upstream, or a peer's copy) becomes the one followed."""
        manifest = parse_manifest(raw, self._assets_prefix)
        self._manifest, self._manifest_etag, self._manifest_modified = manifest, etag, modified
        self._shared = ({"key": self._manifest_key, "etag": etag, "modified": modified}, raw)
        self._store.facts.from_manifest(
            {entry.name: dict(entry.facts) for entry in manifest.entries},
            {rejected.name: rejected.reason for rejected in manifest.rejected if rejected.name},
            on_box={asset.name for asset in self._store.assets()},
        )
        listed = {_identity(entry) for entry in manifest.entries}
        self._failures = {k: v for k, v in self._failures.items() if k in listed}
        self._sizes = {k: v for k, v in self._sizes.items() if k in listed}
        parts = {f"{entry.name}.part" for entry in manifest.entries}
        for stray in self._store.partial.glob("*.part"):  # of clips no longer listed
            if stray.name not in parts:
                stray.unlink(missing_ok=True)
        names = set(manifest.names)
        for stray in self._store.partial.glob("*.peer"):
            if part_clip(stray.name) not in names:
                stray.unlink(missing_ok=True)
        for rejected in manifest.rejected:
            logger.debug("manifest entry %d skipped: %s", rejected.index, rejected.reason)

    def _checkpoint(self, poll: bool = True) -> None:
        """Between entries and download chunks: end the pass when stopping or when the
        manifest changed (looked at every `manifest_poll` seconds)."""
        if self._stopping.is_set():
            raise Stopping("stopping")
        if not poll or not self._upstream_up or self._clock() - self._polled < self._manifest_poll:
            return
        facts = self._s3.stat(self._manifest_key)
        self._polled = self._clock()
        if facts is not None and facts.etag != self._manifest_etag:
            raise ManifestChanged(self._manifest_key, f"ETag {facts.etag}")

    def _size(self, entry: ManifestEntry) -> int | None:
        known = [size for size in (entry.size, self._sizes.get(_identity(entry))) if size]
        return max(known) if known else None

    def _head(self, entry: ManifestEntry, now: float) -> ObjectFacts | None:
        """The object's facts, or None with the entry failed: missing, or the very object
        refused before (not downloaded again)."""
        self._checkpoint()
        identity = _identity(entry)
        previous = self._failures.get(identity)
        facts = self._s3.stat(entry.key)
        if facts is None:
            self._failures[identity] = failed(
                previous, now, NOT_IN_BUCKET, f"{entry.key} is not in the bucket"
            )
            return None
        if previous is not None and previous.etag and previous.etag == facts.etag:
            self._failures[identity] = failed(previous, now, previous.kind, previous.reason)
            return None
        self._sizes[identity] = max(facts.size, self._sizes.get(identity, 0))
        return facts

    def _fetch(
        self, entry: ManifestEntry, facts: ObjectFacts | None, offers: list[PeerOffer]
    ) -> bool:
        """One clip from its sources in `order_sources`' order; False when none gave it. A peer
        offer larger than the plan has room for is left out (review 19, finding 3)."""
        allowed = self._planned.get(entry.name, 0) + self._spare
        fitting = [offer for offer in offers if offer.size <= allowed]
        if len(fitting) < len(offers):
            logger.debug(
                "clip %s: %d peer offers over the plan's room",
                entry.name,
                len(offers) - len(fitting),
            )
        sources = order_sources(self._upstream_up, fitting, self._rates)
        for index, source in enumerate(sources):
            if isinstance(source, PeerOffer):
                if self._fetch_peer(entry, source):
                    return True
                continue
            try:
                if self._fetch_upstream(entry, facts):
                    return True
            except (UpstreamUnreachable, CredentialsRefused):
                if not sources[index + 1 :]:
                    raise
                self._upstream_up = False  # the peers after it, then only peers this pass
        return False

    def _fetch_peer(self, entry: ManifestEntry, offer: PeerOffer) -> bool:
        """Download (resuming), verify and store one clip from a peer; False when it did not
        answer (the part stays to resume) or its bytes were refused (not asked for again for
        a while). Never an entry's failure: the upstream's backoff is the upstream's."""
        if self._peers is None:  # offers come from them
            return False
        part = self._store.partial / part_name(entry.name, offer.node)
        resumed = part.stat().st_size if part.exists() else 0
        free = shutil.disk_usage(self._store.partial).free
        if not fits_on_disk(free, offer.size - resumed, self._min_free):
            logger.info(
                "clip %s not from peer %s: the disk keeps its free space", entry.name, offer.node
            )
            return False
        started = self._clock()
        try:
            self._peers.download(offer, part, self._peer_progress)
            asset = self._store.add(
                part,
                entry.name,
                pin=entry.pin,
                origin=PEER_ORIGIN + offer.node,
                origin_sha256=offer.origin_sha256,
            )
        except (PeerRefused, PrepareError) as error:
            part.unlink(missing_ok=True)
            self._refused[offer_identity(offer)] = self._clock() + REFUSED_SECONDS
            logger.warning("%s", str(error).replace(str(part), entry.name))
            return False
        except PeerError as error:
            logger.info("clip %s not from peer %s this time: %s", entry.name, offer.node, error)
            return False
        part.unlink(missing_ok=True)
        self._spare = max(0, self._spare - max(0, offer.size - self._planned.get(entry.name, 0)))
        rate = next_rate(self._rates.get(offer.node), offer.size - resumed, self._clock() - started)
        if rate is not None:
            self._rates[offer.node] = rate
        self._failures.pop(_identity(entry), None)
        self._counted("peer")
        logger.info("clip %s from peer %s (%d bytes, verified)", entry.name, offer.node, asset.size)
        return True

    def _fetch_upstream(self, entry: ManifestEntry, facts: ObjectFacts | None) -> bool:
        """Download, verify, prepare and store one clip; False with the entry failed."""
        now = self._clock()
        identity = _identity(entry)
        if facts is None:
            facts = self._head(entry, now)
            if facts is None:
                return False
        part = self._store.partial / f"{entry.name}.part"
        previous = self._failures.get(identity)
        try:
            digest = fetch_verified(
                self._s3, entry.key, part, entry.sha256, self._progress, facts=facts
            )
            asset = self._store.add(
                part, entry.name, pin=entry.pin, origin="upstream", origin_sha256=digest
            )
        except VerificationError as error:  # the part is gone; these bytes never again
            self._failures[identity] = failed(previous, now, CHECKSUM, str(error), facts.etag)
            return False
        except PrepareError as error:
            part.unlink(missing_ok=True)
            reason = str(error).replace(str(part), entry.name)
            self._failures[identity] = failed(previous, now, NOT_VIDEO, reason, facts.etag)
            return False
        except (UpstreamUnreachable, CredentialsRefused):
            raise  # the link, not the entry: the pass waits, the part stays to resume
        except UpstreamError as error:
            self._failures[identity] = failed(previous, now, UPSTREAM, str(error))
            return False
        part.unlink(missing_ok=True)
        self._failures.pop(identity, None)
        rate = next_rate(self._rates.get(FROM_UPSTREAM), facts.size, self._clock() - now)
        if rate is not None:
            self._rates[FROM_UPSTREAM] = rate
        # The prepared clip may be larger than the upload: plan with the larger next time.
        self._sizes[identity] = max(facts.size, asset.size)
        return True

    def _progress(self, _: int) -> None:
        self._checkpoint()

    def _peer_progress(self, _: int) -> None:
        """Between a peer download's chunks: the upstream lost meanwhile is noted, never an
        end to the download (review 19, low item 14)."""
        try:
            self._checkpoint()
        except (UpstreamUnreachable, CredentialsRefused):
            self._upstream_up = False

    def _finish(self, report: PassReport, unfit: dict[str, tuple[str, str]]) -> None:
        trouble = report.trouble
        changed = trouble != self._trouble
        if trouble and changed:
            level = logging.WARNING
        elif report.fetched or changed:
            level = logging.INFO
        else:
            level = logging.DEBUG
        logger.log(level, "%s", report.line(self._manifest_key))
        self._trouble = trouble
        self.last_error = trouble
        self.passes += 1
        now = self._clock()
        not_here = [
            {"name": name, "kind": kind, "reason": reason, "retry_in": None}
            for name, (kind, reason) in unfit.items()
        ] + [
            {
                "name": name,
                "kind": failure.kind,
                "reason": failure.reason,
                "retry_in": round(max(failure.retry_at - now, 0.0)),
            }
            for (name, _, _), failure in self._failures.items()
        ]
        self._status = {
            "manifest": self._manifest_key,
            "passes": self.passes,
            "clips_here": report.held,
            "fetched": list(report.fetched),
            "not_replicated": not_here,
            "skipped": [
                {"index": rejected.index, "name": rejected.name, "reason": rejected.reason}
                for rejected in self._manifest.rejected
            ],
            "last_error": self.last_error,
            "upstream_reachable": self._upstream_up,
            "peers": sorted(listing.node for listing in self._listings),  # that answered
        }

    # -- the task ------------------------------------------------------------------------------

    async def start(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._stopping.clear()
        supervisor.spawn("replicator", self._run)

    async def stop(self) -> None:
        self._stopping.set()  # a pass running in its thread ends at its next entry
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await supervisor.cancel("replicator")

    def wake(self) -> None:
        """Look again now (connectivity came back)."""
        self._wakeup.set()

    async def _run(self) -> None:
        waiting = ""
        while True:
            try:
                await asyncio.to_thread(self.sync)
                waiting = ""
            except Stopping:
                return
            except (EdgedError, OSError) as error:
                self.last_error = describe(error) if isinstance(error, OSError) else str(error)
                self._status = {**self._status, "last_error": self.last_error}
                level = logging.DEBUG if self.last_error == waiting else logging.WARNING
                logger.log(level, "clip replication waits: %s", self.last_error)
                waiting = self.last_error
            interval = self._interval
            if self._peers is not None and self.last_error:  # a peer may have it soon
                interval = min(interval, self._peer_recheck)
            try:
                async with asyncio.timeout(interval):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()


@dataclass
class Download:
    """One upstream download that several requests may read while it grows."""

    name: str
    part: Path
    size: int
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # stored and prepared, or failed
    done: bool = False
    error: str = ""

    async def streamable(self) -> bool:
        """Whether the upstream file can be played from its first bytes (metadata first), so
        it is worth streaming while it downloads; otherwise better wait for the prepared one."""
        while True:
            head = await asyncio.to_thread(_read_head, self.part)
            verdict = metadata_first(head)
            if verdict is not None:
                return verdict
            if self.done:
                return False
            self.progress.clear()
            await self.progress.wait()


def _read_head(path: Path, limit: int = 1 << 20) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(limit)
    except FileNotFoundError:
        return b""


class MissCache:
    """Names upstream does not have, remembered for `seconds`; at most `limit` of them (the
    oldest go first). Time is passed in."""

    def __init__(self, seconds: float = MISS_SECONDS, limit: int = MISSES_KEPT) -> None:
        self._seconds = seconds
        self._limit = limit
        self._until: dict[str, float] = {}  # insertion order: the oldest first

    def remember(self, name: str, now: float) -> None:
        self._until.pop(name, None)
        self._until[name] = now + self._seconds
        while len(self._until) > self._limit:
            del self._until[next(iter(self._until))]

    def missing(self, name: str, now: float) -> bool:
        until = self._until.get(name)
        if until is None:
            return False
        if now >= until:
            del self._until[name]
            return False
        return True

    def __len__(self) -> int:
        return len(self._until)


class PullThrough:
    """A request for a clip that is upstream but not here streams while it is stored; every
    concurrent request for it shares the one lookup and the one download, and a name upstream
    does not have is answered from memory for a few seconds. With `listed_only` (a manifest is
    configured), only a clip the manifest's last read lists: one uploaded ahead of its release,
    to be listed then, is not anyone's who guesses its name."""

    def __init__(
        self,
        store: AssetStore,
        s3: S3Bucket,
        assets_prefix: str,
        supervisor: Supervisor | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        listed_only: bool = False,
    ) -> None:
        self._listed_only = listed_only
        self._store = store
        self._s3 = s3
        self._prefix = assets_prefix.rstrip("/")
        self._supervisor = supervisor
        self._clock = clock
        self._downloads: dict[str, Download] = {}
        self._lookups: dict[str, asyncio.Task[ObjectFacts | None]] = {}
        self._misses = MissCache()

    async def _lookup(self, name: str) -> ObjectFacts | None:
        """The object's facts; one HEAD shared by every request asking meanwhile."""
        lookup = self._lookups.get(name)
        if lookup is None:
            lookup = asyncio.get_running_loop().create_task(self._stat(name))
            self._lookups[name] = lookup
            lookup.add_done_callback(partial(self._looked_up, name))
        # One request that goes away does not cancel the lookup the others wait for.
        return await asyncio.shield(lookup)

    async def _stat(self, name: str) -> ObjectFacts | None:
        facts = await asyncio.to_thread(self._s3.stat, f"{self._prefix}/{name}")
        if facts is None:
            self._misses.remember(name, self._clock())
        return facts

    def _looked_up(self, name: str, lookup: asyncio.Task[ObjectFacts | None]) -> None:
        if self._lookups.get(name) is lookup:
            del self._lookups[name]
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every waiter has it already

    async def open(self, name: str) -> Download | None:
        if self._listed_only and not self._store.listed(name):
            return None
        if name in self._downloads:
            return self._downloads[name]
        if self._misses.missing(name, self._clock()):
            return None
        key = f"{self._prefix}/{name}"
        facts = await self._lookup(name)
        if facts is None:
            return None
        if name in self._downloads:  # another request started it meanwhile
            return self._downloads[name]
        part = self._store.partial / f"{name}.pull"
        part.unlink(missing_ok=True)
        download = Download(name, part, facts.size)
        self._downloads[name] = download
        loop = asyncio.get_running_loop()

        def progress(_: int) -> None:
            loop.call_soon_threadsafe(download.progress.set)

        async def run() -> None:
            try:
                digest = await asyncio.to_thread(
                    fetch_verified, self._s3, key, part, "", progress, facts
                )
                await asyncio.to_thread(
                    self._store.add,
                    part,
                    name,
                    pin=False,
                    origin="pull-through",
                    origin_sha256=digest,
                )
            except EdgedError as error:
                download.error = str(error)
                logger.error("pull-through of %s failed: %s", name, error)
            except Exception as error:  # logged and counted; the next request starts it again
                download.error = describe(error)
                if self._supervisor is not None:
                    self._supervisor.report("pull-through", error)
                else:
                    logger.exception("pull-through of %s failed", name)
            finally:
                download.done = True
                download.progress.set()
                download.ready.set()
                self._downloads.pop(name, None)

        download.task = loop.create_task(run())  # type: ignore[attr-defined]
        return download

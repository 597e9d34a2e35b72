"""Clips from the upstream bucket: the manifest replicator and pull-through on a miss.

Downloads resume by Range and are verified by sha256 before a clip is prepared and served.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edged.cache.ranges import valid_name
from edged.cache.store import AssetStore
from edged.errors import EdgedError
from edged.fileio import file_sha256
from edged.supervise import Supervisor, describe
from edged.upload.s3 import S3Store, UpstreamError

logger = logging.getLogger(__name__)


class ManifestError(EdgedError, ValueError):
    """The manifest object is not the JSON edged expects."""


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    key: str
    pin: bool
    sha256: str


def parse_manifest(data: bytes, assets_prefix: str) -> list[ManifestEntry]:
    """`{"assets": [{"name": ..., "key": ..., "pin": true, "sha256": ...}, ...]}`, in priority
    order; `key` defaults to `<assets prefix>/<name>`, `pin` to true."""
    try:
        document = json.loads(data)
        entries = document["assets"] if isinstance(document, dict) else document
    except (ValueError, KeyError, TypeError) as error:
        raise ManifestError(f"manifest is not a JSON list of assets: {error}") from error
    if not isinstance(entries, list):
        raise ManifestError("manifest is not a JSON list of assets")
    parsed = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not valid_name(name):
            raise ManifestError(f"manifest entry {index}: name {name!r} is not a valid asset name")
        parsed.append(
            ManifestEntry(
                name=name,
                key=str(entry.get("key") or f"{assets_prefix.rstrip('/')}/{name}"),
                pin=bool(entry.get("pin", True)),
                sha256=str(entry.get("sha256", "")),
            )
        )
    return parsed


class VerificationError(EdgedError):
    """A download does not match its sha256: refused, never served."""


def fetch_verified(
    s3: S3Store, key: str, part: Path, expected_sha256: str, progress: object = None
) -> str:
    """Download (resuming) and verify; the sha256 of the bytes. Blocking."""
    facts = s3.stat(key)
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


class Replicator:
    """Keeps the manifest's clips on the box, in priority order, pinned as it says."""

    def __init__(
        self,
        store: AssetStore,
        s3: S3Store,
        manifest_key: str,
        assets_prefix: str,
        interval: float = 300.0,
    ) -> None:
        self._store = store
        self._s3 = s3
        self._manifest_key = manifest_key
        self._assets_prefix = assets_prefix
        self._interval = interval
        self._wakeup = asyncio.Event()
        self._supervisor: Supervisor | None = None
        self.last_error = ""

    def sync(self) -> list[str]:
        """One pass over the manifest (blocking); the names fetched."""
        entries = parse_manifest(self._s3.read(self._manifest_key), self._assets_prefix)
        fetched = []
        for entry in entries:
            local = self._store.get(entry.name)
            if local is not None and (not entry.sha256 or local.origin_sha256 == entry.sha256):
                if local.pinned != entry.pin:
                    self._store.set_pinned(entry.name, entry.pin)
                continue
            part = self._store.partial / f"{entry.name}.part"
            try:
                digest = fetch_verified(self._s3, entry.key, part, entry.sha256)
                self._store.add(
                    part, entry.name, pin=entry.pin, origin="upstream", origin_sha256=digest
                )
                fetched.append(entry.name)
            except (VerificationError, EdgedError) as error:
                logger.error("replication of %s failed: %s", entry.name, error)
                self.last_error = str(error)
            finally:
                if entry.name in fetched:
                    part.unlink(missing_ok=True)
        return fetched

    async def start(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        supervisor.spawn("replicator", self._run)

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await supervisor.cancel("replicator")

    def wake(self) -> None:
        """Look again now (connectivity came back)."""
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            try:
                fetched = await asyncio.to_thread(self.sync)
                if fetched:
                    logger.info("replicated %s", ", ".join(fetched))
            except (EdgedError, OSError) as error:
                self.last_error = str(error)
                logger.warning("clip replication waits: %s", error)
            try:
                async with asyncio.timeout(self._interval):
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


def metadata_first(head: bytes) -> bool | None:
    """True when `moov` comes before any `mdat`, False when `mdat` comes first, None when the
    bytes so far do not tell. Only box headers are read."""
    offset = 0
    while offset + 8 <= len(head):
        length, kind = struct.unpack(">I4s", head[offset : offset + 8])
        if kind == b"moov":
            return True
        if kind == b"mdat":
            return False
        if length == 1:
            if offset + 16 > len(head):
                return None
            length = struct.unpack(">Q", head[offset + 8 : offset + 16])[0]
        if length < 8:
            return False  # not an MP4 box structure: nothing to stream early
        offset += length
    return None


class PullThrough:
    """A request for a clip that is upstream but not here streams while it is stored; every
    concurrent request for it shares the one download."""

    def __init__(
        self,
        store: AssetStore,
        s3: S3Store,
        assets_prefix: str,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._store = store
        self._s3 = s3
        self._prefix = assets_prefix.rstrip("/")
        self._supervisor = supervisor
        self._downloads: dict[str, Download] = {}

    async def open(self, name: str) -> Download | None:
        if name in self._downloads:
            return self._downloads[name]
        key = f"{self._prefix}/{name}"
        facts = await asyncio.to_thread(self._s3.stat, key)
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
                digest = await asyncio.to_thread(fetch_verified, self._s3, key, part, "", progress)
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

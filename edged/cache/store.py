"""The asset store: prepared clips on disk with an index, a size cap with eviction (pinned
clips stay; other clips before the manifest's, least recently used first, then the manifest's
from its lowest priority up), atomic writes, and the first-frame bytes of pinned clips in memory.

Reads (`get`, `assets`, `hot`, `path`, `touch`) never block: they see an immutable snapshot
that the one writer at a time replaces whole, so the event loop may call them. Writes block (file
I/O, fsync, PyAV): call them in a thread. No other process writes the index while this one holds
the data dir (edged cache refuses a data dir the daemon holds).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edged.cache.facts import FactsStore
from edged.cache.prepare import PrepareError, prepare
from edged.cache.ranges import valid_name
from edged.fileio import file_sha256, write_atomically

logger = logging.getLogger(__name__)

INDEX = "index.json"


@dataclass(frozen=True)
class Asset:
    name: str
    sha256: str
    size: int
    duration: float
    video_codec: str
    audio_codec: str
    width: int
    height: int
    pinned: bool
    source: str
    added: float
    last_access: float
    head_size: int
    transcoded: bool = False
    origin_sha256: str = ""  # of the file as it came (upstream), before preparation


def eviction_order(
    assets: Iterable[Asset], wanted: Mapping[str, int], spare: str = ""
) -> list[Asset]:
    """The unpinned clips in the order they go: clips the manifest does not want, least recently
    used first; then the manifest's, lowest priority (highest rank) first; `spare` (the clip just
    added) last."""

    def key(asset: Asset) -> tuple[bool, bool, float]:
        rank = wanted.get(asset.name)
        order = asset.last_access if rank is None else -float(rank)
        return (asset.name == spare, rank is not None, order)

    return sorted((asset for asset in assets if not asset.pinned), key=key)


@dataclass(frozen=True)
class StoreView:
    """The store at one moment, never changed once published: its clips and the first-frame
    bytes of the pinned ones."""

    assets: Mapping[str, Asset] = field(default_factory=lambda: MappingProxyType({}))
    hot: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))

    def changed(
        self,
        put: Iterable[Asset] = (),
        drop: Iterable[str] = (),
        heads: Mapping[str, bytes | None] | None = None,
    ) -> StoreView:
        """The next view: `put` added or replaced, `drop` gone, `heads` set (None: forgotten)."""
        assets, hot = dict(self.assets), dict(self.hot)
        for name in drop:
            assets.pop(name, None)
            hot.pop(name, None)
        for asset in put:
            assets[asset.name] = asset
        for name, head in (heads or {}).items():
            if head is None:
                hot.pop(name, None)
            else:
                hot[name] = head
        return StoreView(MappingProxyType(assets), MappingProxyType(hot))


class AssetStore:
    """Clips under `<root>/assets`, posters under `<root>/posters`, the index in one JSON file."""

    def __init__(self, root: Path, max_bytes: int, encoders: Sequence[str] = ()) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.encoders = tuple(encoders)  # the board's H.264 encoders, for clips to transcode
        self.assets_dir = root / "assets"
        self.posters_dir = root / "posters"
        self.incoming = root / "incoming"
        self.partial = root / "partial"
        for directory in (self.assets_dir, self.posters_dir, self.incoming, self.partial):
            directory.mkdir(parents=True, exist_ok=True)
        self._writer = threading.Lock()  # one writer at a time; readers never take it
        self._view = StoreView()
        self._accessed: dict[str, float] = {}  # last_access set by `touch` since the clip was added
        self._wanted: dict[str, int] = {}  # manifest clip -> its rank (0 = highest priority)
        self.facts = FactsStore(root)  # titles, exclusive, release windows (edged.guest.clips)
        self._load()
        self.facts.lost_on(self._current())  # an unreadable facts file: these are withheld

    # -- index ---------------------------------------------------------------------------------

    def _load(self) -> None:
        for stray in self.incoming.iterdir():  # a crash during an ingest: never served, removed
            stray.unlink(missing_ok=True)
        path = self.root / INDEX
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            document = {"assets": []}
        except (OSError, ValueError) as error:
            logger.error("asset index %s unreadable (%s): starting empty", path, error)
            document = {"assets": []}
        assets: list[Asset] = []
        for entry in document.get("assets", []):
            try:
                asset = Asset(**entry)
            except TypeError:
                continue
            if self.path(asset.name).exists():
                assets.append(asset)
        heads = {asset.name: self._head(asset) for asset in assets if asset.pinned}
        self._view = StoreView().changed(put=assets, heads=heads)

    def _save(self) -> None:
        document = {"assets": [asdict(asset) for asset in self._current().values()]}
        write_atomically(self.root / INDEX, json.dumps(document, indent=1).encode())

    def _current(self) -> dict[str, Asset]:
        """The clips now, with the access times `touch` noted."""
        return {name: self._seen(asset) for name, asset in self._view.assets.items()}

    def _seen(self, asset: Asset) -> Asset:
        accessed = self._accessed.get(asset.name)
        return asset if accessed is None else replace(asset, last_access=accessed)

    # -- reading (never blocks) ----------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.assets_dir / f"{name}.mp4"

    def poster_path(self, name: str) -> Path:
        return self.posters_dir / f"{name}.jpg"

    def staging_path(self, name: str) -> Path:
        """A new file to receive clip `name`'s bytes before `add` (a crash's leftover is removed
        at start-up)."""
        return self.incoming / f"put-{name}-{os.getpid()}-{time.monotonic_ns()}"

    def get(self, name: str) -> Asset | None:
        asset = self._view.assets.get(name)
        return None if asset is None else self._seen(asset)

    def known(self, name: str) -> Asset | None:
        """Clip `name` as it was added, without the access time `touch` noted since: for a
        request that needs its size and pin only (a crowd asks often; `get` copies the clip)."""
        return self._view.assets.get(name)

    def assets(self) -> list[Asset]:
        return sorted(self._current().values(), key=lambda a: (not a.pinned, a.name))

    def hot(self, name: str) -> bytes | None:
        """The first-frame bytes of a pinned clip, held in memory."""
        return self._view.hot.get(name)

    def touch(self, name: str, now: float | None = None) -> None:
        """Note a clip was used (eviction goes least recently used first); saved with the next
        change of the index."""
        if name in self._view.assets:
            self._accessed[name] = now or time.time()

    @property
    def total_bytes(self) -> int:
        return sum(asset.size for asset in self._view.assets.values())

    # -- writing (blocks: call it in a thread) -------------------------------------------------

    def _head(self, asset: Asset) -> bytes:
        with self.path(asset.name).open("rb") as handle:
            return handle.read(asset.head_size)

    def add(
        self, source: Path, name: str, *, pin: bool, origin: str, origin_sha256: str = ""
    ) -> Asset:
        """Validate and prepare `source`, then publish it atomically under `name`."""
        if not valid_name(name):
            raise PrepareError(
                f"asset name {name!r} not allowed: use letters, digits, '.', '_', '-' (max 128)"
            )
        staged = self.incoming / f"{name}.{os.getpid()}.{threading.get_ident()}.mp4"
        try:
            prepared = prepare(source, staged, self.encoders)
            if prepared.transcoded:
                logger.info("%s transcoded to H.264 with %s", name, prepared.encoder)
            with staged.open("rb+") as handle:
                os.fsync(handle.fileno())
            sha256 = file_sha256(staged)
            write_atomically(self.poster_path(name), prepared.poster)
            now = time.time()
            asset = Asset(
                name=name,
                sha256=sha256,
                size=staged.stat().st_size,
                duration=prepared.duration,
                video_codec=prepared.video_codec,
                audio_codec=prepared.audio_codec,
                width=prepared.width,
                height=prepared.height,
                pinned=pin,
                source=origin,
                added=now,
                last_access=now,
                head_size=prepared.head_size,
                transcoded=prepared.transcoded,
                origin_sha256=origin_sha256,
            )
            with self._writer:
                os.replace(staged, self.path(name))
                head = self._head(asset) if pin else None
                self._accessed.pop(name, None)
                self._view = self._view.changed(put=[asset], heads={name: head})
                self._evict(spare=name)
                self._save()
        finally:
            staged.unlink(missing_ok=True)
        logger.info(
            "asset %s ready: %d bytes, %.1f s%s%s",
            name,
            asset.size,
            asset.duration,
            ", pinned" if pin else "",
            ", transcoded" if asset.transcoded else "",
        )
        return asset

    def listed(self, name: str) -> bool:
        """Whether the manifest's last read lists clip `name` (never before the first read)."""
        return name in self._wanted

    def want(self, names: Sequence[str]) -> None:
        """The manifest's clips in priority order: evicted only after every other unpinned clip,
        the lowest priority first."""
        with self._writer:
            self._wanted = {name: rank for rank, name in enumerate(names)}

    def set_pinned(self, name: str, pinned: bool) -> Asset | None:
        with self._writer:
            asset = self.get(name)
            if asset is None:
                return None
            asset = replace(asset, pinned=pinned)
            head = self._head(asset) if pinned else None
            self._view = self._view.changed(put=[asset], heads={name: head})
            self._save()
            return asset

    def remove(self, name: str) -> bool:
        with self._writer:
            if name not in self._view.assets:
                return False
            self._view = self._view.changed(drop=[name])  # no reader finds it before it goes
            self._accessed.pop(name, None)
            self.path(name).unlink(missing_ok=True)
            self.poster_path(name).unlink(missing_ok=True)
            self._save()
            self.facts.gone([name])
        return True

    def evict(self, spare: str = "") -> list[str]:
        """Unpinned clips go, in `eviction_order`, until the store fits its cap."""
        with self._writer:
            return self._evict(spare)

    def _evict(self, spare: str) -> list[str]:
        assets = self._current()
        total = sum(asset.size for asset in assets.values())
        evicted: list[Asset] = []
        for asset in eviction_order(assets.values(), self._wanted, spare):
            if total <= self.max_bytes:
                break
            total -= asset.size
            evicted.append(asset)
        if not evicted:
            return []
        self._view = self._view.changed(drop=[asset.name for asset in evicted])
        for asset in evicted:
            self._accessed.pop(asset.name, None)
            self.path(asset.name).unlink(missing_ok=True)
            self.poster_path(asset.name).unlink(missing_ok=True)
            logger.info(
                "asset %s evicted (%s, %d bytes)",
                asset.name,
                "lowest manifest priority" if asset.name in self._wanted else "least used",
                asset.size,
            )
        self._save()
        self.facts.gone(asset.name for asset in evicted)
        return [asset.name for asset in evicted]

    def summary(self) -> dict[str, Any]:
        assets = self.assets()
        return {
            "bytes": sum(a.size for a in assets),
            "max_bytes": self.max_bytes,
            "assets": [asdict(a) for a in assets],
        }

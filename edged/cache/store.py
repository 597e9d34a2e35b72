"""The asset store: prepared clips on disk with an index, a size cap with eviction (pinned
clips stay; other clips before the manifest's, least recently used first, then the manifest's
from its lowest priority up), atomic writes, and the first-frame bytes of pinned clips in memory.

Blocking (file I/O, PyAV): call it in a thread. One lock guards the index.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

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
        self._lock = threading.RLock()
        self._assets: dict[str, Asset] = {}
        self._hot: dict[str, bytes] = {}
        self._wanted: dict[str, int] = {}  # manifest clip -> its rank (0 = highest priority)
        self._index_mtime = 0
        self._checked = 0.0
        self._load()

    # -- index ---------------------------------------------------------------------------------

    def _load(self) -> None:
        for stray in self.incoming.iterdir():  # a crash during an ingest: never served, removed
            stray.unlink(missing_ok=True)
        path = self.root / INDEX
        try:
            self._index_mtime = path.stat().st_mtime_ns
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            document = {"assets": []}
        except (OSError, ValueError) as error:
            logger.error("asset index %s unreadable (%s): starting empty", path, error)
            document = {"assets": []}
        for entry in document.get("assets", []):
            try:
                asset = Asset(**entry)
            except TypeError:
                continue
            if self.path(asset.name).exists():
                self._assets[asset.name] = asset
                if asset.pinned:
                    self._warm(asset)

    def _save(self) -> None:
        document = {"assets": [asdict(asset) for asset in self._assets.values()]}
        write_atomically(self.root / INDEX, json.dumps(document, indent=1).encode())
        self._index_mtime = (self.root / INDEX).stat().st_mtime_ns

    def _follow_index(self) -> None:
        """Pick up clips another process (`edged cache add`) wrote; looked at once a second."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = (self.root / INDEX).stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._index_mtime:
            with self._lock:
                self._assets.clear()
                self._hot.clear()
                self._load()

    # -- reading -------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.assets_dir / f"{name}.mp4"

    def poster_path(self, name: str) -> Path:
        return self.posters_dir / f"{name}.jpg"

    def get(self, name: str) -> Asset | None:
        self._follow_index()
        with self._lock:
            return self._assets.get(name)

    def assets(self) -> list[Asset]:
        self._follow_index()
        with self._lock:
            return sorted(self._assets.values(), key=lambda a: (not a.pinned, a.name))

    def hot(self, name: str) -> bytes | None:
        """The first-frame bytes of a pinned clip, held in memory."""
        return self._hot.get(name)

    def touch(self, name: str, now: float | None = None) -> None:
        with self._lock:
            asset = self._assets.get(name)
            if asset is not None:
                self._assets[name] = replace(asset, last_access=now or time.time())

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(asset.size for asset in self._assets.values())

    # -- writing -------------------------------------------------------------------------------

    def _warm(self, asset: Asset) -> None:
        with self.path(asset.name).open("rb") as handle:
            self._hot[asset.name] = handle.read(asset.head_size)

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
            with self._lock:
                os.replace(staged, self.path(name))
                self._assets[name] = asset
                self._hot.pop(name, None)
                if pin:
                    self._warm(asset)
                self.evict(spare=name)
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

    def want(self, names: Sequence[str]) -> None:
        """The manifest's clips in priority order: evicted only after every other unpinned clip,
        the lowest priority first."""
        with self._lock:
            self._wanted = {name: rank for rank, name in enumerate(names)}

    def set_pinned(self, name: str, pinned: bool) -> Asset | None:
        with self._lock:
            asset = self._assets.get(name)
            if asset is None:
                return None
            asset = replace(asset, pinned=pinned)
            self._assets[name] = asset
            if pinned:
                self._warm(asset)
            else:
                self._hot.pop(name, None)
            self._save()
            return asset

    def remove(self, name: str) -> bool:
        with self._lock:
            if self._assets.pop(name, None) is None:
                return False
            self._hot.pop(name, None)
            self.path(name).unlink(missing_ok=True)
            self.poster_path(name).unlink(missing_ok=True)
            self._save()
        return True

    def evict(self, spare: str = "") -> list[str]:
        """Unpinned clips go, in `eviction_order`, until the store fits its cap."""
        evicted = []
        with self._lock:
            total = sum(asset.size for asset in self._assets.values())
            for asset in eviction_order(self._assets.values(), self._wanted, spare):
                if total <= self.max_bytes:
                    break
                self._assets.pop(asset.name)
                self.path(asset.name).unlink(missing_ok=True)
                self.poster_path(asset.name).unlink(missing_ok=True)
                total -= asset.size
                evicted.append(asset.name)
                logger.info(
                    "asset %s evicted (%s, %d bytes)",
                    asset.name,
                    "lowest manifest priority" if asset.name in self._wanted else "least used",
                    asset.size,
                )
            if evicted:
                self._save()
        return evicted

    def summary(self) -> dict[str, Any]:
        assets = self.assets()
        return {
            "bytes": sum(a.size for a in assets),
            "max_bytes": self.max_bytes,
            "assets": [asdict(a) for a in assets],
        }

"""Thin adapters from the daemon's subsystems to the narrow interfaces the routes use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edged.metrics import LiveMetrics
from edged.upload.naming import ObjectNaming
from edged.upload.report import upload_report
from edged.upload.state import FileState
from edged.upload.uploader import Uploader

if TYPE_CHECKING:
    from edged.media.live import LiveHub
    from edged.media.webrtc import WhepSessions

logger = logging.getLogger(__name__)


class SyncOff(ValueError):
    """An upload was asked for while no upstream is configured."""


class LazyWhep:
    """The WHEP sessions, made with the first viewer: aiortc costs ~30 MiB a box without
    viewers keeps. `aclose()` on shutdown; it does nothing when no viewer ever came."""

    def __init__(
        self, max_viewers: int, ice_addresses: Collection[str], metrics: LiveMetrics
    ) -> None:
        self._max_viewers = max_viewers
        self._ice_addresses = ice_addresses
        self._metrics = metrics
        self._sessions: WhepSessions | None = None

    def sessions(self) -> WhepSessions:
        if self._sessions is None:
            from edged.media import webrtc

            webrtc.restrict_ice_addresses(self._ice_addresses)
            self._sessions = webrtc.WhepSessions(self._max_viewers, self._metrics)
            logger.info("WebRTC loaded for the first viewer")
        return self._sessions

    async def aclose(self) -> None:
        if self._sessions is not None:
            await self._sessions.close_all()


class LiveStreams(Protocol):
    """What the live view needs of the media side (MediaManager is one)."""

    @property
    def streams(self) -> Mapping[str, Any]: ...

    def hub(self, name: str) -> LiveHub | None: ...

    def request_keyframe(self, name: str) -> None: ...


class MediaLiveView:
    """`LiveView` over the running streams and the lazily loaded WHEP sessions."""

    def __init__(self, media: LiveStreams, whep: LazyWhep) -> None:
        self._media = media
        self._whep = whep

    def stream_names(self) -> list[str]:
        return sorted(self._media.streams)

    def hub(self, stream: str) -> LiveHub | None:
        return self._media.hub(stream)

    def request_keyframe(self, stream: str) -> None:
        self._media.request_keyframe(stream)

    def whep(self) -> WhepSessions:
        return self._whep.sessions()


class JournalUploads:
    """`UploadQueue` over the uploader; object keys follow DESIGN.md's layout under the naming
    in force (`naming` is asked at each call: a reload may change the event)."""

    def __init__(
        self, uploader: Uploader, naming: Callable[[], ObjectNaming], data_dir: Path
    ) -> None:
        self._uploader = uploader
        self._naming = naming
        self._data_dir = data_dir

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def configured(self) -> bool:
        return self._uploader.configured

    @property
    def online(self) -> bool:
        return self._uploader.online

    async def report(self) -> dict[str, Any]:
        report = await asyncio.to_thread(upload_report, self._uploader.journal)
        report["upstream"] = {"configured": self.configured, "up": self.online}
        return report

    async def enqueue(self, path: Path, stream: str, kind: str) -> int:
        if not self._uploader.configured:
            raise SyncOff("sync is off: no [upstream] endpoint is configured; the file stays here")
        facts = await asyncio.to_thread(path.stat)
        when = datetime.fromtimestamp(facts.st_mtime, UTC)
        key = self._naming().key(stream, when, path.name)
        return await self._uploader.enqueue(path, key, kind=kind)

    async def retry(self, file_id: int) -> FileState | None:
        if await asyncio.to_thread(self._uploader.journal.get, file_id) is None:
            return None
        return await self._uploader.retry(file_id)

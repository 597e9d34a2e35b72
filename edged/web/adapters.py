"""Thin adapters from the daemon's subsystems to the narrow interfaces the routes use."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edged.metrics import LiveMetrics
from edged.upload.naming import ObjectNaming
from edged.upload.report import upload_report
from edged.upload.state import FileState
from edged.upload.uploader import Uploader
from edged.web.context import WhepRefused

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
        self,
        max_viewers: int,
        ice_addresses: Collection[str],
        metrics: LiveMetrics,
        *,
        ice_timeout: float | None = None,
    ) -> None:
        self._max_viewers = max_viewers
        self._ice_timeout = ice_timeout
        self._ice_addresses = ice_addresses
        self._metrics = metrics
        self._sessions: WhepSessions | None = None

    def sessions(self) -> WhepSessions:
        if self._sessions is None:
            from edged.media import webrtc

            webrtc.restrict_ice_addresses(self._ice_addresses)
            ice_timeout = webrtc.ICE_TIMEOUT if self._ice_timeout is None else self._ice_timeout
            self._sessions = webrtc.WhepSessions(
                self._max_viewers, self._metrics, ice_timeout=ice_timeout
            )
            logger.info("WebRTC loaded for the first viewer")
        return self._sessions

    def loaded(self) -> WhepSessions | None:
        """The sessions if a viewer ever came, without loading aiortc."""
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


class SoundSource(Protocol):
    """What a stream's pipeline tells of its sound (StreamPipeline is one)."""

    @property
    def has_sound(self) -> bool: ...


class RunningStream(Protocol):
    """A running stream as the live view sees it (a MediaManager's StreamEntry is one)."""

    @property
    def pipeline(self) -> SoundSource: ...


def has_sound(entry: RunningStream | None) -> bool:
    """Whether a running stream has sound now; no such stream (None) has none."""
    return entry is not None and entry.pipeline.has_sound


# A player fetches every segment as it appears: one that fetched none for this many segment
# durations has left (or stalled long enough not to count).
HLS_VIEWER_SEGMENTS = 3


class MediaLiveView:
    """`LiveView` over the running streams' hubs and the lazily loaded WHEP sessions."""

    def __init__(self, media: LiveStreams, whep: LazyWhep) -> None:
        self._media = media
        self._whep = whep

    def stream_names(self) -> list[str]:
        return sorted(self._media.streams)

    def has_stream(self, stream: str) -> bool:
        return self._media.hub(stream) is not None

    def playlist(self, stream: str) -> str | None:
        hub = self._media.hub(stream)
        window = hub.hls.window if hub is not None else None  # one read: the muxer replaces it
        return window.playlist() if window is not None and window.segments else None

    def init_segment(self, stream: str, run: str) -> bytes | None:
        hub = self._media.hub(stream)
        return (hub.hls.init_of(run) or None) if hub is not None else None

    def segment(self, stream: str, run: str, sequence: int) -> bytes | None:
        hub = self._media.hub(stream)
        segment = hub.hls.segment(run, sequence) if hub is not None else None
        return segment.data if segment is not None else None

    def note_hls_client(self, stream: str, client: str) -> None:
        hub = self._media.hub(stream)
        if hub is not None:
            window = HLS_VIEWER_SEGMENTS * hub.hls.target_duration
            hub.hls_viewers.seen(client, time.monotonic(), window)

    def hls_viewer_count(self, stream: str) -> int:
        # From the scrape's thread: one dict lookup, and HlsViewers has its lock.
        hub = self._media.hub(stream)
        return hub.hls_viewers.count(time.monotonic()) if hub is not None else 0

    async def poster(self, stream: str) -> bytes | None:
        hub = self._media.hub(stream)
        keyframe = hub.gop.keyframe if hub is not None else None
        if hub is None or keyframe is None:
            return None
        return await hub.poster.jpeg(keyframe, hub.extradata, time.monotonic())

    async def whep_offer(self, stream: str, offer: str) -> tuple[str, str]:
        hub = self._media.hub(stream)
        if hub is None:
            raise WhepRefused(404, f"no live stream {stream!r} on this box")
        sessions = self._whep.sessions()
        from edged.media.webrtc import WhepError  # loaded by sessions() above

        try:
            return await sessions.create(
                stream,
                hub,
                offer,
                lambda: self._media.request_keyframe(stream),
                sound=has_sound(self._media.streams.get(stream)),
            )
        except WhepError as error:
            raise WhepRefused(error.status, str(error), retry_after=error.retry_after) from error

    async def whep_delete(self, stream: str, session: str) -> bool:
        sessions = self._whep.loaded()  # no viewer ever came: no session to end
        return sessions is not None and await sessions.delete(stream, session)


def with_restream(
    status: Callable[[], list[dict[str, Any]]],
    destinations: Callable[[str], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The streams' status, each with its restream destinations (state and last error)."""
    return [{**entry, "restream": destinations(entry["stream"])} for entry in status()]


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
        report = await asyncio.to_thread(
            lambda: upload_report(self._uploader.journal, newest_first=self._uploader.newest_first)
        )
        report["upstream"] = {"configured": self.configured, "up": self.online}
        pool = self._uploader.pool
        report["uplinks"] = pool.describe() if pool is not None else []
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

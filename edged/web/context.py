"""What the web layer needs from the daemon: one narrow typed interface per concern, each under
its own `web.AppKey`. A key that is absent means that subsystem is not running (503 or 404)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web

from edged.config import GuestConfig
from edged.errors import EdgedError
from edged.metrics import Metrics

if TYPE_CHECKING:
    from edged.cache.facts import FactsStore
    from edged.cache.store import Asset
    from edged.cache.upstream import Download
    from edged.clips.jobstate import ClipRequest
    from edged.upload.state import FileState

T = TypeVar("T")


@dataclass
class Identity:
    """Who this box is, as pages and /api/v1/status show it. The daemon changes `event` on a
    reload and sets `advertised_name` and `landing_url` once mDNS has answered."""

    version: str
    node: str
    event: str
    advertised_name: str = ""  # `<name>.local` on the LAN, renamed on a conflict; "" without mDNS
    landing_url: str = ""
    typed_url: str = ""  # `http://<name>.local:<port>/`, the second form a guest may type
    started_monotonic: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)


class Readiness:
    """Which subsystems have started and which supervised tasks keep failing."""

    def __init__(self, failing_tasks: Callable[[], Mapping[str, str]] = dict) -> None:
        self.subsystems: dict[str, bool] = {}
        self._failing_tasks = failing_tasks

    def starting(self, name: str) -> None:
        self.subsystems[name] = False

    def started(self, name: str) -> None:
        self.subsystems[name] = True

    def failing_tasks(self) -> dict[str, str]:
        """Task name -> its last error."""
        return dict(self._failing_tasks())

    @property
    def ready(self) -> bool:
        return bool(self.subsystems) and all(self.subsystems.values()) and not self.failing_tasks()


class Reloader(Protocol):
    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; ConfigError when it is invalid (nothing changes then)."""
        ...


class WhepRefused(EdgedError):
    """A WHEP offer the box cannot take: `status` is the HTTP status to answer with, and
    `retry_after` the seconds after which trying again may succeed."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class LiveView(Protocol):
    """The live streams as the live routes and the landing page use them, asked per stream.
    A stream that is not running answers None (or False) everywhere."""

    def stream_names(self) -> list[str]: ...

    def has_stream(self, stream: str) -> bool: ...

    def playlist(self, stream: str) -> str | None:
        """The HLS media playlist; None until the stream has a segment."""
        ...

    def init_segment(self, stream: str, run: str) -> bytes | None:
        """The fMP4 initialisation segment of the stream's `run`; None until the muxer has
        written it, or for another run (the stream restarted since)."""
        ...

    def segment(self, stream: str, run: str, sequence: int) -> bytes | None:
        """A media segment the playlist lists; None once dropped from the window or not yet, or
        of another run."""
        ...

    def note_hls_client(self, stream: str, client: str) -> None:
        """`client` (an address) fetched a segment of `stream` just now."""
        ...

    def hls_viewer_count(self, stream: str) -> int:
        """Clients that fetched a segment of `stream` lately (HLS has no session); asked by the
        metrics scrape, from a worker thread."""
        ...

    async def poster(self, stream: str) -> bytes | None:
        """The latest keyframe as JPEG; None before the first keyframe, MediaError when it
        cannot be decoded."""
        ...

    async def whep_offer(self, stream: str, offer: str) -> tuple[str, str]:
        """(session id, SDP answer) for a WebRTC viewer's SDP offer; WhepRefused otherwise."""
        ...

    async def whep_delete(self, stream: str, session: str) -> bool:
        """End a WebRTC viewer's session; False when there is no such session."""
        ...


class ClipStore(Protocol):
    """The clip cache as the asset routes use it (AssetStore is one): lookups on the loop,
    writes and summaries through threads."""

    def staging_path(self, name: str) -> Path:
        """A new file for receiving the bytes of clip `name` before `add` (removed at start-up
        if a crash leaves it behind)."""
        ...

    @property
    def max_bytes(self) -> int: ...

    def get(self, name: str) -> Asset | None: ...

    def known(self, name: str) -> Asset | None: ...

    def assets(self) -> list[Asset]: ...

    def path(self, name: str) -> Path: ...

    def poster_path(self, name: str) -> Path: ...

    def hot(self, name: str) -> bytes | None: ...

    def touch(self, name: str, now: float | None = None) -> None: ...

    def summary(self) -> dict[str, Any]: ...

    def add(self, source: Path, name: str, *, pin: bool, origin: str) -> Asset: ...

    def remove(self, name: str) -> bool: ...

    @property
    def facts(self) -> FactsStore: ...


class PullSource(Protocol):
    """Pull-through: a clip not cached yet, fetched from upstream while a phone waits."""

    async def open(self, name: str) -> Download | None: ...


class UploadQueue(Protocol):
    """The upload queue as the uploads API uses it."""

    @property
    def data_dir(self) -> Path:
        """Whose spool/, cache/ and outbox/ files may be queued."""
        ...

    @property
    def configured(self) -> bool: ...

    @property
    def online(self) -> bool: ...

    async def report(self) -> dict[str, Any]:
        """The queue, its recent events and the upstream's state, JSON-ready."""
        ...

    async def enqueue(self, path: Path, stream: str, kind: str) -> int:
        """The new upload id; ValueError for a name no object key can hold or with sync off."""
        ...

    async def retry(self, file_id: int) -> FileState | None:
        """The failed upload back in the queue; None when there is no such upload."""
        ...


class ClipJobQueue(Protocol):
    """The clip job queue as the clips and jobs routes use it (ClipJobs is one)."""

    @property
    def default_mode(self) -> str:
        """The vertical variant's mode when a request names none ([clips] vertical_mode)."""
        ...

    async def submit(self, request: ClipRequest) -> dict[str, Any]:
        """The queued job, JSON-ready; ClipRefused when its range cannot be cut."""
        ...

    async def jobs(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def job(self, job_id: int) -> dict[str, Any] | None: ...


class RestreamControl(Protocol):
    """The restream destinations as the restream routes use them (Restreamer is one); every
    answer shows URLs masked, never a stream key."""

    def status(self) -> list[dict[str, Any]]: ...

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any] | None:
        """Switch a destination on or off; its status after, None when there is no such one."""
        ...


IDENTITY = web.AppKey("identity", Identity)
READINESS = web.AppKey("readiness", Readiness)
METRICS = web.AppKey("metrics", Metrics)
ADMIN_TOKEN = web.AppKey("admin_token", str)
RELOADER: web.AppKey[Reloader] = web.AppKey("reloader")
DEVICE_REPORT: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("device_report")
STREAM_STATUS: web.AppKey[Callable[[], list[dict[str, Any]]]] = web.AppKey("stream_status")
REPLICATION: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("replication")
LIVE: web.AppKey[LiveView] = web.AppKey("live")
CLIPS: web.AppKey[ClipStore] = web.AppKey("clips")
PULL: web.AppKey[PullSource] = web.AppKey("pull_through")
UPLOADS: web.AppKey[UploadQueue] = web.AppKey("uploads")
RESTREAM: web.AppKey[RestreamControl] = web.AppKey("restream")
GUEST = web.AppKey("guest", GuestConfig)  # [guest]: what the guest pages show
DATA_DIR = web.AppKey("data_dir", Path)  # where guest files (the logo) are kept
CLIP_JOBS: web.AppKey[ClipJobQueue] = web.AppKey("clip_jobs")


@dataclass
class WebServices:
    """What `create_app` puts under the keys above; None: that subsystem is not running."""

    identity: Identity
    readiness: Readiness
    metrics: Metrics
    admin_token: str
    reloader: Reloader
    device_report: Callable[[], dict[str, Any]] | None = None
    stream_status: Callable[[], list[dict[str, Any]]] | None = None
    replication: Callable[[], dict[str, Any]] | None = None  # the manifest replicator's last pass
    live: LiveView | None = None
    clips: ClipStore | None = None
    pull: PullSource | None = None
    uploads: UploadQueue | None = None
    restream: RestreamControl | None = None
    guest: GuestConfig = field(default_factory=GuestConfig)
    data_dir: Path | None = None
    clip_jobs: ClipJobQueue | None = None

    def install(self, app: web.Application) -> None:
        app[IDENTITY] = self.identity
        app[READINESS] = self.readiness
        app[METRICS] = self.metrics
        app[ADMIN_TOKEN] = self.admin_token
        app[RELOADER] = self.reloader
        _offer(app, DEVICE_REPORT, self.device_report)
        _offer(app, STREAM_STATUS, self.stream_status)
        _offer(app, REPLICATION, self.replication)
        _offer(app, LIVE, self.live)
        _offer(app, CLIPS, self.clips)
        _offer(app, PULL, self.pull)
        _offer(app, UPLOADS, self.uploads)
        _offer(app, RESTREAM, self.restream)
        app[GUEST] = self.guest
        _offer(app, DATA_DIR, self.data_dir)
        _offer(app, CLIP_JOBS, self.clip_jobs)


def _offer(app: web.Application, key: web.AppKey[T], value: T | None) -> None:
    if value is not None:
        app[key] = value

"""What the web layer needs from the daemon, handed over as one typed object."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edged.cache.store import AssetStore
from edged.cache.upstream import PullThrough
from edged.media.streams import MediaManager
from edged.metrics import Metrics
from edged.upload.uploader import Uploader


async def _no_uploader(path: Path, stream: str, kind: str) -> int:
    raise ValueError("the uploader is not running")


@dataclass
class WebContext:
    """The daemon's facts and callbacks the handlers use; the daemon owns and updates it."""

    version: str
    node: str
    event: str
    metrics: Metrics
    admin_token: str
    reload: Callable[[], Awaitable[dict[str, Any]]]
    data_dir: Path
    uploader: Uploader | None = None
    device_report: Callable[[], dict[str, Any]] | None = None
    stream_status: Callable[[], list[dict[str, Any]]] | None = None
    media: MediaManager | None = None
    landing_url: str = ""
    advertised_name: str = ""  # `<name>.local` on the LAN, renamed on a conflict; "" without mDNS
    assets: AssetStore | None = None
    pull: PullThrough | None = None
    whep: Callable[[], WhepSessions] | None = None  # loads aiortc on first use
    # (file, stream, kind) -> upload id; the daemon knows the object key layout.
    enqueue_upload: Callable[[Path, str, str], Awaitable[int]] = field(default=_no_uploader)
    subsystems: dict[str, bool] = field(default_factory=dict)
    failing_tasks: Callable[[], dict[str, str]] = field(default=dict)  # name -> last error
    replication: Callable[[], dict[str, Any]] | None = None  # the manifest replicator's last pass
    started_monotonic: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return bool(self.subsystems) and all(self.subsystems.values()) and not self.failing_tasks()


if TYPE_CHECKING:
    from edged.media.webrtc import WhepSessions

CONTEXT = web.AppKey("edged_context", WebContext)

"""One way for in-process web tests to build what the daemon hands the web layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from edged.metrics import Metrics
from edged.web.adapters import LazyWhep, LiveStreams, MediaLiveView
from edged.web.context import Identity, Readiness, WebServices

TOKEN = "t" * 43


async def no_reload() -> dict[str, Any]:
    return {}


class CallReload:
    """A Reloader that calls a test's function."""

    def __init__(self, reload: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._reload = reload

    async def reload(self) -> dict[str, Any]:
        return await self._reload()


def web_context(
    data_dir: Path,
    *,
    node: str = "box",
    event: str = "gala",
    token: str = TOKEN,
    reload: Callable[[], Awaitable[dict[str, Any]]] = no_reload,
    advertised_name: str = "",
    landing_url: str = "",
    failing_tasks: Callable[[], Mapping[str, str]] = dict,
    subsystems: Mapping[str, bool] | None = None,
    **parts: Any,
) -> WebServices:
    """The web services with real metrics; `parts` set the optional ones (clips, live, ...)."""
    readiness = Readiness(failing_tasks)
    readiness.subsystems.update(subsystems or {})
    return WebServices(
        Identity("0.1.0", node, event, advertised_name=advertised_name, landing_url=landing_url),
        readiness,
        Metrics(version="0.1.0", node=node, event=event, data_dir=data_dir),
        token,
        CallReload(reload),
        **parts,
    )


def live_view(media: LiveStreams, metrics: Metrics, max_viewers: int = 20) -> MediaLiveView:
    """The daemon's live view over `media` (a MediaManager), WebRTC loading on first use."""
    return MediaLiveView(media, LazyWhep(max_viewers, (), metrics.live))

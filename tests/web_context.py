"""One way for in-process web tests to build the daemon's WebContext (five tests built it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edged.metrics import Metrics
from edged.web.context import WebContext

TOKEN = "t" * 43


async def no_reload() -> dict[str, Any]:
    return {}


def web_context(
    data_dir: Path,
    *,
    node: str = "box",
    event: str = "gala",
    token: str = TOKEN,
    reload: Callable[[], Awaitable[dict[str, Any]]] = no_reload,
    **fields: Any,
) -> WebContext:
    """A WebContext with real metrics; `fields` set the optional parts (assets, uploader, ...)."""
    return WebContext(
        version="0.1.0",
        node=node,
        event=event,
        metrics=Metrics(version="0.1.0", node=node, event=event, data_dir=data_dir),
        admin_token=token,
        reload=reload,
        data_dir=data_dir,
        **fields,
    )

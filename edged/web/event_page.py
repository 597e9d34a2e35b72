"""The event page's moving parts: the guests' tiles JSON (the landing page fetches it every
10 s), its views counted per campaign, and the event's logo (uploaded with the admin token,
served to guests from memory)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edged.fileio import write_atomically
from edged.guest.campaigns import campaign_of, label, labels
from edged.guest.clips import ClipCounts
from edged.guest.members import signed_up
from edged.guest.page import (
    LOGO_MAX_BYTES,
    Clip,
    Tile,
    build_tiles,
    display_title,
    logo_type,
    shown,
    tiles_document,
)
from edged.web.context import CLIPS, DATA_DIR, GUEST, IDENTITY, LIVE, METRICS

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

TILES_PATH = "/api/v1/guest/tiles"
REFRESH_MS = 10_000  # how often the landing page asks for the tiles again
LOGO_API = "/api/v1/guest/logo"
LOGO_PATH = "/guest/logo"
LOGO_DIR = "guest"  # under the data dir, mode 0700
LOGO_FILES = {"image/png": "logo.png", "image/jpeg": "logo.jpg"}
# A logo's URL carries its digest (?v=), so a phone may keep it for a day.
LOGO_CACHE = "public, max-age=86400"


@dataclass(frozen=True)
class Logo:
    body: bytes
    content_type: str
    etag: str

    @property
    def url(self) -> str:
        return f"{LOGO_PATH}?v={self.etag}"


class LogoHolder:
    """The event's logo as guests get it: read from the data dir at start, kept in memory."""

    def __init__(self, data_dir: Path | None) -> None:
        self.directory = data_dir / LOGO_DIR if data_dir is not None else None
        self.current: Logo | None = None

    def load(self) -> None:
        """Blocking: the stored logo, if any (call in a thread)."""
        if self.directory is None:
            return
        for content_type, file_name in LOGO_FILES.items():
            try:
                body = (self.directory / file_name).read_bytes()
            except FileNotFoundError:
                continue
            self.current = _logo(body, content_type)
            return

    def store(self, body: bytes, content_type: str) -> Logo:
        """Blocking: the new logo written (0600, atomically), the other type's file removed."""
        if self.directory is None:
            raise RuntimeError("no data dir to keep a logo in")
        self.directory.mkdir(mode=0o700, exist_ok=True)
        write_atomically(self.directory / LOGO_FILES[content_type], body, mode=0o600)
        for other_type, file_name in LOGO_FILES.items():
            if other_type != content_type:
                (self.directory / file_name).unlink(missing_ok=True)
        self.current = _logo(body, content_type)
        return self.current

    def remove(self) -> bool:
        """Blocking: the logo gone; False when there was none."""
        had = self.current is not None
        if self.directory is not None:
            for file_name in LOGO_FILES.values():
                (self.directory / file_name).unlink(missing_ok=True)
        self.current = None
        return had


def _logo(body: bytes, content_type: str) -> Logo:
    return Logo(body, content_type, hashlib.sha256(body).hexdigest()[:16])


LOGO = web.AppKey("guest_logo", LogoHolder)


def install(app: web.Application) -> None:
    """The routes; as the app starts, the campaigns' counters set and the logo read from the
    data dir."""
    holder = app[LOGO] = LogoHolder(app.get(DATA_DIR))

    async def load(_: web.Application) -> None:
        await asyncio.to_thread(holder.load)

    app.on_startup.append(count_campaigns)
    app.on_startup.append(load)
    app.router.add_routes(routes)


# -- the tiles ---------------------------------------------------------------------------------


def clip_counts(request: web.Request) -> dict[str, ClipCounts]:
    """The clips' watch-page reports since the start, for sinking."""
    return request.app[METRICS].clips.counts()


def page_title(request: web.Request) -> str:
    return display_title(request.app[GUEST].title, request.app[IDENTITY].event)


def guest_tiles(request: web.Request) -> list[Tile]:
    """What this guest may watch now: live streams, then the clips in their order."""
    live, store, guest = request.app.get(LIVE), request.app.get(CLIPS), request.app[GUEST]
    streams = live.stream_names() if live is not None else []
    clips = (
        [Clip(a.name, store.facts.get(a.name), a.duration) for a in store.assets()]
        if store is not None
        else []
    )
    return build_tiles(
        streams,
        clips,
        now=time.time(),
        signed_up=signed_up(request),
        counts=clip_counts(request),
        min_retention_10s=guest.min_retention_10s,
        min_views=guest.min_views,
    )


def logo_url(request: web.Request) -> str:
    logo = request.app[LOGO].current
    return logo.url if logo is not None else ""


@routes.get(TILES_PATH)
async def tiles(request: web.Request) -> web.Response:
    """The landing page's refresh: the title and the tiles (no token, nothing about anyone)."""
    document = tiles_document(page_title(request), shown(guest_tiles(request)))
    return web.json_response(document, headers={"Cache-Control": "no-cache"})


# -- the visits --------------------------------------------------------------------------------


def count_visit(request: web.Request) -> str:
    """Count one view of the event page under its campaign (a configured name or none); the
    campaign's name, "" for none. The landing handler calls it once per page view."""
    name = campaign_of(request.query, request.app[GUEST].campaigns)
    request.app[METRICS].guest.visits.labels(label(name)).inc()
    return name


async def count_campaigns(app: web.Application) -> None:
    """Every configured campaign's counter at 0 from the start (rate() sees the first visit)."""
    app[METRICS].guest.campaigns(labels(app[GUEST].campaigns))


# -- the logo ----------------------------------------------------------------------------------


@routes.get(LOGO_PATH)
async def logo(request: web.Request) -> web.Response:
    current = request.app[LOGO].current
    if current is None:
        raise web.HTTPNotFound(text="no logo\n")
    headers = {"ETag": f'"{current.etag}"', "Cache-Control": LOGO_CACHE}
    if request.headers.get("If-None-Match", "") == f'"{current.etag}"':
        return web.Response(status=304, headers=headers)
    return web.Response(body=current.body, content_type=current.content_type, headers=headers)


@routes.put(LOGO_API)
async def put_logo(request: web.Request) -> web.Response:
    """PUT the PNG or JPEG bytes (token): the event page shows it beside its title."""
    holder = request.app[LOGO]
    if holder.directory is None:
        raise web.HTTPServiceUnavailable(text="no data dir to keep a logo in\n")
    body = await request.read()  # at most the app's client_max_size (1 MiB)
    try:
        content_type = logo_type(body)
    except ValueError as error:
        logger.info("refused a logo upload: %s", error)
        status = 413 if len(body) > LOGO_MAX_BYTES else 415
        return web.json_response({"error": str(error)}, status=status)
    stored = await asyncio.to_thread(holder.store, body, content_type)
    logger.info("event logo set (%s, %d bytes)", content_type, len(body))
    return web.json_response({"type": content_type, "bytes": len(body), "url": stored.url})


@routes.delete(LOGO_API)
async def delete_logo(request: web.Request) -> web.Response:
    holder = request.app[LOGO]
    if not await asyncio.to_thread(holder.remove):
        raise web.HTTPNotFound(text="no logo\n")
    logger.info("event logo removed")
    return web.json_response({"removed": True})

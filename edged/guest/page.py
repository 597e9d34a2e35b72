"""The event page as plain decisions: its title, its tiles and their order, what fits the page's
budget, and which logo files are taken. No I/O; time is passed in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from html import escape
from typing import Literal

from edged.guest.clips import HIDDEN, MEMBERS, ClipCounts, ClipFacts, guest_view, order_clips

# The budget of a guest page before its images (issue #16): the markup, style and script.
PAGE_BUDGET = 30 * 1024
# What a tile shows of a clip's description; the watch page has room for the rest.
DESCRIPTION_SHOWN = 140
# What a page keeps for its own markup, style and script; the tiles get the rest.
SHELL_RESERVE = 8 * 1024
JOIN_PATH = "/join"  # where a locked (exclusive) tile leads: the signup
# The event name the config ships with: no title for a guest to read.
UNNAMED_EVENT = "default"
FALLBACK_TITLE = "Watch"

LOGO_MAX_BYTES = 256 * 1024
LOGO_MAX_SIDE = 4096
LOGO_TYPES = ("image/png", "image/jpeg")

Kind = Literal["live", "clip"]


@dataclass(frozen=True)
class Tile:
    """One thing to watch, as the page and the guests' tiles JSON show it (no personal data)."""

    kind: Kind
    name: str
    title: str
    description: str
    href: str
    poster: str
    duration: str  # "1:05"; "" for a live stream or a clip of unknown length
    locked: bool = False  # exclusive: shown, played only after the guest signs up


@dataclass(frozen=True)
class Clip:
    """A clip in the cache with what the page needs of it."""

    name: str
    facts: ClipFacts
    duration: float  # seconds; 0 = not known


def display_title(title: str, event: str) -> str:
    """The page's title: `[guest] title`, else the event's name unless it is the shipped
    default (never the host name: a box's name means nothing to a guest)."""
    if title.strip():
        return title.strip()
    if event.strip() and event != UNNAMED_EVENT:
        return event.strip()
    return FALLBACK_TITLE


def clock(seconds: float) -> str:
    """A duration as a phone shows one: "0:07", "4:05", "1:02:03"; "" when not known."""
    if not seconds > 0:
        return ""
    whole = max(1, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word to at most `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "\u2026"


def live_tile(stream: str) -> Tile:
    return Tile("live", stream, stream, "", f"/live/{stream}", f"/live/{stream}/poster.jpg", "")


def build_tiles(
    streams: Sequence[str],
    clips: Sequence[Clip],
    *,
    now: float,
    signed_up: bool,
    counts: Mapping[str, ClipCounts],
    min_retention_10s: float,
    min_views: int,
) -> list[Tile]:
    """Live streams first, then the clips a guest may see (hidden ones left out, exclusive ones
    locked without a signup) in `order_clips`' order."""
    by_name = {clip.name: clip for clip in clips}
    order = order_clips([clip.name for clip in clips], counts, min_retention_10s, min_views)
    tiles = [live_tile(stream) for stream in streams]
    for name in order:
        clip = by_name[name]
        view = guest_view(clip.facts, now, signed_up)
        if view == HIDDEN:
            continue
        tiles.append(
            Tile(
                "clip",
                name,
                clip.facts.title,
                shorten(clip.facts.description, DESCRIPTION_SHOWN),
                JOIN_PATH if view == MEMBERS else f"/watch/{name}",
                f"/posters/{name}.jpg",
                clock(clip.duration),
                locked=view == MEMBERS,
            )
        )
    return tiles


def tile_html(tile: Tile) -> str:
    """One tile: the poster with its marks (LIVE, locked, duration, play), title, description."""
    marks = "<b class=l>LIVE</b>" if tile.kind == "live" else ""
    marks += "<b class=l>Sign up to watch</b>" if tile.locked else ""
    marks += f"<em class=d>{escape(tile.duration)}</em>" if tile.duration else ""
    text = f"<small>{escape(tile.description)}</small>" if tile.description else ""
    return (
        f'<a class=t href="{escape(tile.href)}"><div class=p><img src="{escape(tile.poster)}" '
        f'alt="" loading=lazy>{marks}</div><span class=n>{escape(tile.title)}</span>{text}</a>'
    )


def fitting(sizes: Sequence[int], room: int) -> int:
    """How many pieces of these sizes (in order) fit in `room` bytes."""
    used = 0
    for count, size in enumerate(sizes):
        used += size
        if used > room:
            return count
    return len(sizes)


def shown(tiles: Sequence[Tile], room: int = PAGE_BUDGET - SHELL_RESERVE) -> list[Tile]:
    """The tiles a page shows: as many, in order, as their markup fits in `room` bytes."""
    sizes = [len(tile_html(tile).encode()) for tile in tiles]
    return list(tiles[: fitting(sizes, room)])


def version(tiles: Sequence[Tile]) -> str:
    """A short digest of the tiles: the page redraws its grid only when it changes."""
    text = json.dumps([asdict(tile) for tile in tiles], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tiles_document(title: str, tiles: Sequence[Tile]) -> dict[str, object]:
    """The guests' tiles JSON: the title and the tiles, nothing about any guest."""
    return {"title": title, "version": version(tiles), "tiles": [asdict(tile) for tile in tiles]}


# -- the logo --------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("a PNG without its IHDR header; upload a whole PNG or JPEG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def logo_type(data: bytes, limit: int = LOGO_MAX_BYTES) -> str:
    """The content type of an uploaded logo (PNG or JPEG, told by its bytes, not by a header);
    ValueError with a short reason for anything else. SVG is refused: it can carry scripts."""
    if not data:
        raise ValueError("an empty body; send the PNG or JPEG bytes")
    if len(data) > limit:
        raise ValueError(f"a logo of at most {limit // 1024} KiB, please")
    if data.startswith(PNG_MAGIC):
        width, height = _png_size(data)
        if not (0 < width <= LOGO_MAX_SIDE and 0 < height <= LOGO_MAX_SIDE):
            raise ValueError(f"a logo of at most {LOGO_MAX_SIDE} px a side, please")
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise ValueError("a truncated JPEG; upload the whole file")
        return "image/jpeg"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        raise ValueError("SVG is not taken (it can carry scripts); upload a PNG or JPEG")
    raise ValueError("not a PNG or JPEG; upload a PNG or JPEG")

"""Clips for phones: asset bytes with Range and conditionals, posters, the watch page, and the
authenticated asset API."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from html import escape
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict
from prometheus_client import Counter, Histogram

from edged.cache.prepare import PrepareError
from edged.cache.ranges import ByteRange, RangeNotSatisfiable, parse_range, valid_name
from edged.cache.store import Asset
from edged.cache.upstream import Download
from edged.guest.clips import HIDDEN, MEMBERS, ClipFacts, View, facts_document, guest_view
from edged.guest.members import signed_up
from edged.metrics import Metrics
from edged.web.auth import has_token
from edged.web.context import CLIPS, METRICS, PULL, ClipStore
from edged.web.shell import page_template
from edged.web.telemetry import FIRST_FRAME_BEACON, POSTER_AFTER_MS, WATCH_GUARD

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

CACHE_CONTROL = "public, max-age=300"
# A clip only some guests may have, or only for a while: no shared cache (a proxy in front of
# [guest] public_url) keeps it, and a browser asks again each time.
PRIVATE = "private, no-cache"


_WATCH = page_template("watch.html")


def _store(request: web.Request) -> ClipStore:
    store = request.app.get(CLIPS)
    if store is None:
        raise web.HTTPServiceUnavailable(text="the clip cache is not running\n")
    return store


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not valid_name(name):
        raise web.HTTPNotFound(text="no such clip\n")
    return name


def _gate(request: web.Request, facts: ClipFacts) -> View:
    """What this guest may have of a clip with `facts` now (guest_view): 404 outside its window;
    the caller decides about "members". The member cookie is read only for an exclusive clip."""
    view = guest_view(facts, time.time(), facts.exclusive and signed_up(request))
    if view == HIDDEN:
        raise web.HTTPNotFound(text="no such clip\n")
    return view


def caching(facts: ClipFacts) -> dict[str, str]:
    """The cache headers of a clip's bytes and poster: public for a plain clip; private and
    revalidated for one with a window (withheld too: it may be staged), and varying by the
    member cookie for an exclusive one (a member's copy is never a guest's)."""
    if facts.exclusive:
        return {"Cache-Control": PRIVATE, "Vary": "Cookie"}
    if facts.publish_at is not None or facts.unpublish_at is not None or facts.withheld:
        return {"Cache-Control": PRIVATE}
    return {"Cache-Control": CACHE_CONTROL}


def _etag(facts: os.stat_result) -> str:
    """The strong ETag aiohttp's FileResponse gives the same file (quotes left out)."""
    return f"{facts.st_mtime_ns:x}-{facts.st_size:x}"


class _FileWithRange(web.FileResponse):
    """The file with the range edged's parser chose, or none.

    aiohttp's FileResponse parses Range itself, differently; here it only ever sees a canonical
    `bytes=first-last` (or `bytes=<size>-` for a 416) and still judges the conditionals.
    """

    def __init__(self, path: Path, range_header: str | None, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers)
        self._range_header = range_header

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        headers = CIMultiDict(request.headers)
        headers.popall("Range", None)
        if self._range_header is not None:
            headers["Range"] = self._range_header
        return await super().prepare(request.clone(headers=headers))


def range_for_file(range_header: str, if_range: str, etag: str, size: int) -> str | None:
    """The canonical Range to hand the file response: None serves the whole file.

    An If-Range entity tag that no longer matches means the whole file (aiohttp reads If-Range
    only as a date; a date is left to it).
    """
    if if_range.startswith(('"', "W/")) and if_range != f'"{etag}"':
        return None
    try:
        wanted = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return f"bytes={size}-"  # the file response answers 416, after the conditionals
    return wanted.header if wanted is not None else None


async def _file_response(
    request: web.Request, path: Path, headers: dict[str, str]
) -> web.StreamResponse:
    try:
        facts = await asyncio.to_thread(path.stat)
    except OSError:  # evicted between the lookup and now
        raise web.HTTPNotFound(text="no such clip\n") from None
    wanted = range_for_file(
        request.headers.get("Range", ""),
        request.headers.get("If-Range", ""),
        _etag(facts),
        facts.st_size,
    )
    return _FileWithRange(path, wanted, headers)


# An absolute path in a message: a slash not inside a word or a name, then no quote or space.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[^'\"\s]+")


def public_reason(error: Exception, temporary: str, name: str) -> str:
    """A refusal for the client: the clip's name where the message names a file (PyAV quotes
    the absolute path it opened, under the data dir), never a path."""
    return _ABSOLUTE_PATH.sub(name, str(error)).replace(temporary, name)


@functools.lru_cache(maxsize=64)
def _counters(metrics: Metrics, result: str) -> tuple[Counter, Histogram]:
    """The labelled children an asset request counts in, looked up once (a crowd asks often)."""
    return metrics.cache.requests.labels(result), metrics.first_byte.labels("asset")


def _count(request: web.Request, result: str, started: float) -> None:
    requests, first_byte = _counters(request.app[METRICS], result)
    requests.inc()
    first_byte.observe(time.perf_counter() - started)


# The rest of a clip goes out this much per turn of the event loop: a crowd's heads (what each
# phone needs for its first frame) are not queued behind megabytes of other phones' tails.
TAIL_CHUNK = 256 * 1024


# tcp_info.tcpi_state (linux/tcp_states.h): still taking bytes. CLOSE_WAIT is a client that
# closed its sending half after its request (some tools do) and still reads the answer.
TCP_RECEIVING = (1, 8)  # ESTABLISHED, CLOSE_WAIT


def peer_gone(sock: socket.socket | None) -> bool:
    """Whether the client can no longer take bytes (it reset or closed the connection)."""
    if sock is None:
        return True
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state not in TCP_RECEIVING


def send_now(transport: asyncio.Transport, handle: BinaryIO, offset: int, size: int) -> int:
    """sendfile what the socket takes at once of `size` bytes from `offset`, when nothing the
    transport holds must go before them; 0 when it takes nothing (full, or not ours now).

    asyncio's loop.sendfile pauses and resumes reading, stats and seeks the file, and adds and
    removes a writer for every chunk, even one the socket takes whole: a crowd pays that per
    phone.
    """
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_write_buffer_size():
        return 0
    try:
        return os.sendfile(sock.fileno(), handle.fileno(), offset, size)
    except (BrokenPipeError, ConnectionResetError) as error:
        raise ConnectionResetError("the client went away") from error
    except OSError:  # full (EAGAIN), or a file sendfile refuses: asyncio's path decides
        return 0


Write = Callable[[bytes], Awaitable[None]]

# What a loop without sendfile (uvloop) writes by hand when the socket is full: little, since
# it only has to wait for room (a phone reading slowly holds this much in memory, not a chunk);
# sendfile takes the rest once the socket drains.
WRITTEN_BY_HAND = 16 * 1024


async def _send_when_writable(
    transport: asyncio.Transport, handle: BinaryIO, offset: int, size: int, write: Write
) -> int:
    """asyncio's sendfile, which waits until the socket takes bytes; the bytes sent (0: the file
    ends at `offset`).

    Where the loop has no sendfile (uvloop), or the file refuses it, WRITTEN_BY_HAND bytes are
    read in a thread and written through the response (`write`, which waits while the socket is
    full): but not for a client that took its head and left (a thread hop and a read per
    departed phone), whose tail ends here.
    """
    loop = asyncio.get_running_loop()
    try:
        return await loop.sendfile(transport, handle, offset, size, fallback=False)
    except (asyncio.SendfileNotAvailableError, NotImplementedError):
        if peer_gone(transport.get_extra_info("socket")):
            raise ConnectionResetError("the client went away") from None
    chunk = await asyncio.to_thread(os.pread, handle.fileno(), min(size, WRITTEN_BY_HAND), offset)
    if chunk:
        await write(chunk)
    return len(chunk)


async def send_tail(
    transport: asyncio.Transport, handle: BinaryIO, offset: int, count: int, write: Write
) -> None:
    """sendfile `count` bytes from `offset`, at most a chunk per turn of the loop; `write` sends
    a chunk read by hand (a loop without sendfile)."""
    end = offset + count
    while offset < end:
        if transport.is_closing():  # the client's reset, seen by the transport's reader
            raise ConnectionResetError("the client went away")
        size = min(TAIL_CHUNK, end - offset)
        sent = send_now(transport, handle, offset, size)
        if sent == 0:
            sent = await _send_when_writable(transport, handle, offset, size, write)
        if sent == 0:  # the file ends before its length: a short body must not look whole
            transport.abort()
            raise ConnectionResetError("the clip's file ended before its length")
        offset += sent
        await asyncio.sleep(0)


def file_identity(facts: os.stat_result) -> tuple[int, int, int]:
    """What tells one file under a name from another that replaced it: inode, mtime, size."""
    return facts.st_ino, facts.st_mtime_ns, facts.st_size


class _HeadThenFile(web.StreamResponse):
    """A pinned clip: the bytes it starts with from RAM at once, the rest by sendfile."""

    # The status line and headers go out in one write with the head (aiohttp's Response does
    # the same): one send on the socket instead of two, and the phone's first read has bytes.
    _send_headers_immediately = False

    def __init__(
        self,
        path: str,
        identity: tuple[int, int, int],
        hot: bytes,
        wanted: ByteRange,
        status: int,
        headers: dict[str, str],
    ) -> None:
        super().__init__(status=status, headers=headers)  # Content-Type in `headers`
        self.content_length = wanted.length
        self._path, self._identity, self._hot, self._wanted = path, identity, hot, wanted

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method == "HEAD" or writer is None:
            return writer
        start, end = self._wanted.start, self._wanted.end
        head = memoryview(self._hot)[start : end + 1]
        await self.write(head)
        rest = end + 1 - (start + len(head))
        if rest > 0:
            # The tail waits a turn of the loop: the heads of a crowd connecting at once go out
            # first, and a client that took its head and left costs no file at all.
            await asyncio.sleep(0)
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client went away")
            # Opened on the loop, as _from_memory stats it: a pinned clip's inode is cached.
            # Unbuffered: sendfile needs the descriptor only.
            with open(self._path, "rb", buffering=0) as handle:  # noqa: ASYNC230
                if file_identity(os.fstat(handle.fileno())) != self._identity:
                    # Replaced since the headers (review s7b, A1): never the new file's bytes
                    # under the old ETag; the player asks again and gets the new clip whole.
                    transport.abort()
                    raise ConnectionResetError("the clip was replaced while it was sent")
                await send_tail(transport, handle, start + len(head), rest, self.write)
        await super().write_eof()
        return writer


@functools.lru_cache(maxsize=256)
def http_date(mtime: float) -> str:
    """An HTTP date (RFC 9110), remembered: a crowd asks for the same clips."""
    return formatdate(mtime, usegmt=True)


@functools.lru_cache(maxsize=256)
def _file_of(path: Callable[[str], Path], name: str) -> str:
    """`path(name)` as a string, remembered (a store's path for its clip): a crowd asks for the
    same clips."""
    return str(path(name))


def _from_memory(
    request: web.Request, path: str, asset: Asset, hot: bytes, cache: dict[str, str]
) -> web.StreamResponse | None:
    """A pinned clip's response whose first bytes come from RAM, when the request starts in them.

    Conditional requests go to the file response, which judges them. The file is stat'ed on the
    loop: a pinned clip's inode is in the kernel's cache, and a thread hop costs more. The tail
    is sent only from the file the headers describe (review s7b, A1: file_identity).
    """
    asked = request.headers
    if asked.get("If-None-Match") or asked.get("If-Range") or asked.get("If-Modified-Since"):
        return None
    try:
        wanted = parse_range(asked.get("Range", ""), asset.size)
    except RangeNotSatisfiable:
        return None  # the file response answers, with the same decision
    whole = wanted is None
    wanted = wanted or ByteRange(0, asset.size - 1)
    if wanted.start >= len(hot):
        return None
    try:
        facts = os.stat(path)
    except OSError:
        return None  # the file response answers, with the same decision
    if facts.st_size != asset.size:
        return None
    headers = {
        "Content-Type": "video/mp4",
        "ETag": f'"{_etag(facts)}"',
        "Last-Modified": http_date(facts.st_mtime),
        "Accept-Ranges": "bytes",
        **cache,
    }
    if not whole:
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{asset.size}"
    status = 200 if whole else 206
    return _HeadThenFile(path, file_identity(facts), hot, wanted, status, headers)


async def _serve_growing(
    request: web.Request, download: Download, cache: dict[str, str]
) -> web.StreamResponse:
    """Stream a clip while its pull-through download is still writing it."""
    headers = {"Content-Type": "video/mp4", **cache}
    if headers["Cache-Control"] == CACHE_CONTROL:
        headers["Cache-Control"] = "no-cache"  # not all of it is here yet
    response = web.StreamResponse(headers=headers)
    response.content_length = download.size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    offset = 0
    while offset < download.size:
        available = download.part.stat().st_size if download.part.exists() else 0
        if available > offset:
            with download.part.open("rb") as handle:
                handle.seek(offset)
                chunk = await asyncio.to_thread(handle.read, min(available - offset, 1 << 20))
            await response.write(chunk)
            offset += len(chunk)
            continue
        if download.done:
            break  # failed midway: the client sees a short body
        download.progress.clear()
        await download.progress.wait()
    await response.write_eof()
    return response


@routes.route("*", "/assets/{name}")
async def asset_bytes(request: web.Request) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    started = time.perf_counter()
    store = _store(request)
    name = _name(request)
    facts = store.facts.get(name)
    if _gate(request, facts) == MEMBERS:
        raise web.HTTPForbidden(text="this clip is for guests who signed up: /join\n")
    cache = caching(facts)
    asset = store.known(name)
    pulled = False
    if asset is None:
        pull = request.app.get(PULL)
        download = await pull.open(name) if pull is not None else None
        if download is None:
            _count(request, "miss", started)
            raise web.HTTPNotFound(text="no such clip\n")
        _count(request, "pull_through", started)
        pulled = True
        if await download.streamable():
            return await _serve_growing(request, download, cache)
        # Metadata at the end: no frame before the last byte, so serve the prepared clip.
        await download.ready.wait()
        asset = store.get(name)
        if asset is None:
            raise web.HTTPBadGateway(text=f"clip {name} could not be fetched; see the edged log\n")
    store.touch(name)
    hot = store.hot(name)
    if hot is not None:
        fast = _from_memory(request, _file_of(store.path, name), asset, hot, cache)
        if fast is not None:
            if not pulled:
                _count(request, "hit_memory", started)
            return fast
    if not pulled:
        _count(request, "hit", started)
    return await _file_response(request, store.path(name), {**cache, "Content-Type": "video/mp4"})


@routes.get("/posters/{name}.jpg")
async def poster(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    name = _name(request)
    facts = store.facts.get(name)
    _gate(request, facts)  # a locked tile shows its poster
    path = store.poster_path(name)
    cache = caching(facts)
    return await _file_response(request, path, {**cache, "Content-Type": "image/jpeg"})


@routes.get("/watch/{name}")
async def watch(request: web.Request) -> web.Response:
    store = _store(request)
    name = _name(request)
    if store.get(name) is None:
        raise web.HTTPNotFound(text="no such clip\n")
    facts = store.facts.get(name)
    if _gate(request, facts) == MEMBERS:
        raise web.HTTPSeeOther("/join")  # the signup, then the clip
    page = _WATCH.substitute(
        title=escape(facts.title),
        src=f"/assets/{escape(name)}",
        poster=f"/posters/{escape(name)}.jpg",
        beacon=FIRST_FRAME_BEACON,
        poster_after=POSTER_AFTER_MS,
        view=request.app[WATCH_GUARD].issue(name),
    )
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})


@routes.get("/api/v1/assets")
async def list_assets(request: web.Request) -> web.Response:
    """The clips on the box with their facts; without the token, a clip outside its window is
    left out (a staged release's name and time are the crew's until it is out)."""
    store = _store(request)
    summary = await asyncio.to_thread(store.summary)
    now = time.time()
    crew = has_token(request)
    for asset in summary["assets"]:
        asset["facts"] = facts_document(store.facts.get(asset["name"]), now)
    if not crew:  # nor in the total: a staged clip's size would tell it is there
        summary["assets"] = [a for a in summary["assets"] if a["facts"]["guest"] != "hidden"]
        summary["bytes"] = sum(int(a["size"]) for a in summary["assets"])
    return web.json_response(summary)


MAX_FACTS_BODY = 4096


async def _fields(request: web.Request) -> dict[str, object]:
    """The PATCH body: a JSON object of facts (edged.guest.clips.FIELDS); ValueError if not."""
    body = await request.content.read(MAX_FACTS_BODY + 1)
    if len(body) > MAX_FACTS_BODY:
        raise ValueError(f"the facts are at most {MAX_FACTS_BODY} bytes")
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise ValueError(
            "send a JSON object of title, description, exclusive, publish_at, unpublish_at"
        )
    return fields


@routes.patch("/api/v1/assets/{name}")
async def patch_asset(request: web.Request) -> web.Response:
    """The crew sets a clip's facts (title, description, exclusive, its window in RFC 3339)."""
    store = _store(request)
    name = _name(request)
    if store.get(name) is None:
        raise web.HTTPNotFound(text="no such clip\n")
    try:
        facts = await asyncio.to_thread(store.facts.patch, name, await _fields(request))
    except ValueError as error:
        logger.info("facts of clip %s refused: %s", name, error)
        return web.json_response({"error": str(error)}, status=400)
    document = facts_document(facts, time.time())
    logger.info("facts of clip %s set: guests now %s", name, document["guest"])
    return web.json_response({"name": name, "facts": document})


@routes.put("/api/v1/assets/{name}")
async def put_asset(request: web.Request) -> web.Response:
    store = _store(request)
    name = request.match_info["name"]
    if not valid_name(name):
        return web.json_response({"error": f"asset name {name!r} not allowed"}, status=400)
    pin = request.query.get("pin", "false").lower() in ("1", "true", "yes")
    limit = store.max_bytes
    upload = store.staging_path(name)
    received = 0
    try:
        with upload.open("wb") as handle:
            async for chunk in request.content.iter_chunked(1 << 20):
                received += len(chunk)
                if received > limit:
                    return web.json_response(
                        {"error": f"larger than the cache ({limit} bytes)"}, status=413
                    )
                await asyncio.to_thread(handle.write, chunk)
        try:
            asset = await asyncio.to_thread(store.add, upload, name, pin=pin, origin="api")
        except PrepareError as error:
            return web.json_response({"error": public_reason(error, upload.name, name)}, status=422)
    finally:
        upload.unlink(missing_ok=True)
    return web.json_response(
        {"name": asset.name, "sha256": asset.sha256, "size": asset.size, "pinned": asset.pinned},
        status=201,
    )


@routes.delete("/api/v1/assets/{name}")
async def delete_asset(request: web.Request) -> web.Response:
    store = _store(request)
    if not await asyncio.to_thread(store.remove, _name(request)):
        raise web.HTTPNotFound(text="no such clip\n")
    await asyncio.to_thread(store.facts.forget, request.match_info["name"])
    return web.json_response({"deleted": request.match_info["name"]})

"""Live routes for phones: the player page, HLS, the poster, and WHEP for WebRTC."""

from __future__ import annotations

import time
from html import escape

from aiohttp import web

from edged.errors import MediaError
from edged.media.live import POSTER_SECONDS, init_run, segment_key
from edged.web.context import LIVE, METRICS, LiveView, WhepRefused
from edged.web.shell import page_template
from edged.web.telemetry import FIRST_FRAME_BEACON, POSTER_AFTER_MS

routes = web.RouteTableDef()

STREAM = r"{stream:[a-z0-9][a-z0-9-]{0,62}}"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# What a cache in front (configs/nginx/edged-edge.conf) may keep. A playlist changes with each
# segment: kept a second, so a crowd's reloads reach the box about once a second. The init and
# media segments are named per run of the stream (`init-<run>.mp4`, `segment-<run>-<n>.m4s`): a
# stream that restarts (a camera replugged, a thermal step) begins again at 0 under new URLs, so
# a URL names the same bytes for ever and may be kept a day.
PLAYLIST_CACHE = "public, max-age=1"
INIT_CACHE = "public, max-age=86400, immutable"
SEGMENT_CACHE = "public, max-age=86400, immutable"


def _stream(request: web.Request) -> tuple[LiveView, str]:
    live = request.app.get(LIVE)
    stream = request.match_info["stream"]
    if live is None or not live.has_stream(stream):
        raise web.HTTPNotFound(text=f"no live stream {stream!r} on this box\n")
    return live, stream


def _observe_first_byte(request: web.Request, started: float) -> None:
    request.app[METRICS].first_byte.labels("live").observe(time.perf_counter() - started)


@routes.get(f"/live/{STREAM}/index.m3u8")
async def playlist(request: web.Request) -> web.Response:
    started = time.perf_counter()
    live, stream = _stream(request)
    text = live.playlist(stream)
    if text is None:
        raise web.HTTPServiceUnavailable(
            text="the stream has no segment yet\n", headers={"Retry-After": "1"}
        )
    response = web.Response(text=text, content_type=PLAYLIST_TYPE)
    response.headers["Cache-Control"] = PLAYLIST_CACHE
    _observe_first_byte(request, started)
    return response


def _count_hls_viewer(request: web.Request, live: LiveView, stream: str, size: int) -> None:
    """HLS has no session: a viewer is a client address that fetched a segment lately. The
    gauge is computed when scraped, so it drops when the last viewer stops fetching."""
    metrics = request.app[METRICS].live
    live.note_hls_client(stream, request.remote or "")
    metrics.viewers.labels(stream, "hls").set_function(lambda: live.hls_viewer_count(stream))
    metrics.bytes.labels(stream, "hls").inc(size)


@routes.get(rf"/live/{STREAM}/{{name:init-[^/]{{1,40}}\.mp4}}")
async def init_segment(request: web.Request) -> web.Response:
    live, stream = _stream(request)
    run = init_run(request.match_info["name"])
    if run is None:
        raise web.HTTPNotFound(text="not an init segment name the playlist lists\n")
    init = live.init_segment(stream, run)
    if not init:
        raise web.HTTPNotFound(text="no such init segment (the stream restarted?)\n")
    return web.Response(body=init, content_type="video/mp4", headers={"Cache-Control": INIT_CACHE})


@routes.get(rf"/live/{STREAM}/{{name:segment-[^/]{{1,60}}\.m4s}}")
async def media_segment(request: web.Request) -> web.Response:
    live, stream = _stream(request)
    key = segment_key(request.match_info["name"])
    if key is None:
        raise web.HTTPNotFound(text="not a segment name the playlist lists\n")
    segment = live.segment(stream, *key)
    if segment is None:
        raise web.HTTPNotFound(text="segment no longer (or not yet) held\n")
    _count_hls_viewer(request, live, stream, len(segment))
    response = web.Response(body=segment, content_type="video/iso.segment")
    response.headers["Cache-Control"] = SEGMENT_CACHE
    return response


@routes.get(f"/live/{STREAM}/poster.jpg")
async def poster(request: web.Request) -> web.Response:
    """The latest keyframe as JPEG: one decode, off the event loop, for every waiting request."""
    live, stream = _stream(request)
    try:
        jpeg = await live.poster(stream)
    except MediaError as error:
        raise web.HTTPServiceUnavailable(text=f"{error}\n", headers={"Retry-After": "1"}) from error
    if jpeg is None:
        raise web.HTTPServiceUnavailable(text="no keyframe yet\n", headers={"Retry-After": "1"})
    response = web.Response(body=jpeg, content_type="image/jpeg")
    response.headers["Cache-Control"] = f"max-age={int(POSTER_SECONDS)}"
    return response


@routes.post(f"/live/{STREAM}/whep")
async def whep_offer(request: web.Request) -> web.Response:
    live, stream = _stream(request)
    if request.content_type != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="send the SDP offer as application/sdp\n")
    offer = await request.text()
    try:
        session_id, answer = await live.whep_offer(stream, offer)
    except WhepRefused as error:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return web.Response(status=error.status, text=f"{error}\n", headers=headers)
    location = f"/live/{stream}/whep/{session_id}"
    return web.Response(
        status=201, text=answer, content_type="application/sdp", headers={"Location": location}
    )


@routes.delete(rf"/live/{STREAM}/whep/{{session:[A-Za-z0-9_-]{{1,64}}}}")
async def whep_delete(request: web.Request) -> web.Response:
    live = request.app.get(LIVE)
    if live is None or not await live.whep_delete(
        request.match_info["stream"], request.match_info["session"]
    ):
        raise web.HTTPNotFound(text="no such WHEP session\n")
    return web.Response(status=200)


_PAGE = page_template("live.html")


def player_html(stream: str) -> str:
    base = f"/live/{stream}"
    return _PAGE.substitute(
        title=escape(stream),
        base=escape(base),
        playlist=PLAYLIST_TYPE,
        beacon=FIRST_FRAME_BEACON,
        poster_after=POSTER_AFTER_MS,
    )


@routes.get(f"/live/{STREAM}")
async def player(request: web.Request) -> web.Response:
    _, stream = _stream(request)
    response = web.Response(text=player_html(stream), content_type="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response

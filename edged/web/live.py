"""Live routes for phones: the player page, HLS, the poster, and WHEP for WebRTC."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path
from string import Template

from aiohttp import web

from edged.errors import MediaError
from edged.media.live import POSTER_SECONDS, LiveHub, segment_sequence
from edged.web.context import LIVE, METRICS, LiveView

routes = web.RouteTableDef()

STREAM = r"{stream:[a-z0-9][a-z0-9-]{0,62}}"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def _hub(request: web.Request) -> tuple[LiveView, LiveHub]:
    live = request.app.get(LIVE)
    stream = request.match_info["stream"]
    hub = live.hub(stream) if live is not None else None
    if live is None or hub is None:
        raise web.HTTPNotFound(text=f"no live stream {stream!r} on this box\n")
    return live, hub


def _observe_first_byte(request: web.Request, started: float) -> None:
    request.app[METRICS].first_byte.labels("live").observe(time.perf_counter() - started)


@routes.get(f"/live/{STREAM}/index.m3u8")
async def playlist(request: web.Request) -> web.Response:
    started = time.perf_counter()
    _, hub = _hub(request)
    if not hub.hls.segments:
        raise web.HTTPServiceUnavailable(
            text="the stream has no segment yet\n", headers={"Retry-After": "1"}
        )
    response = web.Response(text=hub.hls.playlist(), content_type=PLAYLIST_TYPE)
    response.headers["Cache-Control"] = "no-cache"
    _observe_first_byte(request, started)
    return response


# A player fetches every segment as it appears: one that fetched none for this many segment
# durations has left (or stalled long enough not to count).
HLS_VIEWER_SEGMENTS = 3


def _count_hls_viewer(request: web.Request, hub: LiveHub, size: int) -> None:
    """HLS has no session: a viewer is a client address that fetched a segment lately. The
    gauge is computed when scraped, so it drops when the last viewer stops fetching."""
    live = request.app[METRICS].live
    viewers = hub.hls_viewers
    window = HLS_VIEWER_SEGMENTS * hub.hls.target_duration
    viewers.seen(request.remote or "", time.monotonic(), window)
    live.viewers.labels(hub.stream, "hls").set_function(lambda: viewers.count(time.monotonic()))
    live.bytes.labels(hub.stream, "hls").inc(size)


@routes.get(f"/live/{STREAM}/init.mp4")
async def init_segment(request: web.Request) -> web.Response:
    _, hub = _hub(request)
    if not hub.hls.init:
        raise web.HTTPServiceUnavailable(text="no init segment yet\n")
    return web.Response(body=hub.hls.init, content_type="video/mp4")


@routes.get(rf"/live/{STREAM}/{{name:segment-[^/]{{1,40}}\.m4s}}")
async def media_segment(request: web.Request) -> web.Response:
    _, hub = _hub(request)
    sequence = segment_sequence(request.match_info["name"])
    if sequence is None:
        raise web.HTTPNotFound(text="not a segment name the playlist lists\n")
    segment = hub.hls.segment(sequence)
    if segment is None:
        raise web.HTTPNotFound(text="segment no longer (or not yet) held\n")
    _count_hls_viewer(request, hub, len(segment.data))
    response = web.Response(body=segment.data, content_type="video/iso.segment")
    response.headers["Cache-Control"] = "max-age=60"
    return response


@routes.get(f"/live/{STREAM}/poster.jpg")
async def poster(request: web.Request) -> web.Response:
    """The latest keyframe as JPEG: one decode, off the event loop, for every waiting request."""
    _, hub = _hub(request)
    keyframe = hub.gop.keyframe
    if keyframe is None:
        raise web.HTTPServiceUnavailable(text="no keyframe yet\n", headers={"Retry-After": "1"})
    try:
        jpeg = await hub.poster.jpeg(keyframe, hub.extradata, time.monotonic())
    except MediaError as error:
        raise web.HTTPServiceUnavailable(text=f"{error}\n", headers={"Retry-After": "1"}) from error
    response = web.Response(body=jpeg, content_type="image/jpeg")
    response.headers["Cache-Control"] = f"max-age={int(POSTER_SECONDS)}"
    return response


@routes.post(f"/live/{STREAM}/whep")
async def whep_offer(request: web.Request) -> web.Response:
    live, hub = _hub(request)
    if request.content_type != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="send the SDP offer as application/sdp\n")
    offer = await request.text()
    stream = hub.stream
    from edged.media.webrtc import WhepError  # aiortc loads with the first viewer

    try:
        session_id, answer = await live.whep().create(
            stream, hub, offer, lambda: live.request_keyframe(stream)
        )
    except WhepError as error:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return web.Response(status=error.status, text=f"{error}\n", headers=headers)
    location = f"/live/{stream}/whep/{session_id}"
    return web.Response(
        status=201, text=answer, content_type="application/sdp", headers={"Location": location}
    )


@routes.delete(rf"/live/{STREAM}/whep/{{session:[A-Za-z0-9_-]{{1,64}}}}")
async def whep_delete(request: web.Request) -> web.Response:
    live = request.app.get(LIVE)
    if live is None or not await live.whep().delete(
        request.match_info["stream"], request.match_info["session"]
    ):
        raise web.HTTPNotFound(text="no such WHEP session\n")
    return web.Response(status=200)


_PAGE = Template((Path(__file__).parent / "templates" / "live.html").read_text(encoding="utf-8"))


def player_html(stream: str) -> str:
    base = f"/live/{stream}"
    return _PAGE.substitute(title=escape(stream), base=escape(base), playlist=PLAYLIST_TYPE)


@routes.get(f"/live/{STREAM}")
async def player(request: web.Request) -> web.Response:
    _, hub = _hub(request)
    response = web.Response(text=player_html(hub.stream), content_type="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response

"""Pages for guests' phones: small, inline, no framework."""

from __future__ import annotations

import io
from html import escape

import segno
from aiohttp import web

from edged.web.context import CLIPS, IDENTITY, LIVE

routes = web.RouteTableDef()

_STYLE = (
    "body{font:18px/1.4 system-ui,sans-serif;margin:0;padding:1.5em;background:#111;color:#eee}"
    "h1{font-size:1.6em;margin:0 0 .2em}p{color:#aaa;margin:.2em 0}"
    "main{max-width:40em;margin:auto}.empty{margin-top:2em;padding:1em;border:1px dashed #444}"
    "h2{font-size:1.2em}.tile{display:block;margin:0 0 1em;color:#eee;text-decoration:none}"
    ".tile img{width:100%;height:auto;background:#222;border-radius:8px;display:block}"
    ".tile span{display:block;padding:.4em 0;font-size:1.1em}"
)


def _tile(href: str, poster: str, title: str) -> str:
    return (
        f'<a class=tile href="{escape(href)}"><img src="{escape(poster)}" alt="" loading=lazy '
        f"width=320 height=180><span>{escape(title)}</span></a>"
    )


def landing_html(
    box: str, event: str, live_streams: list[str] | None = None, clips: list[str] | None = None
) -> str:
    """The landing page: which box this is (the name it answers to), then its streams and clips."""
    live = "".join(
        _tile(f"/live/{name}", f"/live/{name}/poster.jpg", f"Live: {name}")
        for name in live_streams or []
    )
    stored = "".join(
        _tile(f"/watch/{name}", f"/posters/{name}.jpg", name.rsplit(".", 1)[0])
        for name in clips or []
    )
    sections = (f"<section><h2>Live now</h2>{live}</section>" if live else "") + (
        f"<section><h2>Clips</h2>{stored}</section>" if stored else ""
    )
    body = (
        sections
        if sections
        else "<p class=empty>Nothing to watch on this box yet. Clips and live cameras appear "
        "here as soon as they are ready.</p>"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(box)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{escape(box)}</h1><p>Event: {escape(event)}</p>{body}"
        "</main></body></html>"
    )


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    identity, live, store = request.app[IDENTITY], request.app.get(LIVE), request.app.get(CLIPS)
    streams = live.stream_names() if live is not None else []
    clips = [a.name for a in store.assets()] if store is not None else []
    # The name a guest typed or scanned (after an mDNS rename, not the configured node).
    name = identity.advertised_name or identity.node
    response = web.Response(
        text=landing_html(name, identity.event, streams, clips), content_type="text/html"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


def qr_svg(url: str) -> bytes:
    """The landing URL as a QR code to print for the tent."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=8, border=2, title=url)
    return buffer.getvalue()


@routes.get("/qr.svg")
async def qr(request: web.Request) -> web.Response:
    url = request.app[IDENTITY].landing_url or f"http://{request.host}/"
    response = web.Response(body=qr_svg(url), content_type="image/svg+xml")
    response.headers["Cache-Control"] = "no-cache"
    return response


def print_qr(url: str) -> None:
    """The landing URL as a QR code in the terminal, for the crew starting the box by hand."""
    print(f"Scan to watch: {url}")
    segno.make(url, error="m").terminal(compact=True)

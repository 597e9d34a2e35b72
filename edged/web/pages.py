"""Pages for guests' phones: small, inline, no framework."""

from __future__ import annotations

from html import escape

from aiohttp import web

from edged.web.context import CONTEXT

routes = web.RouteTableDef()

_STYLE = (
    "body{font:18px/1.4 system-ui,sans-serif;margin:0;padding:1.5em;background:#111;color:#eee}"
    "h1{font-size:1.6em;margin:0 0 .2em}p{color:#aaa;margin:.2em 0}"
    "main{max-width:40em;margin:auto}.empty{margin-top:2em;padding:1em;border:1px dashed #444}"
)


def landing_html(node: str, event: str) -> str:
    """The landing page: which box this is, then its clips and live streams."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(node)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{escape(node)}</h1><p>Event: {escape(event)}</p>"
        "<p class=empty>Nothing to watch on this box yet. Clips and live cameras appear here "
        "as soon as they are ready.</p>"
        "</main></body></html>"
    )


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    response = web.Response(
        text=landing_html(context.node, context.event), content_type="text/html"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response

"""Pages for guests' phones: small, inline, no framework."""

from __future__ import annotations

import json
from html import escape

from aiohttp import web

from edged.guest.page import Tile, shown, tile_html, version
from edged.web.context import GUEST, IDENTITY
from edged.web.event_page import (
    REFRESH_MS,
    TILES_PATH,
    count_visit,
    guest_tiles,
    logo_url,
    page_title,
)
from edged.web.shell import html_page

routes = web.RouteTableDef()

_STYLE = (
    "body{font:16px/1.35 system-ui,sans-serif;margin:0;background:#111;color:#eee}"
    "header{display:flex;align-items:center;gap:10px;padding:12px;border-bottom:3px solid var(--a)}"
    "header img{display:block;max-height:48px;max-width:35%}header div{min-width:0}"
    "h1{font-size:1.5em;margin:0;overflow-wrap:anywhere}header small{color:#999}"
    "main{max-width:64em;margin:auto;padding:12px}"
    "#g{display:grid;grid-template-columns:repeat(auto-fill,minmax(136px,1fr));gap:12px}"
    ".t{color:#eee;text-decoration:none;min-width:0}"
    ".p{position:relative;aspect-ratio:16/9;background:#222;border-radius:8px;overflow:hidden}"
    ".p img{width:100%;height:100%;object-fit:cover;display:block}"
    ".p:after{content:'';position:absolute;left:50%;top:50%;margin:-13px 0 0 -8px;"
    "border:13px solid #0000;border-left:20px solid #fffe;border-right:0;"
    "filter:drop-shadow(0 0 3px #000)}"
    ".l,.d{position:absolute;padding:1px 6px;border-radius:4px;font:700 12px system-ui;color:#fff}"
    ".l{top:6px;left:6px;background:var(--a)}.d{bottom:6px;right:6px;background:#000c}"
    ".n,.t small{display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:2;"
    "overflow:hidden}.n{font-weight:600;margin-top:5px}.t small{color:#aaa;font-size:.85em}"
    ".empty{padding:1em;border:1px dashed #444;color:#aaa}"
)
# Every 10 s (and when the page is shown again) the tiles JSON; the grid is redrawn only when
# its version changed. Text goes in as text (textContent), never as markup.
_REFRESH = (
    "(()=>{const g=document.getElementById('g'),m=document.getElementById('m');"
    "let v=g.dataset.v;const e=(t,c,x)=>{const n=document.createElement(t);"
    "if(c)n.className=c;if(x)n.textContent=x;return n};"
    "const tile=t=>{const a=e('a','t'),p=e('div','p'),i=e('img');a.href=t.href;"
    "i.src=t.poster;i.alt='';i.loading='lazy';p.append(i);"
    "if(t.kind==='live')p.append(e('b','l','LIVE'));"
    "if(t.locked)p.append(e('b','l','Sign up to watch'));"
    "if(t.duration)p.append(e('em','d',t.duration));a.append(p,e('span','n',t.title));"
    "if(t.description)a.append(e('small','',t.description));return a};"
    "const r=async()=>{try{const a=await fetch('$tiles',{cache:'no-store'});"
    "if(!a.ok)return;const j=await a.json();if(j.version===v)return;v=j.version;"
    "g.replaceChildren(...j.tiles.map(tile));m.hidden=j.tiles.length>0;}catch(x){}};"
    "setInterval(()=>{if(!document.hidden)r()},$ms);"
    "document.addEventListener('visibilitychange',()=>{if(!document.hidden)r()});})();"
)
EMPTY = (
    "Nothing to watch on this box yet. Clips and live cameras appear here as soon as they "
    "are ready."
)


def landing_html(
    title: str,
    box: str,
    tiles: list[Tile],
    *,
    accent: str = "#e4003a",
    logo: str = "",
    campaign: str = "",
) -> str:
    """The landing page: the event's title (and logo), the box's name small, a grid of tiles
    that refreshes itself. `tiles` are those `shown` chose (they fit the page's budget). A
    `campaign` (a configured name) is kept in the tab's sessionStorage for the watch pages'
    reports (static/watch.js)."""
    grid = "".join(tile_html(tile) for tile in tiles)
    logo_tag = f'<img src="{escape(logo)}" alt="">' if logo else ""
    script = _REFRESH.replace("$tiles", TILES_PATH).replace("$ms", str(REFRESH_MS))
    body = (
        f"<header>{logo_tag}<div><h1>{escape(title)}</h1>"
        f"<small>{escape(box)}</small></div></header><main>"
        f'<div id=g data-v="{version(tiles)}">{grid}</div>'
        f"<p class=empty id=m{' hidden' if tiles else ''}>{EMPTY}</p>"
        f"</main><script>{script}{_keep(campaign)}</script>"
    )
    return html_page(title, _STYLE, body, body_style=f"--a:{accent}")


def _keep(campaign: str) -> str:
    if not campaign:
        return ""
    value = json.dumps(campaign).replace("<", "\\u003c")
    return f"try{{sessionStorage.setItem('campaign',{value})}}catch(x){{}}"


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    identity = request.app[IDENTITY]
    # The name a guest typed or scanned (after an mDNS rename, not the configured node).
    box = identity.advertised_name or identity.node
    # A HEAD (a link checker, a probe) is no guest's visit.
    campaign = count_visit(request) if request.method == "GET" else ""
    page = landing_html(
        page_title(request),
        box,
        shown(guest_tiles(request)),
        accent=request.app[GUEST].accent,
        logo=logo_url(request),
        campaign=campaign,
    )
    response = web.Response(text=page, content_type="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response

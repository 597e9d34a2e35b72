"""Getting there: the guests' link as a QR code (`/qr.svg`, the terminal), the printable poster
(`/qr`, A4 or A5, with a Wi-Fi join code), links tagged per campaign, and (`[guest]
captive_portal`) the answers that make phones pop the event page up."""

from __future__ import annotations

import asyncio
import io
from functools import lru_cache, partial
from html import escape

import segno
from aiohttp import web

from edged.config import GuestConfig
from edged.guest.campaigns import PARAMETER, find, tagged_link
from edged.guest.page import display_title
from edged.web.context import GUEST, IDENTITY
from edged.web.shell import html_page

routes = web.RouteTableDef()

# The OS connectivity probes (Android, iOS/macOS, Windows): an answer other than the expected one
# (204, "Success", "Microsoft Connect Test") makes the phone show the portal: the event page.
CAPTIVE_PROBES = (
    "/generate_204",
    "/gen_204",
    "/hotspot-detect.html",
    "/library/test/success.html",
    "/connecttest.txt",
    "/ncsi.txt",
    "/redirect",
)
# What a Wi-Fi join code escapes with a backslash (the ZXing WIFI: format).
WIFI_SPECIAL = '\\;,:"'
# Printed: the paper, its type size, the title's, the link's code and the Wi-Fi code's width
# (one page each with a two-line title: tests/integration/test_poster_browser.py).
PAPERS = {
    "a4": ("A4", "14pt", "2.4em", "125mm", "52mm"),
    "a5": ("A5", "11pt", "1.8em", "85mm", "36mm"),
}


def wifi_join(ssid: str, password: str) -> str:
    """The Wi-Fi join code phones' cameras read: WPA with a password, open without one."""

    def quoted(text: str) -> str:
        return "".join(f"\\{char}" if char in WIFI_SPECIAL else char for char in text)

    if not password:
        return f"WIFI:T:nopass;S:{quoted(ssid)};;"
    return f"WIFI:T:WPA;S:{quoted(ssid)};P:{quoted(password)};;"


# Codes already made, kept: the poster's few links are asked for again and again (a code takes
# ~3 ms, the first ~30 ms; made in a worker thread, never on the loop).
QR_CACHE = 64


@lru_cache(maxsize=QR_CACHE)
def qr_svg(url: str) -> bytes:
    """The guests' link as a QR code to print for the tent."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=8, border=2, title=url)
    return buffer.getvalue()


@lru_cache(maxsize=QR_CACHE)
def inline_qr(data: str) -> str:
    """A QR code as an <svg> to place in a page, sized by its CSS (viewBox, no width)."""
    buffer = io.BytesIO()
    segno.make(data, error="m").save(
        buffer, kind="svg", border=2, xmldecl=False, omitsize=True, nl=False, svgclass="qr"
    )
    return buffer.getvalue().decode()


def print_qr(url: str, typed: str = "") -> None:
    """The guests' link as a QR code in the terminal, for the crew starting the box by hand."""
    print(f"Scan to watch: {url}" + (f"  (or type {typed})" if typed and typed != url else ""))
    segno.make(url, error="m").terminal(compact=True)


def guest_link(request: web.Request) -> str:
    """The link to hand guests: the landing URL, tagged with `?campaign=NAME`'s configured tags;
    404 for a campaign no `[[guest.campaigns]]` table names."""
    url = request.app[IDENTITY].landing_url or f"http://{request.host}/"
    name = request.query.get(PARAMETER, "")
    if not name:
        return url
    campaign = find(name, request.app[GUEST].campaigns)
    if campaign is None:
        raise web.HTTPNotFound(text="unknown campaign: see [guest] campaigns in the config\n")
    return tagged_link(url, campaign)


@routes.get("/qr.svg")
async def qr(request: web.Request) -> web.Response:
    svg = await asyncio.to_thread(qr_svg, guest_link(request))
    response = web.Response(body=svg, content_type="image/svg+xml")
    response.headers["Cache-Control"] = "no-cache"
    return response


def poster_style(paper: str, accent: str) -> str:
    size, type_size, title, qr_side, wifi_side = PAPERS[paper]
    return (
        f"@page{{size:{size} portrait;margin:10mm}}"
        "body{font:18px/1.4 system-ui,sans-serif;margin:0;background:#fff;color:#111}"
        "main{max-width:40em;margin:auto;padding:1.2em;text-align:center}"
        f"h1{{font-size:clamp(1.5em,8vw,{title});margin:.2em 0;border-bottom:.12em solid {accent}}}"
        ".qr{width:min(86vw,24em);height:auto;display:block;margin:.6em auto}"
        ".link{font:600 1.15em/1.3 ui-monospace,monospace;word-break:break-all;margin:.3em 0}"
        ".typed{color:#444}.wifi{margin-top:1.5em;border-top:1px solid #ccc;padding-top:1em}"
        ".wifi .qr{width:min(60vw,14em)}"
        f"@media print{{body{{font-size:{type_size}}}main{{max-width:none;padding:0}}"
        f"h1{{font-size:{title}}}.qr{{width:{qr_side}}}"
        ".wifi{display:grid;grid-template-columns:auto 1fr;gap:0 1.5em;align-items:center;"
        "text-align:left}.wifi h2{grid-column:1/3;margin:0 0 .3em}"
        f".wifi .qr{{width:{wifi_side};margin:0}}}}"
    )


def poster_html(*, title: str, link: str, typed: str, guest: GuestConfig, paper: str = "a4") -> str:
    """The printable poster: the title, the QR code, the link to type, the Wi-Fi join code."""
    typed_line = (
        f"<p class=typed>or type <span class=link>{escape(typed)}</span></p>"
        if typed and typed != link
        else ""
    )
    wifi = ""
    if guest.wifi_ssid:
        password = (
            f"<br>Password: <b>{escape(guest.wifi_password)}</b>" if guest.wifi_password else ""
        )
        wifi = (
            f"<section class=wifi><h2>Join the Wi-Fi</h2>"
            f"{inline_qr(wifi_join(guest.wifi_ssid, guest.wifi_password))}"
            f"<p>Network: <b>{escape(guest.wifi_ssid)}</b>{password}</p></section>"
        )
    body = (
        f"<main><h1>{escape(title)}</h1><p>Scan to watch</p>"
        f"{inline_qr(link)}<p class=link>{escape(link)}</p>{typed_line}{wifi}</main>"
    )
    return html_page(title, poster_style(paper, guest.accent), body)


@routes.get("/qr")
async def poster(request: web.Request) -> web.Response:
    """The poster to print: `?campaign=NAME` tags its link, `?paper=a5` sizes it for A5."""
    paper = request.query.get("paper", "a4").lower()
    if paper not in PAPERS:
        raise web.HTTPBadRequest(text="paper must be a4 or a5\n")
    guest, identity = request.app[GUEST], request.app[IDENTITY]
    html = await asyncio.to_thread(
        partial(
            poster_html,
            title=display_title(guest.title, identity.event),
            link=guest_link(request),
            typed=identity.typed_url,
            guest=guest,
            paper=paper,
        )
    )
    response = web.Response(text=html, content_type="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


async def captive_probe(request: web.Request) -> web.Response:
    """With `[guest] captive_portal`: a redirect to the event page, which phones show as the
    network's sign-in page; without it, 404 as for any other path."""
    if not request.app[GUEST].captive_portal:
        raise web.HTTPNotFound()
    landing = request.app[IDENTITY].landing_url or "/"
    raise web.HTTPFound(landing, headers={"Cache-Control": "no-store"})


for _path in CAPTIVE_PROBES:
    routes.get(_path)(captive_probe)

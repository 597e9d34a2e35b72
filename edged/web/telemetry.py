"""What guests' players report about themselves: the first frame as the phone saw it, and
each watch-page view of a clip (start, first frame, 3/10/30 s watched, end, unmute), counted
per clip on the box (a view's start also per campaign); the clips' stats for the crew; the
watch page's deferred script.

The live and watch pages measure navigation start to their first presented frame and send it
here with `navigator.sendBeacon`; the histogram shows the ops team what guests see. Guests hold
no token, so this one POST under /api/ is open (auth.GUEST_POSTS): it changes no stored state,
takes a few bytes, and accepts only a known kind and a bounded time. A watch report counts only
with the view token its page carried, once per view and report, once per client, clip and report
in a window, at a bounded rate per client (WatchGuard).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from edged.guest.campaigns import report_label
from edged.guest.clips import HIDDEN, ClipCounts, failing, guest_view, retention_share
from edged.guest.telemetry import MAX_BODY as MAX_REPORT
from edged.guest.telemetry import (
    REPORT_BURST,
    REPORT_CLIENTS,
    REPORT_INTERVAL,
    ClientReports,
    SeenReports,
    WatchReport,
    issue_view,
    parse_watch_report,
    verified_view,
)
from edged.metrics import PLAYER_KINDS
from edged.web.context import CLIPS, GUEST, METRICS
from edged.web.join_guard import ClientLimiter, client_address, client_key, proxy_addresses

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

FIRST_FRAME_BEACON = "/api/v1/player/first-frame"
WATCH_BEACON = "/api/v1/player/watch"
WATCH_SCRIPT = "/static/watch.js"
_SCRIPT = (Path(__file__).parent / "static" / "watch.js").read_bytes()
_SCRIPT_TAG = f'"{hashlib.sha256(_SCRIPT).hexdigest()[:16]}"'
# The guest pages show the poster only to a phone that has no frame after this long: fetched at
# once it competes with the first frame for the link and the CPUs (the phone's decode, the
# box's JPEG encode for a live poster).
POSTER_AFTER_MS = 500
MAX_BODY = 256
MAX_SECONDS = 60.0


@dataclass(frozen=True)
class FirstFrame:
    kind: str
    seconds: float


def parse_first_frame(body: bytes) -> FirstFrame:
    """The report in a beacon's body; ValueError with a short reason when it is not one."""
    if len(body) > MAX_BODY:
        raise ValueError(f"a report is at most {MAX_BODY} bytes")
    try:
        report = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError('send JSON: {"kind": ..., "seconds": ...}') from None
    if not isinstance(report, dict):
        raise ValueError("send a JSON object")
    kind, seconds = report.get("kind"), report.get("seconds")
    if kind not in PLAYER_KINDS:
        raise ValueError(f"kind is one of {', '.join(PLAYER_KINDS)}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("seconds is a number")
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds is over 0 and at most {MAX_SECONDS:g}")
    return FirstFrame(kind, float(seconds))


@routes.post(FIRST_FRAME_BEACON)
async def first_frame(request: web.Request) -> web.Response:
    body = await request.content.read(MAX_BODY + 1)
    try:
        report = parse_first_frame(body)
    except ValueError as error:
        logger.info("player report refused: %s", error)
        return web.json_response({"error": str(error)}, status=400)
    request.app[METRICS].live.player_first_frame.labels(report.kind).observe(report.seconds)
    return web.Response(status=204)


@dataclass
class WatchGuard:
    """What the box keeps to count watch reports honestly: the key of its view tokens (made at
    each start: nothing on disk; a page open across a restart stops counting), each (token,
    report) once, each (client, clip, report) once a window, and a bounded rate per client
    (behind a trusted proxy, X-Forwarded-For's: join_guard)."""

    proxies: frozenset[str] = frozenset()
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    seen: SeenReports = field(default_factory=SeenReports)
    recent: ClientReports = field(default_factory=ClientReports)
    limiter: ClientLimiter = field(
        default_factory=lambda: ClientLimiter(REPORT_BURST, REPORT_INTERVAL, REPORT_CLIENTS)
    )

    def issue(self, clip: str) -> str:
        """A view token for one watch page of `clip` (monotonic time: a clock set at the event
        does not void the pages open)."""
        return issue_view(self.key, clip, int(time.monotonic()), secrets.token_hex(8))

    def counts(self, client: str, report: WatchReport) -> bool:
        """Whether `report` from `client` counts: a fresh token of its clip, its first time."""
        now = time.monotonic()
        if not verified_view(self.key, report.view_id, report.clip, int(now)):
            return False
        return self.seen.first(report) and self.recent.first(client, report, now)


WATCH_GUARD = web.AppKey("watch_guard", WatchGuard)


def install(app: web.Application) -> None:
    """The state the watch reports keep (the routes are `routes`)."""
    app[WATCH_GUARD] = WatchGuard(proxy_addresses(app[GUEST].trusted_proxies))


def _shown(request: web.Request, clip: str) -> bool:
    """Whether guests may have clip `clip` now: on the box and not hidden (staged, withdrawn,
    withheld). Reports of any other clip get the same answer, so none tells a staged name."""
    store = request.app.get(CLIPS)
    if store is None or store.get(clip) is None:
        return False
    return guest_view(store.facts.get(clip), time.time(), signed_up=True) != HIDDEN


@routes.post(WATCH_BEACON)
async def watch_report(request: web.Request) -> web.Response:
    """One report of a watch-page view; counted once (WatchGuard.counts), only for a clip guests
    may have now (the label is never a free string from the request). 204 counted or not."""
    guard = request.app[WATCH_GUARD]
    forwarded = request.headers.getall("X-Forwarded-For", [])
    client = client_key(client_address(request.remote, forwarded, guard.proxies))
    if not guard.limiter.allow(client, time.monotonic()):
        logger.debug("watch report refused: too many from one client")
        return web.json_response({"error": "too many reports; slow down"}, status=429)
    body = await request.content.read(MAX_REPORT + 1)
    try:
        report = parse_watch_report(body)
    except ValueError as error:
        logger.info("watch report refused: %s", error)
        return web.json_response({"error": str(error)}, status=400)
    if not _shown(request, report.clip):
        logger.debug("watch report not counted: no clip %.40r shown to guests", report.clip)
        return web.Response(status=204)
    if not guard.counts(client, report):
        return web.Response(status=204)  # no token of the box's, sent before, or counted lately
    clips = request.app[METRICS].clips
    clips.reports.labels(report.label).inc()
    if report.is_view:
        clips.view(report.clip)
        campaign = report_label(report.campaign, request.app[GUEST].campaigns)
        request.app[METRICS].guest.clip_views.labels(campaign).inc()
    elif report.is_retained:
        clips.retained(report.clip)
    elif report.report == "end":
        clips.watched.observe(report.seconds)
    return web.Response(status=204)


@routes.get("/api/v1/clips/stats")
async def clip_stats(request: web.Request) -> web.Response:
    """Views and 10-second retention of each clip on the box since the start; `flagged` when it
    sinks (under [guest] min_retention_10s after min_views views), never deleted. The crew's
    (the token: edged/web/auth.py CREW_READS)."""
    store = request.app.get(CLIPS)
    if store is None:
        raise web.HTTPServiceUnavailable(text="the clip cache is not running\n")
    guest = request.app[GUEST]
    counts = request.app[METRICS].clips.counts()
    rows = []
    for asset in store.assets():
        count = counts.get(asset.name, ClipCounts())
        share = retention_share(count)
        rows.append(
            {
                "clip": asset.name,
                "views": count.views,
                "retained_10s": count.retained_10s,
                "retention_10s": None if share is None else round(share, 4),
                "flagged": failing(count, guest.min_retention_10s, guest.min_views),
            }
        )
    return web.json_response(
        {"min_retention_10s": guest.min_retention_10s, "min_views": guest.min_views, "clips": rows}
    )


@routes.get(WATCH_SCRIPT)
async def watch_script(request: web.Request) -> web.Response:
    """The watch page's reports, loaded with `defer` (after the first frame's markup)."""
    if request.headers.get("If-None-Match") == _SCRIPT_TAG:
        return web.Response(status=304, headers={"ETag": _SCRIPT_TAG})
    return web.Response(
        body=_SCRIPT,
        content_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "ETag": _SCRIPT_TAG},
    )

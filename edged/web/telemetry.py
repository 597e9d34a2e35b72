"""What guests' players report about themselves: the first frame as the phone saw it.

The live and watch pages measure navigation start to their first presented frame and send it
here with `navigator.sendBeacon`; the histogram shows the ops team what guests see. Guests hold
no token, so this one POST under /api/ is open (auth.GUEST_POSTS): it changes no stored state,
takes a few bytes, and accepts only a known kind and a bounded time.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

from aiohttp import web

from edged.metrics import PLAYER_KINDS
from edged.web.context import METRICS

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

FIRST_FRAME_BEACON = "/api/v1/player/first-frame"
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

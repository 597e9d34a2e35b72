"""The JSON API under /api/v1/."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from aiohttp import web

from edged.cache.upstream import counted_status
from edged.clips.jobstate import BadRequest, parse_request
from edged.clips.plan import ClipRefused
from edged.clock import clock_synchronized
from edged.errors import ConfigError
from edged.restream.policy import public_stream
from edged.web.auth import has_token
from edged.web.context import (
    CLIP_JOBS,
    DEVICE_REPORT,
    IDENTITY,
    READINESS,
    RELOADER,
    REPLICATION,
    RESTREAM,
    STREAM_STATUS,
)

routes = web.RouteTableDef()
logger = logging.getLogger(__name__)

_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/:'\"]+/)*([^\s/:'\"]+)")


def without_directories(message: str) -> str:
    """A message for an HTTP client: each absolute path cut to its file name."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    """Who this box is, how long it has run, and which subsystems are up.

    `node` is the configured identity (metrics labels, object keys); `advertised_name` is what the
    box answers to on the LAN as `<name>.local` (null with mDNS off), renamed on a conflict.
    Without the admin token, `replication` only counts clips (upstream.counted_status).
    """
    identity, readiness = request.app[IDENTITY], request.app[READINESS]
    replication = request.app.get(REPLICATION)
    report = replication() if replication is not None else None
    if report is not None and not has_token(request):
        report = counted_status(report)
    synchronized = await asyncio.to_thread(clock_synchronized)
    return web.json_response(
        {
            "node": identity.node,
            # false: names and dates of recordings may be wrong (no RTC, no NTP yet)
            "clock_synchronized": synchronized,
            "advertised_name": identity.advertised_name or None,
            "landing_url": identity.landing_url or None,
            "event": identity.event,
            "version": identity.version,
            "ready": readiness.ready,
            "started_at": identity.started_at,
            "uptime_seconds": round(time.monotonic() - identity.started_monotonic, 3),
            "subsystems": readiness.subsystems,
            "replication": report,
        }
    )


@routes.get("/api/v1/devices")
async def devices(request: web.Request) -> web.Response:
    """The board and every video node with its kind, stream name, capabilities and reason."""
    report = request.app.get(DEVICE_REPORT)
    if report is None:
        return web.json_response({"error": "the device subsystem is not running"}, status=503)
    return web.json_response(report())


@routes.get("/api/v1/streams")
async def streams(request: web.Request) -> web.Response:
    """Every stream: state and reason, source, encoder, size, recording, frame counts."""
    status = request.app.get(STREAM_STATUS)
    if status is None:
        return web.json_response({"error": "the media subsystem is not running"}, status=503)
    entries = status() if has_token(request) else [public_stream(entry) for entry in status()]
    return web.json_response({"streams": entries})


@routes.get("/api/v1/restream")
async def restream(request: web.Request) -> web.Response:
    """Every restream destination: stream, masked URL, on or off, state with its last error,
    reconnects, bytes and frames (offered, sent, dropped, queued)."""
    control = request.app.get(RESTREAM)
    if control is None:
        return web.json_response({"error": "restreaming is not running"}, status=503)
    return web.json_response({"destinations": control.status()})


@routes.post(r"/api/v1/restream/{name:[A-Za-z0-9][A-Za-z0-9_-]{0,62}}/{switch:enable|disable}")
async def switch_restream(request: web.Request) -> web.Response:
    """Switch a destination on or off (the token guards it); its status after. Until the next
    start: the config says what a start begins with."""
    control = request.app.get(RESTREAM)
    if control is None:
        return web.json_response({"error": "restreaming is not running"}, status=503)
    name = request.match_info["name"]
    status = control.set_enabled(name, request.match_info["switch"] == "enable")
    if status is None:
        return web.json_response({"error": f"no restream destination {name!r}"}, status=404)
    return web.json_response({"destination": status})


@routes.post("/api/v1/reload")
async def reload(request: web.Request) -> web.Response:
    """Re-read the config file; 400 with the reason when it is invalid (nothing changes then)."""
    try:
        result = await request.app[RELOADER].reload()
    except ConfigError as error:
        return web.json_response({"error": without_directories(str(error))}, status=400)
    return web.json_response(result)


# -- clips and their jobs -----------------------------------------------------------------------


def _no_clip_jobs() -> web.Response:
    return web.json_response({"error": "clip jobs are not running on this box"}, status=503)


@routes.post("/api/v1/clips")
async def make_clip(request: web.Request) -> web.Response:
    """Queue a clip job: stream, start and end (RFC 3339) or last_seconds, title, variants
    (original, vertical), mode (fill, crop), x_offset, publish_at. 202 with the job; 400 for a
    malformed field, 422 for a range that cannot be cut (with what is recorded)."""
    queue = request.app.get(CLIP_JOBS)
    if queue is None:
        return _no_clip_jobs()
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    try:
        clip = parse_request(body, time.time(), queue.default_mode)
        job = await queue.submit(clip)
    except BadRequest as error:
        logger.info("clip request refused: %s", error)
        return web.json_response({"error": str(error)}, status=400)
    except ClipRefused as refused:
        logger.info("clip request refused: %s", refused.reason)
        available = [span.as_json() for span in refused.available]
        return web.json_response({"error": refused.reason, "available": available}, status=422)
    headers = {"Location": f"/api/v1/jobs/{job['id']}"}
    return web.json_response({"job": job}, status=202, headers=headers)


@routes.get("/api/v1/jobs")
async def clip_jobs(request: web.Request) -> web.Response:
    """The newest clip jobs first, with state, progress and ETA."""
    queue = request.app.get(CLIP_JOBS)
    if queue is None:
        return _no_clip_jobs()
    return web.json_response({"jobs": await queue.jobs()})


@routes.get(r"/api/v1/jobs/{job:\d{1,12}}")
async def clip_job(request: web.Request) -> web.Response:
    queue = request.app.get(CLIP_JOBS)
    if queue is None:
        return _no_clip_jobs()
    job = await queue.job(int(request.match_info["job"]))
    if job is None:
        return web.json_response({"error": "no such clip job"}, status=404)
    return web.json_response(job)

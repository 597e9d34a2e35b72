"""The JSON API under /api/v1/."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from edged.clock import clock_synchronized
from edged.errors import ConfigError
from edged.web.context import (
    DEVICE_REPORT,
    IDENTITY,
    READINESS,
    RELOADER,
    REPLICATION,
    STREAM_STATUS,
)

routes = web.RouteTableDef()

_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/:'\"]+/)*([^\s/:'\"]+)")


def without_directories(message: str) -> str:
    """A message for an HTTP client: each absolute path cut to its file name."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    """Who this box is, how long it has run, and which subsystems are up.

    `node` is the configured identity (metrics labels, object keys); `advertised_name` is what the
    box answers to on the LAN as `<name>.local` (null with mDNS off), renamed on a conflict.
    """
    identity, readiness = request.app[IDENTITY], request.app[READINESS]
    replication = request.app.get(REPLICATION)
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
            "replication": replication() if replication is not None else None,
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
    return web.json_response({"streams": status()})


@routes.post("/api/v1/reload")
async def reload(request: web.Request) -> web.Response:
    """Re-read the config file; 400 with the reason when it is invalid (nothing changes then)."""
    try:
        result = await request.app[RELOADER].reload()
    except ConfigError as error:
        return web.json_response({"error": without_directories(str(error))}, status=400)
    return web.json_response(result)

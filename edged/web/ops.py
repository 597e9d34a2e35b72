"""Health checks and the Prometheus endpoint."""

from __future__ import annotations

import asyncio

from aiohttp import web

from edged.metrics import CONTENT_TYPE
from edged.web.context import METRICS, READINESS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Every subsystem has started and no task keeps failing; 503 naming what is wrong."""
    readiness = request.app[READINESS]
    body = {
        "ready": readiness.ready,
        "subsystems": readiness.subsystems,
        "failing_tasks": readiness.failing_tasks(),
    }
    return web.json_response(body, status=200 if readiness.ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition (collected in a thread: it reads /proc)."""
    body = await asyncio.to_thread(request.app[METRICS].exposition)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response

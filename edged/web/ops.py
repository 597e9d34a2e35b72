"""Health checks and the Prometheus endpoint."""

from __future__ import annotations

import asyncio

from aiohttp import web

from edged.metrics import CONTENT_TYPE
from edged.web.context import CONTEXT

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Every subsystem has started and no task keeps failing; 503 naming what is wrong."""
    context = request.app[CONTEXT]
    body = {
        "ready": context.ready,
        "subsystems": context.subsystems,
        "failing_tasks": context.failing_tasks(),
    }
    return web.json_response(body, status=200 if context.ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition (collected in a thread: it reads /proc)."""
    body = await asyncio.to_thread(request.app[CONTEXT].metrics.exposition)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response

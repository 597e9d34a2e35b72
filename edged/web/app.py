"""The aiohttp application factory and the server runner."""

from __future__ import annotations

import errno
import logging
import socket

from aiohttp import web
from aiohttp.typedefs import Handler

from edged.errors import StartupError
from edged.web import api, assets, live, ops, pages, uploads_api
from edged.web.auth import require_token
from edged.web.context import CONTEXT, WebContext

logger = logging.getLogger(__name__)

# Headers past this many bytes are refused with 431 by aiohttp's parser.
MAX_FIELD_SIZE = 8190


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def create_app(context: WebContext) -> web.Application:
    """The whole HTTP surface of edged, wired to one WebContext."""
    app = web.Application(middlewares=[security_headers, require_token], client_max_size=1024**2)
    app[CONTEXT] = context
    app[live.POSTERS] = {}
    app[live.HLS_CLIENTS] = {}
    for table in (
        ops.routes,
        api.routes,
        uploads_api.routes,
        live.routes,
        assets.routes,
        pages.routes,
    ):
        app.router.add_routes(table)
    return app


class HttpServer:
    """Runs the app on host:port; `port` is the bound one (useful with port 0)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            handler_cancellation=True,
        )
        self._host = host
        self._requested_port = port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
        except OSError as error:
            sock.close()
            await self._runner.cleanup()
            hint = (
                "another program (or another edged) uses it; choose another with --port "
                "or [http] port"
                if error.errno == errno.EADDRINUSE
                else "check [http] host"
            )
            raise StartupError(
                f"cannot listen on {self._host}:{self._requested_port}: {error.strerror}; {hint}"
            ) from error
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()

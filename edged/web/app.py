"""The aiohttp application factory and the server runner."""

from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from edged.errors import StartupError
from edged.web import (
    api,
    assets,
    crew,
    event_page,
    guest_qr,
    join,
    live,
    ops,
    pages,
    telemetry,
    uploads_api,
)
from edged.web.auth import require_token
from edged.web.context import WebServices

logger = logging.getLogger(__name__)

# Headers past this many bytes are refused with 400 by aiohttp's parser.
MAX_FIELD_SIZE = 8190
# Seconds a connection may sit without a whole request head: from its opening (a socket that
# never sends, or sends half a request) and after each response (an idle keep-alive). aiohttp
# (3.14) runs one timer for both, armed at connection_made and not reset by partial data.
IDLE_TIMEOUT = 15.0
# Connections the kernel holds for the accept loop: a crowd of phones connecting at once (a QR
# code on a screen) must wait in the queue, not lose its SYN and retry a second later. The
# kernel caps it at net.core.somaxconn (4096 on current kernels).
LISTEN_BACKLOG = 4096
# Descriptors edged asks for (one per phone connection, plus files): the soft limit of a shell
# is often 1,024; systemd's unit sets LimitNOFILE to this.
OPEN_FILES = 65536
# A malformed request is logged as a warning at most this often; the rest at debug.
MALFORMED_WARNING_INTERVAL = 60.0


class Throttle:
    """WARNING at most once per interval, DEBUG in between; `now` is passed in."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = float("-inf")

    def level(self, now: float) -> int:
        if now < self._next:
            return logging.DEBUG
        self._next = now + self._interval
        return logging.WARNING


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, with a request its parser refused as one line instead of a
    traceback: a phone's (or an attacker's) malformed request is not edged's error."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(target, {})
        self._throttle = Throttle(MALFORMED_WARNING_INTERVAL)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            logger.log(
                self._throttle.level(time.monotonic()),
                "refused a malformed request from %s: %s (HTTP %d)",
                args[0] if args else "a client",
                type(error).__name__,
                error.code,
            )
            return
        super().exception(msg, *args, **kwargs)


@web.middleware
async def last_resort(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An exception no handler expected: one log record with its traceback, and a 500 that
    says nothing about it (the exception text may hold paths or secrets)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.rel_url)
        if request.writer.output_size > 0 and request.transport is not None:
            request.transport.close()  # the answer had begun: cut it, no second status line
        return web.json_response({"error": "internal error; see the edged log"}, status=500)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def create_app(services: WebServices) -> web.Application:
    """The whole HTTP surface of edged; each route finds the one interface it uses by its key."""
    app = web.Application(
        middlewares=[security_headers, last_resort, require_token], client_max_size=1024**2
    )
    services.install(app)
    for table in (
        ops.routes,
        api.routes,
        uploads_api.routes,
        live.routes,
        assets.routes,
        pages.routes,
        telemetry.routes,
        guest_qr.routes,
        join.routes,
    ):
        app.router.add_routes(table)
    event_page.install(app)
    telemetry.install(app)
    crew.install(app)
    return app


def server_options(idle_timeout: float = IDLE_TIMEOUT) -> dict[str, Any]:
    """The aiohttp server settings edged runs with (tests hand them to aiohttp's TestServer)."""
    return {
        "access_log": None,
        "handle_signals": False,
        "shutdown_timeout": 2.0,
        "handler_cancellation": True,
        "keepalive_timeout": idle_timeout,
        "max_field_size": MAX_FIELD_SIZE,
        "logger": ServerLog(logging.getLogger("aiohttp.server")),
    }


def open_files_wanted(soft: int, hard: int, wanted: int = OPEN_FILES) -> int | None:
    """The soft limit on open files to set, or None to leave it (already enough, or capped)."""
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return target if soft != resource.RLIM_INFINITY and soft < target else None


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = open_files_wanted(soft, hard)
    if target is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        logger.debug("open files: soft limit %d -> %d", soft, target)


class HttpServer:
    """Runs the app on host:port; `port` is the bound one (useful with port 0)."""

    def __init__(
        self, app: web.Application, host: str, port: int, idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        self._runner = web.AppRunner(app, **server_options(idle_timeout))
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
        raise_open_file_limit()
        site = web.SockSite(self._runner, sock, backlog=LISTEN_BACKLOG)
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()

"""The aiohttp app in process with a real client: routes, the token guard, headers."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edged.errors import ConfigError
from edged.web.api import without_directories
from edged.web.app import HttpServer, Throttle, create_app
from edged.web.context import READINESS
from tests.web_context import web_context

TOKEN = "t" * 43


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    calls: list[str] = []

    async def reload() -> dict[str, Any]:
        calls.append("reload")
        if len(calls) > 1:
            raise ConfigError("edged.toml: node.nmae: unknown key")
        return {"reloaded": True, "applied": [], "restart_required": []}

    context = web_context(tmp_path, node="box<1>", reload=reload)
    async with TestClient(TestServer(create_app(context), host="127.0.0.1")) as test_client:
        yield test_client


async def test_guard_on_state_changing_calls(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/v1/reload")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.post("/api/v1/reload", headers={"Authorization": "Basic abc"})
    assert response.status == 401
    response = await client.post("/api/v1/reload", headers={"Authorization": "Bearer nope"})
    assert response.status == 403
    response = await client.post("/api/v1/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    response = await client.post("/api/v1/reload", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 400
    assert "node.nmae: unknown key" in (await response.json())["error"]


async def test_unknown_state_changing_route_is_guarded_before_404(
    client: TestClient[Any, Any],
) -> None:
    assert (await client.delete("/api/v1/anything")).status == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.delete("/api/v1/anything", headers=headers)).status == 404


async def test_readiness_follows_subsystems(client: TestClient[Any, Any]) -> None:
    response = await client.get("/readyz")
    assert response.status == 503
    assert client.app is not None
    client.app[READINESS].started("http")
    response = await client.get("/readyz")
    assert response.status == 200


async def test_landing_page_escapes_and_is_small(client: TestClient[Any, Any]) -> None:
    response = await client.get("/")
    body = await response.text()
    assert response.status == 200
    assert "<small>box&lt;1&gt;</small>" in body  # the box's name small (#16)
    assert "<h1>gala</h1>" in body  # the event as the title, never the host name
    assert len(body.encode()) < 8 * 1024  # the shell: style, script (#16: 30 KB with tiles)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_metrics_content_type(client: TestClient[Any, Any]) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert "edged_disk_free_bytes" in await response.text()


async def test_huge_header_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={"X-Big": "a" * 20000})
    assert response.status in (400, 431)


# -- hostile input: a 4xx with a short reason, one log line at most ----------------------------


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes (headers aiohttp's client would refuse to send) and read to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture
async def edged_server(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, web.Application]]:
    """edged's own HttpServer (its aiohttp settings) on loopback, idle connections cut at 0.5 s."""

    context = web_context(tmp_path)
    app = create_app(context)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError(f"internal detail {tmp_path}")

    app.router.add_get("/boom", boom)
    server = HttpServer(app, "127.0.0.1", 0, idle_timeout=0.5)
    await server.start()
    yield server, app
    await server.stop()


async def test_an_unexpected_error_is_a_bare_500_and_one_log_record(
    edged_server: tuple[HttpServer, web.Application],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = edged_server
    answer = await raw_exchange(server.port, b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 500
    assert b"internal detail" not in answer and str(tmp_path).encode() not in answer
    assert b"nosniff" in answer
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is not None


async def test_a_bearer_token_that_is_not_utf8_is_refused(
    edged_server: tuple[HttpServer, web.Application],
) -> None:
    server, _ = edged_server
    answer = await raw_exchange(
        server.port,
        b"POST /api/v1/reload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\x80\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 403


async def test_a_huge_header_is_one_line_in_the_log(
    edged_server: tuple[HttpServer, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = edged_server
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        answer = await raw_exchange(
            server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        )
        assert status_of(answer) in (400, 431)
        assert len(answer) < 10_000
    records = [r for r in caplog.records if r.name.startswith(("aiohttp", "edged"))]
    assert len(records) == 3, [r.getMessage() for r in records]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_throttle_warns_once_per_interval() -> None:
    throttle = Throttle(60.0)
    levels = [throttle.level(now) for now in (0.0, 1.0, 59.9, 60.0, 61.0)]
    assert levels == [
        logging.WARNING,
        logging.DEBUG,
        logging.DEBUG,
        logging.WARNING,
        logging.DEBUG,
    ]


async def eof_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What is left to read until the server closes; TimeoutError if it does not in time."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_idle_and_half_open_connections_are_closed(
    edged_server: tuple[HttpServer, web.Application],
) -> None:
    """A socket that never sends, one that sends half a request head, and one idle after a
    keep-alive answer: the server closes each (EOF), well before the test's deadline."""
    server, _ = edged_server
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", server.port)
    half_reader, half = await asyncio.open_connection("127.0.0.1", server.port)
    half.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    kept_reader, kept = await asyncio.open_connection("127.0.0.1", server.port)
    kept.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    async with asyncio.timeout(10):
        assert (await kept_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    try:
        assert await eof_within(silent_reader, 20) == b""
        assert await eof_within(half_reader, 20) == b""
        assert (await eof_within(kept_reader, 20)).endswith(b'"ok"}')
    finally:
        for writer in (silent, half, kept):
            writer.close()


@pytest.mark.parametrize(
    ("message", "public"),
    [
        ("/etc/edged/edged.toml: node.nmae: unknown key", "edged.toml: node.nmae: unknown key"),
        ("cannot read '/var/lib/edged/a.toml'", "cannot read 'a.toml'"),
        ("upstream http://s3.local:9000/x is down", "upstream http://s3.local:9000/x is down"),
        ("http.port = 3/4: must be an integer", "http.port = 3/4: must be an integer"),
    ],
)
def test_refusals_name_files_not_directories(message: str, public: str) -> None:
    assert without_directories(message) == public


async def test_status_says_whether_the_clock_is_synchronized(
    client: TestClient[Any, Any],
) -> None:
    from edged.clock import clock_synchronized

    body = await (await client.get("/api/v1/status")).json()
    assert "clock_synchronized" in body
    assert body["clock_synchronized"] == clock_synchronized()  # what the kernel says here


def test_the_open_file_limit_is_raised_to_what_a_crowd_needs_never_lowered() -> None:
    from resource import RLIM_INFINITY

    from edged.web.app import OPEN_FILES, open_files_wanted

    assert open_files_wanted(1024, 524288) == OPEN_FILES
    assert open_files_wanted(1024, 4096) == 4096  # capped by the hard limit
    assert open_files_wanted(1024, RLIM_INFINITY) == OPEN_FILES
    assert open_files_wanted(OPEN_FILES, 524288) is None
    assert open_files_wanted(100000, 524288) is None
    assert open_files_wanted(RLIM_INFINITY, RLIM_INFINITY) is None
    assert open_files_wanted(4096, 4096) is None


async def test_a_crowd_connecting_at_once_waits_in_a_deep_listen_queue(
    edged_server: tuple[HttpServer, web.Application],
) -> None:
    """aiohttp's default backlog (128) drops the SYNs of a crowd scanning one QR code: those
    phones retry a second later. The kernel reports a listening socket's backlog as its Send-Q."""
    from edged.web.app import LISTEN_BACKLOG

    server, _ = edged_server
    listing = await asyncio.to_thread(
        subprocess.run,
        ["ss", "-ltnH", f"sport = :{server.port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    somaxconn = int(await asyncio.to_thread(Path("/proc/sys/net/core/somaxconn").read_text))
    backlog = int(listing.stdout.split()[2])
    assert backlog == min(LISTEN_BACKLOG, somaxconn) and backlog > 128, listing.stdout

"""Hostile HTTP against real servers on loopback: any Range header answered alike for pinned and
unpinned clips, bad input as a 4xx with one log line at most, idle sockets closed."""

from __future__ import annotations

import asyncio
import json
import re
import resource
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edged.cache.store import AssetStore
from edged.web.app import IDLE_TIMEOUT, HttpServer, create_app
from edged.web.context import WebServices
from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.web_context import web_context

pytestmark = pytest.mark.integration


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw request (bytes no HTTP client library would send) on its own connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def get_with_range(port: int, path: str, value: bytes) -> tuple[int, dict[str, str], bytes]:
    return exchange(
        port,
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Range: " + value + b"\r\n\r\n",
    )


# -- one Range decision for pinned and unpinned clips -----------------------------------------


class ServerThread:
    """edged's HttpServer on its own event loop in a thread, for synchronous hypothesis tests."""

    def __init__(self, context: WebServices) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = HttpServer(create_app(context), "127.0.0.1", 0)

    def __enter__(self) -> int:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(30)
        return self._server.port

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(30)
        asyncio.run_coroutine_threadsafe(self._loop.shutdown_default_executor(), self._loop).result(
            30
        )
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


class ClipServer:
    def __init__(self, port: int, data: bytes) -> None:
        self.port, self.data = port, data

    def __repr__(self) -> str:  # a failing example prints the header, not the clip's bytes
        return f"ClipServer(port={self.port}, {len(self.data)} bytes)"


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipServer]:
    """The same clip cached twice, `pinned.mp4` (head in RAM) and `plain.mp4`: port, bytes."""
    root = tmp_path_factory.mktemp("clips")
    store = AssetStore(root / "cache", max_bytes=10**9)
    clip = make_clip(root / "source.mp4", seconds=1)
    store.add(clip, "pinned.mp4", pin=True, origin="test")
    store.add(clip, "plain.mp4", pin=False, origin="test")
    data = store.path("pinned.mp4").read_bytes()
    assert store.path("plain.mp4").read_bytes() == data
    hot = store.hot("pinned.mp4")
    assert hot is not None and 0 < len(hot) < len(data)  # so ranges cross from RAM into the file

    context = web_context(root, clips=store)
    with ServerThread(context) as port:
        yield ClipServer(port, data)


_position = st.one_of(
    st.integers(0, 40_000).map(str),  # the clip is a few tens of KiB; its RAM head a few KiB
    st.sampled_from(["", "0", "00", "-0", "9" * 4301, "0" * 40 + "7", "\u0663", "\uff11", " "]),
)
_spec = st.builds(lambda first, last: f"{first}-{last}", _position, _position)
_range_set = st.builds(
    lambda unit, specs, separator: unit + "=" + separator.join(specs),
    st.sampled_from(["bytes", "BYTES", "Bytes", "items", "", "bytes ", "bytez"]),
    st.lists(_spec | st.text("0123456789-=, abc", max_size=12), max_size=3),
    st.sampled_from([",", ", ", " ,"]),
)
_header = (_range_set | st.text(max_size=40)).filter(lambda v: not set(v) & set("\r\n\x00"))


@given(_header)
@example("bytes=-0")
@example("bytes=abc-def")
@example("items=0-10")
@example("bytes=")
@example("bytes=\u0660-\u0669")
@example("bytes=0-" + "9" * 4301)
@example("bytes=" + "9" * 4301 + "-")
@example("bytes=0-1,5-6")
@example("bytes=0-99")
@example("bytes=100-20000")
def test_pinned_and_unpinned_answer_any_range_alike(clip_server: ClipServer, header: str) -> None:
    port, data = clip_server.port, clip_server.data
    value = header.encode("utf-8")
    pinned = get_with_range(port, "/assets/pinned.mp4", value)
    plain = get_with_range(port, "/assets/plain.mp4", value)
    assert pinned[0] == plain[0], header
    assert pinned[1].get("content-range") == plain[1].get("content-range"), header
    assert pinned[2] == plain[2], header
    status, headers, body = pinned
    assert status in (200, 206, 416, 400, 431), header
    if status == 200:
        assert body == data
    if status == 206:
        first, last = headers["content-range"].split()[1].split("/")[0].split("-")
        assert body == data[int(first) : int(last) + 1]
    if status == 416:
        assert headers["content-range"] == f"bytes */{len(data)}"


def test_the_pinned_clip_is_answered_from_memory(clip_server: ClipServer) -> None:
    """The property above compares the RAM-head path with the file path, not the file twice."""
    assert get_with_range(clip_server.port, "/assets/pinned.mp4", b"bytes=0-99")[0] == 206
    status, _, metrics = exchange(
        clip_server.port, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    served = re.search(rb'edged_cache_requests_total\{result="hit_memory"\} ([0-9.]+)', metrics)
    assert status == 200 and served is not None and float(served.group(1)) >= 1


# -- the daemon under hostile input -------------------------------------------------------------


def put_clip(url: str, token: str, clip: Path) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback test URL
        url, data=clip.read_bytes(), method="PUT", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 201


def test_hostile_requests_get_a_4xx_and_one_line_at_most(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}, "media": {"test_pattern": "off"}})
    assert daemon.data_dir is not None
    data_dir = str(daemon.data_dir).encode()
    token = (daemon.data_dir / "admin.token").read_text().strip()
    port = int(daemon.url.rsplit(":", 1)[1])
    clip = make_clip(tmp_path / "teaser.mp4", seconds=1)
    put_clip(daemon.url + "/api/v1/assets/pinned.mp4?pin=true", token, clip)
    put_clip(daemon.url + "/api/v1/assets/plain.mp4", token, clip)
    answers = []
    for name in ("pinned.mp4", "plain.mp4"):
        for value in (b"bytes=" + b"9" * 4301 + b"-", b"bytes=-" + b"9" * 4301, b"bytes=-0"):
            answers.append(get_with_range(port, f"/assets/{name}", value)[0])
    assert answers == [416, 206, 416] * 2  # a suffix longer than the clip is all of it
    status, _, body = exchange(
        port,
        b"POST /api/v1/reload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\x80abc\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 403
    status, _, body = exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    )
    assert status in (400, 431)
    nested = b"[" * 200_000 + b"]" * 200_000
    status, _, body = exchange(
        port,
        b"POST /api/v1/uploads HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "
        + str(len(nested)).encode()
        + b"\r\n\r\n"
        + nested,
    )
    assert status == 400 and len(body) < 200
    status, _, body = exchange(
        port,
        b"PUT /api/v1/assets/junk.mp4 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        + token.encode()
        + b"\r\nConnection: close\r\nContent-Length: 11\r\n\r\nnot a video",
    )
    assert status == 422 and b"not a media file" in body and data_dir not in body
    assert b"put-" not in body and b"incoming" not in body
    assert daemon.stop() == 0
    assert not [line for line in daemon.lines if "Traceback" in line or "ERROR" in line]
    assert len([line for line in daemon.lines if "malformed request" in line]) == 1


# [http] idle_timeout for the test below: the sockets must outlast the phone served among them
# (each still open after it), and the EOF's deadline stays under the default IDLE_TIMEOUT, so a
# daemon that ignored the key would fail.
SHORT_IDLE_TIMEOUT = 3.0


def still_open(sock: socket.socket) -> bool:
    """No EOF (and no byte) waiting on `sock`: the server has not closed it. Leaves the socket
    non-blocking (a socket with a timeout would wait for one)."""
    sock.settimeout(0)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    return False


def test_a_thousand_idle_sockets_neither_starve_others_nor_stay_open(
    start_daemon: StartDaemon,
) -> None:
    """1,000 sockets that send nothing or half a request head: another phone is still served
    while they are open, and the server closes every one of them (EOF) after [http]
    idle_timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "media": {"test_pattern": "off"},
            "http": {"idle_timeout": SHORT_IDLE_TIMEOUT},
        }
    )
    port = int(daemon.url.rsplit(":", 1)[1])
    idle: list[socket.socket] = []
    try:
        for index in range(1000):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if index % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # half a request head
            idle.append(sock)
        status, _, body = exchange(
            port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert all(still_open(sock) for sock in idle), "closed before the phone was served"
        for sock in idle:
            # A deadline for the EOF, not a measurement; under IDLE_TIMEOUT (see above).
            sock.settimeout(IDLE_TIMEOUT - SHORT_IDLE_TIMEOUT)
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
    assert daemon.stop() == 0

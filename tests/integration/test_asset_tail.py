"""A pinned clip's tail on real loopback sockets: a client that took its head and left costs no
thread and no file read, and each app counts its own asset requests."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edged.cache.store import AssetStore
from edged.loop import run_on
from edged.web import assets
from edged.web.app import create_app
from edged.web.assets import peer_gone, send_tail
from tests.clips import make_clip
from tests.support import eventually, until
from tests.web_context import web_context

pytestmark = pytest.mark.integration


class NoThreads(ThreadPoolExecutor):
    """The loop's default executor in a test that must not use one."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError(f"a thread was asked to run {fn!r}")


def transport_of(writer: asyncio.StreamWriter) -> asyncio.Transport:
    """The writer's transport (uvloop's is not a subclass of asyncio.Transport)."""
    return cast(asyncio.Transport, writer.transport)


def drained(writer: asyncio.StreamWriter) -> Callable[[bytes], Awaitable[None]]:
    """A write that waits while the socket is full, as a response's does."""

    async def write(chunk: bytes) -> None:
        writer.write(chunk)
        await writer.drain()

    return write


def reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a phone's player that drops a connection."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_a_client_that_left_ends_the_tail_without_a_thread(tmp_path: Path) -> None:
    await client_left(tmp_path)


def test_a_client_that_left_ends_the_tail_without_a_thread_on_uvloop(tmp_path: Path) -> None:
    """uvloop has no loop.sendfile: the tail's own fallback, and still no thread."""
    run_on("uvloop", client_left(tmp_path))


async def client_left(tmp_path: Path) -> None:
    clip = tmp_path / "tail.bin"
    await asyncio.to_thread(clip.write_bytes, b"\0" * (4 << 20))
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def keep(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # As asyncio's sendfile leaves it: the reset stays unread.
        transport_of(writer).pause_reading()
        await accepted.put(writer)

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(NoThreads(max_workers=1))
    client = socket.create_connection(server.sockets[0].getsockname()[:2])
    try:
        writer = await asyncio.wait_for(accepted.get(), 30)
        transport = transport_of(writer)
        server_side = writer.transport.get_extra_info("socket")
        assert not peer_gone(server_side)
        reset(client)
        await eventually(lambda: peer_gone(server_side), what="the reset reached the server")
        with clip.open("rb") as handle, pytest.raises(ConnectionResetError):
            await send_tail(transport, handle, 0, 4 << 20, drained(writer))  # fallback: a thread
        # Where the socket was full a moment before (the wait for room): asyncio's sendfile
        # says "not available", uvloop has none; either way no thread reads for a gone client.
        with clip.open("rb") as handle, pytest.raises(ConnectionResetError):
            await assets._send_when_writable(transport, handle, 0, 1 << 20, drained(writer))
        writer.close()
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_a_tail_through_a_full_socket_arrives_whole(tmp_path: Path) -> None:
    """Small socket buffers: the tail goes partly at once and partly when the socket drains."""
    await full_socket(tmp_path)


def test_a_tail_through_a_full_socket_arrives_whole_on_uvloop(tmp_path: Path) -> None:
    """uvloop has no loop.sendfile: what the socket does not take at once is read in a thread
    and written through the response."""
    run_on("uvloop", full_socket(tmp_path))


async def full_socket(tmp_path: Path) -> None:
    clip = tmp_path / "tail.bin"
    data = bytes(range(256)) * (12 << 12) + b"end"  # 12 MiB and a bit, no period of a chunk
    await asyncio.to_thread(clip.write_bytes, data)
    done: asyncio.Queue[BaseException | None] = asyncio.Queue()

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        writer.write(data[:1000])  # the head, through the transport, before the tail
        try:
            with clip.open("rb") as handle:
                tail = len(data) - 1000
                await send_tail(transport_of(writer), handle, 1000, tail, drained(writer))
        except Exception as error:  # reported to the test
            await done.put(error)
        else:
            await done.put(None)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    try:
        client.settimeout(30)
        client.connect(server.sockets[0].getsockname()[:2])
        received = await asyncio.to_thread(read_all, client)
        assert await asyncio.wait_for(done.get(), 30) is None
        assert len(received) == len(data) and received == data
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def test_peer_gone_without_a_socket() -> None:
    assert peer_gone(None)


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def test_a_client_that_closed_its_sending_half_still_gets_its_answer() -> None:
    """Review s8 #12: CLOSE_WAIT (a client that shut down writing after its request, as some
    tools do) was "gone", and on uvloop its tail would stop at the first full socket."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2])
        server_side, _ = listener.accept()
        with client, server_side:
            assert not peer_gone(server_side)
            client.shutdown(socket.SHUT_WR)
            until(lambda: tcp_state(server_side) == 8, what="CLOSE_WAIT on the server's side")
            assert not peer_gone(server_side)
            reset(client)
            until(lambda: peer_gone(server_side), what="the reset reached the server")


def slow_reader(address: tuple[str, int], path: str) -> tuple[bytes, bytes]:
    """A phone on a slow link: a small receive window, read a little at a time; the answer's
    head and body."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    with sock:
        sock.connect(address)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return head, body


async def whole_clip_to_a_slow_phone(tmp_path: Path, clip: Path) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    await asyncio.to_thread(store.add, clip, "slow.mp4", pin=True, origin="test")
    runner = web.AppRunner(create_app(web_context(tmp_path, clips=store)))
    await runner.setup()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # inherited when accepted
    site = web.SockSite(runner, listener)
    await site.start()
    try:
        head, body = await asyncio.to_thread(
            slow_reader, listener.getsockname(), "/assets/slow.mp4"
        )
    finally:
        await runner.cleanup()
    expected = await asyncio.to_thread(store.path("slow.mp4").read_bytes)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert f"Content-Length: {len(expected)}".encode() in head
    assert len(body) == len(expected) and body == expected


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slow")
    return make_clip(folder / "source.mp4", seconds=2, size="640x360")


def test_a_pinned_clip_reaches_a_slow_phone_whole_on_uvloop(
    tmp_path: Path, slow_clip: Path
) -> None:
    """Review s8 #4: through aiohttp's writer (its length and drain), with a socket that is full
    again and again: on uvloop each wait for room is a little written by hand."""
    run_on("uvloop", whole_clip_to_a_slow_phone(tmp_path, slow_clip))


async def test_a_pinned_clip_reaches_a_slow_phone_whole(tmp_path: Path, slow_clip: Path) -> None:
    await whole_clip_to_a_slow_phone(tmp_path, slow_clip)


async def test_each_app_counts_its_own_asset_requests(tmp_path: Path) -> None:
    """The labelled counters are looked up once per metrics registry, not shared between apps."""
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    clip = await asyncio.to_thread(make_clip, tmp_path / "source.mp4", seconds=1)
    await asyncio.to_thread(store.add, clip, "pinned.mp4", pin=True, origin="test")
    counts = []
    for times in (1, 3):
        context = web_context(tmp_path, clips=store)
        async with TestClient(TestServer(create_app(context))) as client:
            for _ in range(times):
                async with client.get("/assets/pinned.mp4", headers={"Range": "bytes=0-99"}) as r:
                    assert r.status == 206 and len(await r.read()) == 100
            async with client.get("/metrics") as r:
                counts.append(await r.text())
    hits = ['edged_cache_requests_total{result="hit_memory"} 1.0', 'hit_memory"} 3.0']
    assert hits[0] in counts[0] and hits[1] in counts[1], counts


async def test_a_file_that_ends_early_closes_the_connection_not_a_short_body(
    tmp_path: Path,
) -> None:
    """Review s7b, A1: a file shorter than its length (truncated while sent) counted the
    missing chunks as sent; the phone waited on a kept-alive connection for bytes never coming."""
    clip = tmp_path / "short.bin"
    await asyncio.to_thread(clip.write_bytes, b"x" * (1 << 20))
    done: asyncio.Queue[BaseException | None] = asyncio.Queue()

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with clip.open("rb") as handle:
                # The file has 1 MiB; the tail says 2.
                await send_tail(transport_of(writer), handle, 0, 2 << 20, drained(writer))
        except ConnectionResetError as error:
            await done.put(error)
        else:
            await done.put(None)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    client = socket.socket()
    try:
        client.settimeout(30)
        client.connect(server.sockets[0].getsockname()[:2])
        received = await asyncio.to_thread(read_all, client)  # ends: the server closed it
        assert isinstance(await asyncio.wait_for(done.get(), 30), ConnectionResetError)
        assert len(received) == 1 << 20
    finally:
        client.close()
        server.close()
        await server.wait_closed()


async def test_a_clip_replaced_while_its_head_goes_out_is_sent_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review s7b, A1: the file was opened by name after the head was written, so a clip
    replaced meanwhile sent the old head and the new tail under the old ETag. Now that answer
    breaks off (the player asks again); a whole pinned clip fetched twice on one kept-alive
    connection comes whole each time."""
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    clip = await asyncio.to_thread(make_clip, tmp_path / "source.mp4", seconds=2)
    await asyncio.to_thread(store.add, clip, "pinned.mp4", pin=True, origin="test")
    original = await asyncio.to_thread(store.path("pinned.mp4").read_bytes)
    replacement = tmp_path / "replacement.mp4"
    await asyncio.to_thread(replacement.write_bytes, bytes(len(original)))
    write = assets._HeadThenFile.write

    async def replaced_after(response: web.StreamResponse, data: Any) -> None:
        await write(response, data)  # the head went out: now the crew replaces the clip
        await asyncio.to_thread(os.link, replacement, tmp_path / "staged")
        await asyncio.to_thread(os.replace, tmp_path / "staged", store.path("pinned.mp4"))

    monkeypatch.setattr(assets._HeadThenFile, "write", replaced_after)
    context = web_context(tmp_path, clips=store)
    async with TestClient(TestServer(create_app(context))) as client:
        async with client.get("/assets/pinned.mp4") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()  # never the old head with the new tail
        monkeypatch.setattr(assets._HeadThenFile, "write", write)
        await asyncio.to_thread(
            store.path("pinned.mp4").write_bytes, original
        )  # as the store has it
        for _ in range(2):  # whole, twice on one connection
            async with client.get("/assets/pinned.mp4") as response:
                assert response.status == 200
                assert await response.read() == original

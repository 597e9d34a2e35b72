"""An S3 store's connections leave from the source address and interface it is given (#20)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edged.s3bucket import (
    BOUND_USER_TIMEOUT_MS,
    bound_socket_options,
    may_bind_to_device,
)
from edged.upload.s3 import S3Store
from tests.s3server import ACCESS_KEY, SECRET_KEY


class _Bucket(BaseHTTPRequestHandler):
    """Answers HEAD /<bucket> (the probe) and notes who asked."""

    peers: list[str]

    def do_HEAD(self) -> None:
        self.peers.append(self.client_address[0])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bucket_server() -> Iterator[tuple[int, list[str]]]:
    peers: list[str] = []
    handler = type("Handler", (_Bucket,), {"peers": peers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, peers
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def store(port: int, source_address: str = "", interface: str = "") -> S3Store:
    return S3Store(
        endpoint=f"127.0.0.1:{port}",
        secure=False,
        region="us-east-1",
        bucket="edged",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        source_address=source_address,
        interface=interface,
    )


def test_connections_leave_from_the_source_address(bucket_server: tuple[int, list[str]]) -> None:
    port, peers = bucket_server
    store(port, source_address="127.0.0.2").probe()
    store(port).probe()
    assert peers == ["127.0.0.2", "127.0.0.1"]


def test_a_store_bound_to_an_interface_uses_it(bucket_server: tuple[int, list[str]]) -> None:
    port, peers = bucket_server
    bound = store(port, source_address="127.0.0.3", interface="lo")
    assert bound.bound_to_device is may_bind_to_device("lo")
    bound.probe()
    assert peers == ["127.0.0.3"]


def test_an_interface_that_cannot_be_bound_leaves_the_source_address_alone(
    bucket_server: tuple[int, list[str]],
) -> None:
    port, peers = bucket_server
    absent = store(port, source_address="127.0.0.4", interface="nosuchif0")
    assert not absent.bound_to_device
    absent.probe()
    assert peers == ["127.0.0.4"]


def test_bound_socket_options() -> None:
    defaults = bound_socket_options("", to_device=True)
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in defaults
    bound = bound_socket_options("wwan0", to_device=True)
    assert bound[: len(defaults)] == defaults
    assert (socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"wwan0") in bound
    assert (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, BOUND_USER_TIMEOUT_MS) in bound
    unbound = bound_socket_options("wwan0", to_device=False)
    assert all(option[1] != socket.SO_BINDTODEVICE for option in unbound)

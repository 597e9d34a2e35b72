"""A real RTMP server for tests and benchmarks: Debian's nginx with libnginx-mod-rtmp, run as a
non-daemon process on loopback with its own prefix and config; and an `on_publish` checker (a
real aiohttp server in a thread) that refuses a wrong stream key with 403."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MODULE_PLACES = (Path("/usr/lib/nginx/modules"), Path("/usr/share/nginx/modules"))
NGINX = "/usr/sbin/nginx"
NGINX_PREFIX = Path("/usr/share/nginx")  # Debian's --prefix


def rtmp_module() -> Path | None:
    """The rtmp module's .so (libnginx-mod-rtmp), or None when it is not installed."""
    available = Path("/usr/share/nginx/modules-available/mod-rtmp.conf")
    if available.exists():
        for word in available.read_text().split():
            if word.rstrip(";").endswith("ngx_rtmp_module.so"):
                path = NGINX_PREFIX / word.rstrip(";")  # relative to nginx's own prefix
                if path.exists():
                    return path
    found = [place / "ngx_rtmp_module.so" for place in MODULE_PLACES]
    return next((path for path in found if path.exists()), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_nginx(
    prefix: Path, config: Path, port: int, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Debian's nginx in the foreground with its own prefix, once it listens on `port` (its
    stderr in <prefix>/logs/stderr.log, shown if it exits first)."""
    with (prefix / "logs" / "stderr.log").open("ab") as stderr:
        process = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + timeout
    while not listening(port):
        if process.poll() is not None:
            log = (prefix / "logs" / "stderr.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{log}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)
            raise RuntimeError(f"nginx not listening on {port} within {timeout} s")
        time.sleep(0.05)  # polling the port, within the deadline above
    return process


def stop_nginx(process: subprocess.Popen[bytes]) -> None:
    """Ask nginx to stop (TERM), and kill it if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class Nginx:
    """nginx serving `rtmp://127.0.0.1:<port>/live/<key>`; `start()` (again after `stop()`)
    binds the same port."""

    def __init__(self, prefix: Path, *, on_publish: str = "", port: int = 0) -> None:
        module = rtmp_module()
        if module is None:
            raise RuntimeError("libnginx-mod-rtmp is not installed (make debs)")
        self.prefix = prefix
        self.port = port or free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "logs").mkdir(exist_ok=True)
        check = f"on_publish {on_publish};" if on_publish else ""
        self.config = prefix / "nginx.conf"
        self.config.write_text(
            f"load_module {module};\n"
            "daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"error_log {prefix / 'logs' / 'error.log'} info;\npid {prefix / 'nginx.pid'};\n"
            "events { worker_connections 64; }\n"
            "rtmp { server {\n"
            f"  listen 127.0.0.1:{self.port};\n  access_log off;\n"
            f"  application live {{ live on; {check} }}\n"
            "} }\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, key: str = "") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live" + (f"/{key}" if key else "")

    def start(self, timeout: float = 10.0) -> None:
        self.process = start_nginx(self.prefix, self.config, self.port, timeout)

    def stop(self) -> None:
        """Kill it (a platform gone at once: connections reset), and wait."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_nginx(prefix: Path, *, on_publish: str = "") -> Iterator[Nginx]:
    server = Nginx(prefix, on_publish=on_publish)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PublishCheck:
    """An aiohttp server (its own loop, in a thread) for nginx's `on_publish`: 2xx for the one
    good key, 403 for any other; `names` lists the keys it was asked about."""

    def __init__(self, good_key: str) -> None:
        self.good_key = good_key
        self.names: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="on-publish", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/publish"

    async def _check(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", ""))
        self.names.append(name)
        return web.Response(status=200 if name == self.good_key else 403)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/publish", self._check)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> PublishCheck:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `host` that signs itself (a CA of its own), and its key: PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "rtmps-cert.pem", directory / "rtmps-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class TlsFront:
    """RTMPS in front of nginx (which has no TLS): a TLS server on loopback, in a thread with
    its own loop, that hands each connection's bytes to nginx's RTMP port and back."""

    def __init__(self, directory: Path, target_port: int) -> None:
        self.cert_file, key_file = self_signed(directory)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert_file, key_file)
        self._target = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tls-front", daemon=True)

    def url(self) -> str:
        return f"rtmps://127.0.0.1:{self.port}/live"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=self._context)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def __enter__(self) -> TlsFront:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Pulled:
    """What a PyAV client decoded of an RTMP stream."""

    def __init__(self) -> None:
        self.video_frames = 0
        self.audio_seconds = 0.0
        self.video_extradata = 0  # bytes of the AVC sequence header the player got
        self.audio_streams = 0
        self.size = (0, 0)


def pull(url: str, frames: int, audio_seconds: float = 0.0, limit: float = 20.0) -> Pulled:
    """Decode `url` until `frames` pictures (and `audio_seconds` of sound) came (blocking)."""
    pulled = Pulled()
    deadline = time.monotonic() + limit
    container: Any
    with av.open(url, timeout=limit, options={"rtmp_live": "live"}) as container:
        video = container.streams.video[0]
        pulled.video_extradata = video.codec_context.extradata_size
        pulled.audio_streams = len(container.streams.audio)
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    pulled.video_frames += 1
                    pulled.size = (frame.width, frame.height)
                elif isinstance(frame, av.AudioFrame):
                    pulled.audio_seconds += frame.samples / frame.sample_rate
            if pulled.video_frames >= frames and pulled.audio_seconds >= audio_seconds:
                return pulled
            if time.monotonic() > deadline:
                break
    raise AssertionError(
        f"pulled {pulled.video_frames} frames and {pulled.audio_seconds:.2f} s of sound in "
        f"{limit} s; wanted {frames} and {audio_seconds}"
    )

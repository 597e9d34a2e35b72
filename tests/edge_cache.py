"""The shipped cache in front (configs/nginx/edged-edge.conf) run by Debian's nginx on loopback,
with its own prefix: the file itself, only its box address, listen port and cache directory
replaced. Its access log names, per request (subrequests too: a playlist's background refresh),
the URI, the status, the cache's verdict and the upstream address when it went on to the box."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.rtmp_server import free_port, start_nginx, stop_nginx

REPO = Path(__file__).resolve().parents[1]
EDGE_CONF = REPO / "configs" / "nginx" / "edged-edge.conf"
LOG_FORMAT = "log_format edge '$uri $status $upstream_cache_status $upstream_addr';"


def rendered_edge_conf(text: str, *, box: str, port: int, cache: Path) -> str:
    """The shipped file for this run: each of the three lines replaced exactly once."""
    for pattern, replacement in (
        (r"proxy_cache_path /var/cache/nginx/edged ", f"proxy_cache_path {cache} "),
        (r"server 192\.168\.1\.20:8080;", f"server {box};"),
        (r"listen 80;", f"listen 127.0.0.1:{port};"),
    ):
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"{pattern!r} is not in {EDGE_CONF.name} once"
    return text


def main_conf(prefix: Path, *, connections: int) -> str:
    temp = prefix / "tmp"
    paths = "".join(
        f"    {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"worker_rlimit_nofile {connections * 2 + 64};\n"
        f"error_log {prefix / 'logs' / 'error.log'} warn;\npid {prefix / 'nginx.pid'};\n"
        f"events {{ worker_connections {connections}; }}\n"
        "http {\n"
        f"    {LOG_FORMAT}\n"
        f"    access_log {prefix / 'logs' / 'access.log'} edge;\n"
        "    log_subrequest on;  # a playlist's background refresh reaches the box too\n"
        f"{paths}"
        f"    include {prefix / 'edged-edge.conf'};\n"
        "}\n"
    )


@dataclass(frozen=True)
class Logged:
    uri: str
    status: int
    cache: str  # HIT, MISS, EXPIRED, UPDATING, BYPASS, or - (not cacheable here)
    upstream: bool  # the request went on to the box


def parse_log(text: str) -> list[Logged]:
    found = []
    for line in text.splitlines():
        uri, status, cache, upstream = line.split(" ", 3)
        found.append(Logged(uri, int(status), cache, upstream.strip() != "-"))
    return found


class EdgeCache:
    """nginx with the shipped edge config in front of `box` (host:port)."""

    def __init__(self, prefix: Path, box: str, *, connections: int = 256) -> None:
        self.prefix = prefix
        self.port = free_port()
        for directory in ("logs", "cache", "tmp"):
            (prefix / directory).mkdir(parents=True, exist_ok=True)
        edge = rendered_edge_conf(
            EDGE_CONF.read_text(), box=box, port=self.port, cache=prefix / "cache"
        )
        (prefix / "edged-edge.conf").write_text(edge)
        self.config = prefix / "nginx.conf"
        self.config.write_text(main_conf(prefix, connections=connections))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.process = start_nginx(self.prefix, self.config, self.port, timeout)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            stop_nginx(process)

    def log(self) -> list[Logged]:
        return parse_log((self.prefix / "logs" / "access.log").read_text())

    def requests_for(self, uri: str) -> list[Logged]:
        return [entry for entry in self.log() if entry.uri == uri]

    def to_box(self) -> Counter[str]:
        """URI -> requests that went on to the box."""
        return Counter(entry.uri for entry in self.log() if entry.upstream)


@contextlib.contextmanager
def running_edge(prefix: Path, box: str, *, connections: int = 256) -> Iterator[EdgeCache]:
    edge = EdgeCache(prefix, box, connections=connections)
    edge.start()
    try:
        yield edge
    finally:
        edge.stop()

"""Real uplinks for tests and benchmarks: two network namespaces joined by veth links, each
rate-limited with `tc ... tbf`, no traffic leaving the machine.

The client namespace holds the uplinks (`uplink0`, `uplink1`, ...: 10.77.<n+1>.2/24) and runs
the uploader (`ip netns exec`, `command()`); the server namespace holds their far ends
(10.77.<n+1>.1/24) and the S3 server, which listens on SERVER_ADDRESS (on the server's loopback),
reachable over every link. The client has a route to it through each uplink, the first one
preferred (a lower metric), and a policy rule per uplink's source address, so that a connection
leaves by an uplink when it is bound to the interface (SO_BINDTODEVICE) or only to its address.
The rate limit is on the client's side of each link, the direction uploads go; an uplink's
`tx_bytes` counts what left by it. Namespace names are unique per run; `close()` (also on a
failed start) deletes both namespaces, and with them the veth pairs. Needs root (or
CAP_NET_ADMIN and CAP_SYS_ADMIN): `unavailable()` says why not.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import tomli_w

from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoProcess

SERVER_ADDRESS = "10.77.0.1"
BUCKET = "edged"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Link:
    """One uplink of the client namespace and its far end in the server namespace."""

    index: int
    interface: str  # in the client namespace
    address: str  # the client's source address on it
    peer: str  # the server namespace's address on the far end
    rate_mbit: float

    @property
    def rate_bytes(self) -> float:
        """The link's rate in bytes per second."""
        return self.rate_mbit * 1_000_000 / 8


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip` or `tc`), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} (iproute2) is not installed"
    return None


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class Uplinks:
    """Two namespaces and the rate-limited links between them; a context manager."""

    def __init__(self, rates_mbit: Sequence[float]) -> None:
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.client = f"edged-up-{tag}"
        self.server = f"edged-s3-{tag}"
        self.links = tuple(
            Link(n, f"uplink{n}", f"10.77.{n + 1}.2", f"10.77.{n + 1}.1", rate)
            for n, rate in enumerate(rates_mbit)
        )
        self._made: list[str] = []
        self._servers: list[MotoProcess] = []

    def __enter__(self) -> Uplinks:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        for namespace in (self.client, self.server):
            _run("ip", "netns", "add", namespace)
            self._made.append(namespace)
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            self._sysctl(namespace, "all", "rp_filter", "0")
            self._sysctl(namespace, "default", "rp_filter", "0")
        _run("ip", "-n", self.server, "address", "add", f"{SERVER_ADDRESS}/32", "dev", "lo")
        for link in self.links:
            self._connect(link)

    def _sysctl(self, namespace: str, device: str, key: str, value: str) -> None:
        _run(
            "ip",
            "netns",
            "exec",
            namespace,
            "sysctl",
            "-qw",
            f"net.ipv4.conf.{device}.{key}={value}",
        )

    def _connect(self, link: Link) -> None:
        far = f"server{link.index}"
        _run(
            "ip", "link", "add", link.interface, "netns", self.client,
            "type", "veth", "peer", "name", far, "netns", self.server,
        )  # fmt: skip
        for namespace, device, address in (
            (self.client, link.interface, link.address),
            (self.server, far, link.peer),
        ):
            _run("ip", "-n", namespace, "address", "add", f"{address}/24", "dev", device)
            _run("ip", "-n", namespace, "link", "set", device, "up")
            self._sysctl(namespace, device, "rp_filter", "0")
        table = str(100 + link.index)
        route = [SERVER_ADDRESS, "via", link.peer, "dev", link.interface]
        _run("ip", "-n", self.client, "route", "add", *route, "metric", str(10 + link.index))
        _run("ip", "-n", self.client, "route", "add", *route, "table", table)
        _run("ip", "-n", self.client, "rule", "add", "from", link.address, "table", table)
        _run(
            "ip", "netns", "exec", self.client, "tc", "qdisc", "add", "dev", link.interface,
            "root", "tbf", "rate", f"{link.rate_mbit}mbit", "burst", "32kb", "latency", "100ms",
        )  # fmt: skip

    def close(self) -> None:
        """End the S3 servers started here, delete the namespaces (and the veth pairs)."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        made, self._made = self._made, []
        for namespace in reversed(made):
            subprocess.run(
                ["ip", "netns", "delete", namespace], capture_output=True, timeout=30, check=False
            )

    def command(self, *args: str) -> list[str]:
        """`args` as a command run in the client namespace."""
        return ["ip", "netns", "exec", self.client, *args]

    def tx_bytes(self, link: Link) -> int:
        """Bytes that left the client by `link` so far."""
        path = f"/sys/class/net/{link.interface}/statistics/tx_bytes"
        return int(_run("ip", "netns", "exec", self.client, "cat", path))

    def set_down(self, link: Link) -> None:
        _run("ip", "-n", self.client, "link", "set", link.interface, "down")

    def set_up(self, link: Link) -> None:
        _run("ip", "-n", self.client, "link", "set", link.interface, "up")
        route = [SERVER_ADDRESS, "via", link.peer, "dev", link.interface]
        # The routes through a link went with it; `replace` puts them back (idempotent).
        _run("ip", "-n", self.client, "route", "replace", *route, "metric", str(10 + link.index))
        _run("ip", "-n", self.client, "route", "replace", *route, "table", str(100 + link.index))

    def start_s3(self) -> MotoProcess:
        """moto in the server namespace on SERVER_ADDRESS, with the bucket made; closed by
        close()."""
        server = MotoProcess(wrapper=("ip", "netns", "exec", self.server), host=SERVER_ADDRESS)
        self._servers.append(server)
        server.start()
        make_bucket = (
            "import sys; from minio import Minio; "
            f"Minio(sys.argv[1], access_key={ACCESS_KEY!r}, secret_key={SECRET_KEY!r}, "
            f"secure=False, region='us-east-1').make_bucket({BUCKET!r})"
        )
        _run("ip", "netns", "exec", self.server, sys.executable, "-c", make_bucket, server.endpoint)
        return server


def driver_config(
    work: Path, s3: MotoProcess, *, metered: Sequence[bool] = (False, False), part_mib: int = 16
) -> Path:
    """The config of tests/uplink_driver.py: the upstream in the server namespace, and one
    `[[upload.uplinks]]` per link (the first `metered` as asked)."""
    secret = work / "secret"
    secret.write_text(SECRET_KEY, encoding="utf-8")
    secret.chmod(0o600)
    config = {
        "upstream": {
            "endpoint": s3.endpoint,
            "secure": False,
            "bucket": "edged",
            "access_key": ACCESS_KEY,
            "secret_key_file": str(secret),
        },
        "upload": {
            "part_size": f"{part_mib}MiB",
            "parallel_parts": 2,
            "uplinks": [
                {"match": f"uplink{index}", "metered": each} for index, each in enumerate(metered)
            ],
        },
    }
    path = work / "driver.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path

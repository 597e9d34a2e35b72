"""systemd integration: the notify protocol seen through a fake NOTIFY_SOCKET, and the unit file:
it verifies, its exposure score, and the daemon at work inside its system call filters.

There is no systemd as PID 1 here, so the unit cannot be started; tests/seccomp_exec.py loads the
unit's seccomp rules (SystemCallFilter=, RestrictAddressFamilies=, MemoryDenyWriteExecute=) the
way systemd does and runs the daemon under them. The namespace settings are not exercised.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.integration.test_live import LIVE, whep_session
from tests.integration.upload_support import moto, upstream_settings
from tests.s3server import MotoProcess

pytestmark = pytest.mark.integration
__all__ = ["moto"]

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edged.service"
SECCOMP_EXEC = (sys.executable, str(REPO / "tests" / "seccomp_exec.py"), str(UNIT))
EXPOSURE = re.compile(r"Overall exposure level for edged\.service: (?P<score>\d+\.\d+)")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(10)
    yield sock
    sock.close()


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams up to and including the first one containing `wanted`."""
    messages = []
    while True:
        message = sock.recv(4096).decode()
        messages.append(message)
        if wanted in message.splitlines():
            return messages


def test_ready_watchdog_and_stopping(
    start_daemon: StartDaemon, notify_socket: socket.socket
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "200000"}
    daemon = start_daemon({"mdns": {"enabled": False}}, env=env, wait=False)

    first = receive_until(notify_socket, "READY=1")
    assert any(line.startswith("STATUS=serving on port") for line in first[-1].splitlines())
    pings: list[str] = []
    while len(pings) < 3:
        pings += [m for m in receive_until(notify_socket, "WATCHDOG=1") if m == "WATCHDOG=1"]
    daemon.wait_ready()

    daemon.process.send_signal(15)
    after = receive_until(notify_socket, "STOPPING=1")
    assert "STOPPING=1" in after
    assert daemon.process.wait(timeout=10) == 0


def test_watchdog_pid_of_another_process_is_ignored(
    start_daemon: StartDaemon, notify_socket: socket.socket
) -> None:
    env = {
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "WATCHDOG_USEC": "100000",
        "WATCHDOG_PID": "1",
    }
    daemon = start_daemon({"mdns": {"enabled": False}}, env=env)
    daemon.process.send_signal(15)
    messages = receive_until(notify_socket, "STOPPING=1")
    assert not [m for m in messages if m == "WATCHDOG=1"]
    assert daemon.process.wait(timeout=10) == 0


def test_unit_file_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify on the shipped unit, its ExecStart pointed at this install."""
    unit = (REPO / "systemd" / "edged.service").read_text()
    executable = shutil.which("edged", path=str(Path(sys.executable).parent))
    assert executable is not None
    assert "ExecStart=/opt/edged/bin/edged run" in unit
    local = tmp_path / "edged.service"
    local.write_text(unit.replace("/opt/edged/bin/edged", executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, check=False
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if "edged.service" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_security_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = EXPOSURE.search(result.stdout + result.stderr)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group("score")) <= 2.0, result.stdout


def seccomp_mode(pid: int) -> str:
    """0 unfiltered, 2 under seccomp filters (proc(5))."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^Seccomp:\s+(\d)$", status, re.MULTILINE)
    return match.group(1) if match else ""


@pytest.mark.timeout(120)
async def test_daemon_works_inside_the_units_system_call_filters(
    tmp_path: Path, moto: MotoProcess, start_daemon: StartDaemon
) -> None:
    """Records and uploads, caches a clip, serves a WebRTC viewer and advertises over mDNS."""
    daemon = await asyncio.to_thread(
        start_daemon,
        {
            "live": LIVE["live"],
            "media": {
                "pattern_size": "320x240",
                "pattern_fps": 15,
                "segment_seconds": 1.0,
                "record_test_pattern": True,
            },
            "upstream": upstream_settings(tmp_path, moto),
        },
        wrapper=(*SECCOMP_EXEC, "--"),
    )
    assert seccomp_mode(daemon.process.pid) == "2"  # filtered (the wrapper exec'd into it)
    assert daemon.data_dir is not None
    token = (daemon.data_dir / "admin.token").read_text().strip()
    clip = await asyncio.to_thread(make_clip, tmp_path / "teaser.mp4")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client,
        client.put(daemon.url + "/api/v1/assets/teaser.mp4", data=clip.read_bytes()) as response,
    ):
        assert response.status == 201, await response.text()
    peer, _, frames = await whep_session(daemon.url)
    await peer.close()
    assert frames == 10
    verified = re.compile(r"upload \d+ verified: \S+\.mp4")
    await asyncio.to_thread(daemon.seen_or_wait, verified, timeout=60)
    await asyncio.to_thread(daemon.seen_or_wait, re.compile(r"mDNS: advertising "), timeout=20)
    assert await asyncio.to_thread(daemon.stop) == 0


def test_write_execute_memory_is_still_needed_by_webrtc() -> None:
    """Why the unit leaves MemoryDenyWriteExecute= off: aiortc's DTLS sets its certificate check
    with pyOpenSSL, and cffi's ffi.callback() allocates a writable and executable page on Linux.
    When this fails, that is no longer so: turn MemoryDenyWriteExecute=yes on in the unit."""
    probe = (
        "from OpenSSL import SSL\n"
        "SSL.Context(SSL.DTLS_METHOD).set_verify(SSL.VERIFY_PEER, lambda *args: True)\n"
    )
    result = subprocess.run(
        [*SECCOMP_EXEC, "--only-write-execute", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "MemoryError: Cannot allocate write+execute memory" in result.stderr

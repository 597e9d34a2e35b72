"""systemd integration: the notify protocol seen through a fake NOTIFY_SOCKET, and the unit file."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartDaemon

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


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

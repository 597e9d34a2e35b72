"""The daemon in process: each subsystem entered in order through one exit stack and left in
reverse, whether it stops on request or a later subsystem fails to start (issue #13 item 2)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edged.config import from_mapping
from edged.daemon import Daemon, Launch
from edged.datalock import DataDirLock
from edged.errors import StartupError

pytestmark = pytest.mark.integration


def quiet_daemon(data_dir: Path, port: int) -> Daemon:
    """No mDNS, no test pattern, sync off: every subsystem still starts."""
    config = from_mapping(
        {
            "http": {"host": "127.0.0.1", "port": port},
            "mdns": {"enabled": False},
            "media": {"test_pattern": "off"},
        }
    )
    return Daemon(Launch(config, data_dir=str(data_dir)), environ={})


def get_json(url: str, token: str = "") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        call = urllib.request.Request(url, headers=headers)  # noqa: S310 (loopback)
        with urllib.request.urlopen(call, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def lock_is_free(data_dir: Path) -> bool:
    lock = DataDirLock(data_dir)
    lock.acquire()  # DataDirBusy while another holder has it
    lock.release()
    return True


async def test_a_start_that_fails_at_http_leaves_every_subsystem_stopped(tmp_path: Path) -> None:
    """The port is taken: start-up fails after devices, uploads, cache and media have started;
    each is stopped (the autouse guards fail on a thread or task left) and the data dir freed."""
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = quiet_daemon(data_dir, taken.getsockname()[1])
        with pytest.raises(StartupError, match=r"cannot listen on 127\.0\.0\.1"):
            await daemon.serve()
    assert lock_is_free(data_dir)


async def test_a_daemon_serves_its_routes_and_stops_in_reverse(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    daemon = quiet_daemon(data_dir, 0)
    serving = asyncio.create_task(daemon.serve())
    try:
        async with asyncio.timeout(60):
            await daemon.started.wait()
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        assert (await asyncio.to_thread(get_json, base + "/readyz"))[0] == 200
        status, body = await asyncio.to_thread(get_json, base + "/api/v1/status")
        assert status == 200
        assert list(body["subsystems"]) == ["http", "uploads", "devices", "cache", "media", "clips"]
        assert all(body["subsystems"].values())
        crew = (data_dir / "admin.token").read_text().strip()
        status, body = await asyncio.to_thread(get_json, base + "/api/v1/uploads", crew)
        assert status == 200 and body["upstream"] == {"configured": False, "up": False}
        assert (await asyncio.to_thread(get_json, base + "/api/v1/streams"))[0] == 200
        assert (await asyncio.to_thread(get_json, base + "/api/v1/devices"))[0] == 200
        assert (await asyncio.to_thread(get_json, base + "/api/v1/assets"))[0] == 200
    finally:
        daemon.request_stop()
        async with asyncio.timeout(60):
            assert await serving
    assert lock_is_free(data_dir)

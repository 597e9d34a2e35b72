"""The real `edged run` as a subprocess: serves, advertises, exports metrics, stops cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

from tests.conftest import StartDaemon
from tests.support import edged_command, run_edged, run_edged_together

pytestmark = pytest.mark.integration


def http(url: str, *, method: str = "GET", token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)  # noqa: S310 - loopback test URL
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def poll_healthz(url: str, deadline_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            status, body = http(url + "/healthz")
            if status == 200:
                return dict(json.loads(body))
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


class ServiceWatcher:
    """A zeroconf browser in the test process: records added and removed instances."""

    def __init__(self, service_type: str) -> None:
        self.zeroconf = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        self.added: set[str] = set()
        self.removed = threading.Event()
        self._lock = threading.Lock()
        self.browser = ServiceBrowser(self.zeroconf, service_type, handlers=[self._on_change])

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        with self._lock:
            if state_change is ServiceStateChange.Removed:
                self.removed.set()
            else:
                self.added.add(name)

    def close(self) -> None:
        self.browser.cancel()
        self.zeroconf.close()


def test_daemon_serves_advertises_exports_metrics_and_stops(start_daemon: StartDaemon) -> None:
    watcher = ServiceWatcher("_edged._tcp.local.")
    try:
        daemon = start_daemon(name="tentbox", wait=False)
        daemon.wait_ready()  # a deadline, not a startup-time assertion
        assert poll_healthz(daemon.url, 5) == {"status": "ok"}
        daemon.seen_or_wait(re.compile(r"event loop: uvloop$"))  # the default

        status, body = http(daemon.url + "/metrics")
        assert status == 200
        assert b'edged_build_info{event="default",node="tentbox",version="0.1.0"} 1.0' in body
        assert b"process_resident_memory_bytes" in body
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr

        info = watcher.zeroconf.get_service_info(
            "_edged._tcp.local.", "tentbox._edged._tcp.local.", timeout=5000
        )
        assert info is not None
        assert info.port == daemon.port
        assert info.server == "tentbox.local."
        assert info.parsed_addresses() == ["127.0.0.1"]
        assert info.properties == {
            b"node": b"tentbox",
            b"event": b"default",
            b"version": b"0.1.0",
            b"path": b"/",
            b"metrics": b"/metrics",
        }
        http_info = watcher.zeroconf.get_service_info(
            "_http._tcp.local.", "tentbox._http._tcp.local.", timeout=5000
        )
        assert http_info is not None
        assert http_info.port == daemon.port

        assert daemon.stop(timeout=5) == 0
        assert watcher.removed.wait(timeout=5), "no mDNS goodbye after SIGTERM"
        assert any("edged stopped" in line for line in daemon.lines)
    finally:
        watcher.close()


def test_the_daemon_runs_on_pythons_own_loop_when_told(start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}, "daemon": {"event_loop": "asyncio"}})
    daemon.seen_or_wait(re.compile(r"event loop: asyncio$"))
    assert poll_healthz(daemon.url, 5) == {"status": "ok"}
    status, _ = http(daemon.url + "/assets/nothing.mp4")
    assert status == 404


def test_status_and_readiness(start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}})
    status, body = http(daemon.url + "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "ready": True,
        "subsystems": {
            "http": True,
            "devices": True,
            "uploads": True,
            "cache": True,
            "media": True,
            "clips": True,
        },
        "failing_tasks": {},
    }
    status, body = http(daemon.url + "/api/v1/status")
    document = json.loads(body)
    assert status == 200
    assert document["node"] == "box"
    assert document["version"] == "0.1.0"
    assert document["uptime_seconds"] >= 0
    status, body = http(daemon.url + "/")
    assert status == 200
    assert b"<small>box</small>" in body  # the box as it answers (the title is the event)
    status, svg = http(daemon.url + "/qr.svg")
    assert status == 200 and svg.startswith(b"<?xml") and b"<svg" in svg
    assert f"<title>http://127.0.0.1:{daemon.port}/</title>".encode() in svg
    assert daemon.stop() == 0


def test_state_changing_calls_need_the_token(start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}})
    assert daemon.data_dir is not None and daemon.config_file is not None
    token_file = daemon.data_dir / "admin.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert all(token not in line for line in daemon.lines), "token leaked into the log"

    assert http(daemon.url + "/api/v1/reload", method="POST")[0] == 401
    assert http(daemon.url + "/api/v1/reload", method="POST", token="wrong" * 8)[0] == 403

    text = daemon.config_file.read_text()
    daemon.config_file.write_text(
        text.replace('[node]\nname = "box"', '[node]\nname = "box"\nevent = "gala"').replace(
            "shutdown_timeout = 4.0", "shutdown_timeout = 5.0"
        )
    )
    status, body = http(daemon.url + "/api/v1/reload", method="POST", token=token)
    assert status == 200, body
    assert json.loads(body) == {
        "reloaded": True,
        "applied": ["node.event"],
        "restart_required": ["daemon.shutdown_timeout"],
    }
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_build_info{event="gala",node="box",version="0.1.0"} 1.0' in metrics

    daemon.config_file.write_text(text + "\n[surprise]\nkey = 1\n")
    status, body = http(daemon.url + "/api/v1/reload", method="POST", token=token)
    assert status == 400
    assert "[surprise]: unknown section" in json.loads(body)["error"]
    _, status_body = http(daemon.url + "/api/v1/status")
    assert json.loads(status_body)["event"] == "gala"
    assert daemon.stop() == 0


def test_name_conflict_renames_the_second_box(start_daemon: StartDaemon) -> None:
    """Issue #12 item 16: every tool names the box as advertised, `twin-2` after a conflict."""
    first = start_daemon(name="twin")
    second_config = {"node": {"name": "twin"}}
    second = start_daemon(second_config, name="twin2")
    assert any(
        re.search(r"mDNS name twin is taken on this LAN; advertising as twin-2", line)
        for line in second.lines
    ), second.lines
    zeroconf = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        info = zeroconf.get_service_info(
            "_edged._tcp.local.", "twin-2._edged._tcp.local.", timeout=5000
        )
        assert info is not None
        assert info.port == second.port
        assert info.server == "twin-2.local."
    finally:
        zeroconf.close()

    # The landing page, its URL and QR code, and the status API: the advertised name.
    _, page = http(second.url + "/")
    assert b"<small>twin-2</small>" in page  # the box as it answers (the title is the event)
    _, body = http(second.url + "/api/v1/status")
    status = json.loads(body)
    assert status["advertised_name"] == "twin-2"
    # The link the QR code carries is the LAN address (phones often cannot resolve .local, #16);
    # the advertised name is the typed form the poster shows beside it.
    assert status["landing_url"] == f"http://127.0.0.1:{second.port}/"
    assert status["node"] == "twin"  # the configured identity: metrics labels, object keys
    _, qr = http(second.url + "/qr.svg")
    assert f"http://127.0.0.1:{second.port}/".encode() in qr
    _, poster = http(second.url + "/qr")
    assert f"http://twin-2.local:{second.port}/".encode() in poster
    _, metrics = http(second.url + "/metrics")
    assert b'node="twin"' in metrics and b'node="twin-2"' not in metrics
    _, first_body = http(first.url + "/api/v1/status")
    assert json.loads(first_body)["advertised_name"] == "twin"

    # `edged peers` (as JSON and as a table) and `edged doctor`, side by side (each browses).
    assert second.config_file is not None and second.data_dir is not None
    record = second.data_dir / "advertised.json"
    assert record.stat().st_mode & 0o777 == 0o600
    result, table, doctor = run_edged_together(
        ("peers", "--json", "--timeout", "2", "--interface", "127.0.0.1"),
        ("peers", "--timeout", "2", "--interface", "127.0.0.1"),
        (
            "doctor",
            "--json",
            "--config",
            str(second.config_file),
            "--data-dir",
            str(second.data_dir),
        ),
        timeout=90,
    )
    # `edged peers`: each box under the name it answers to.
    assert result.returncode == 0, result.stderr
    ports = {peer["instance"]: peer["port"] for peer in json.loads(result.stdout)}
    assert ports["twin"] == first.port
    assert ports["twin-2"] == second.port
    assert re.search(rf"^twin-2\s.*127\.0\.0\.1:{second.port}$", table.stdout, re.MULTILINE)

    # `edged doctor` on the second box's data dir: what that daemon advertises, seen answering.
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["mdns"]["status"] == "OK", checks["mdns"]
    assert checks["mdns"]["detail"].startswith("twin-2.local advertised"), checks["mdns"]
    assert "twin.local is taken" in checks["mdns"]["detail"]

    assert second.stop() == 0
    assert not record.exists()  # a stopped daemon advertises nothing
    assert first.stop() == 0


def test_peers_lists_the_boxes_on_the_lan(start_daemon: StartDaemon) -> None:
    box = start_daemon(name="peerbox", settings={"node": {"event": "gala"}})
    result, table = run_edged_together(
        ("peers", "--json", "--timeout", "1.5", "--interface", "127.0.0.1"),
        ("peers", "--timeout", "1.5", "--interface", "127.0.0.1"),
    )
    assert result.returncode == 0, result.stderr
    peers = {peer["node"]: peer for peer in json.loads(result.stdout)}
    assert peers["peerbox"]["event"] == "gala"
    assert peers["peerbox"]["port"] == box.port
    assert peers["peerbox"]["addresses"] == ["127.0.0.1"]
    assert re.search(rf"peerbox\s+gala\s+0\.1\.0\s+127\.0\.0\.1:{box.port}", table.stdout)
    assert box.stop() == 0


def test_prometheus_file_sd_follows_the_boxes(tmp_path: Path, start_daemon: StartDaemon) -> None:
    target_file = tmp_path / "edged-targets.json"
    writer = subprocess.Popen(
        [*edged_command("peers", "--prometheus-sd", str(target_file)), "--interface", "127.0.0.1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Started side by side (each start waits seconds on mDNS), then each awaited.
        first = start_daemon(name="alpha", settings={"node": {"event": "gala"}}, wait=False)
        second = start_daemon(name="beta", settings={"node": {"event": "gala"}}, wait=False)
        first.wait_ready()
        second.wait_ready()

        def nodes() -> dict[str, dict[str, Any]]:
            try:
                groups = json.loads(target_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return {}
            return {group["labels"]["node"]: group for group in groups}

        deadline = time.monotonic() + 20
        while set(nodes()) != {"alpha", "beta"}:
            assert time.monotonic() < deadline, nodes()
            time.sleep(0.1)
        alpha = nodes()["alpha"]
        assert alpha["targets"] == [f"127.0.0.1:{first.port}"]
        assert alpha["labels"] == {"node": "alpha", "event": "gala", "__metrics_path__": "/metrics"}

        assert second.stop() == 0
        while set(nodes()) != {"alpha"}:
            assert time.monotonic() < deadline + 10, nodes()
            time.sleep(0.1)
        assert first.stop() == 0
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.wait(timeout=10)
        assert writer.stderr is not None
        writer.stderr.close()
    assert writer.returncode == 0


def test_file_sd_path_that_cannot_be_written(tmp_path: Path) -> None:
    result = run_edged("peers", "--prometheus-sd", str(tmp_path / "missing" / "targets.json"))
    assert result.returncode == 2
    assert "cannot write the file_sd list" in result.stderr

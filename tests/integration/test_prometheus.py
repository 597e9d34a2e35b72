"""A real Prometheus (Debian's) scrapes a running edged; a scrape during shutdown is harmless."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def listening_port(pid: int, timeout: float = 30.0) -> int:
    """The TCP port process `pid` listens on, once it does (it was given port 0)."""

    def ports() -> list[int]:
        connections = psutil.Process(pid).net_connections(kind="tcp")
        return [c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN]

    return int(until(ports, timeout, f"process {pid} listening on a port")[0])


def query(base: str, expression: str) -> list[dict[str, object]]:
    status, body = http(f"{base}/api/v1/query?query={urllib.parse.quote(expression)}")
    assert status == 200, body
    return list(json.loads(body)["data"]["result"])


def ready(base: str) -> bool:
    try:
        status, _ = http(f"{base}/-/ready")
    except OSError:
        return False
    return status == 200


@contextlib.contextmanager
def prometheus(tmp_path: Path, *ports: int, rules: Path | None = None) -> Iterator[str]:
    """A real Prometheus scraping edged on `ports` twice a second (evaluating `rules`); its URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n"
        + (f"rule_files:\n  - {rules}\n" if rules else "")
        + "scrape_configs:\n  - job_name: edged\n    static_configs:\n"
        f"      - targets: {[f'127.0.0.1:{port}' for port in ports]}\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--web.listen-address=127.0.0.1:0",  # the OS picks a free port: no race for it
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{listening_port(process.pid)}"
        # It listens before its storage is open: until then its API answers 503.
        until(lambda: ready(base), 60, "Prometheus ready")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


@pytest.mark.timeout(120)
def test_prometheus_scrapes_edged(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}})
    with prometheus(tmp_path, daemon.port) as base:
        deadline = time.monotonic() + 60
        rate: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                rate = query(base, 'rate(edged_frames_encoded_total{stream="test-pattern"}[30s])')
            except OSError:
                rate = []
            if rate and float(rate[0]["value"][1]) > 0:  # type: ignore[index]
                break
            time.sleep(0.5)
        assert rate, "no rate of encoded frames in Prometheus"
        assert float(rate[0]["value"][1]) > 0  # type: ignore[index]
        up = query(base, 'up{job="edged"}')
        assert [sample["value"][1] for sample in up] == ["1"]  # type: ignore[index]
        drops = query(base, "edged_frames_dropped_total")
        assert {sample["metric"]["stage"] for sample in drops} == {  # type: ignore[index]
            "capture",
            "encode",
            "output",
        }
    assert daemon.stop() == 0


def silent_alerts(base: str) -> list[dict[str, Any]]:
    try:
        status, body = http(f"{base}/api/v1/alerts")
    except OSError:
        return []
    assert status == 200, body
    alerts = json.loads(body)["data"]["alerts"]
    return [alert for alert in alerts if alert["labels"]["alertname"] == "EdgedAudioSilent"]


def level(base: str, port: int) -> float:
    """The test pattern's sound level as Prometheus last scraped it from the box on `port`."""
    expression = f'edged_audio_level_dbfs{{instance="127.0.0.1:{port}",stream="test-pattern"}}'
    samples = query(base, expression)
    return float(samples[0]["value"][1]) if samples else -120.0  # type: ignore[index]


@pytest.mark.timeout(120)
def test_a_silent_stream_trips_the_alert_rule(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """The rules file loaded by a real Prometheus, over edged's real series: a stream whose
    sound is digital silence (the anullsrc stand-in) is pending EdgedAudioSilent within
    seconds (it would fire after its 2 minutes); a stream with a tone is not."""

    def settings(stand_in: str) -> dict[str, dict[str, object]]:
        pattern = {"test_pattern": "on", "pattern_size": "320x240", "pattern_fps": 15}
        return {"mdns": {"enabled": False}, "media": {**pattern, "audio_stand_in": stand_in}}

    silent = start_daemon(settings("anullsrc=r=48000:cl=stereo"), name="silent")
    loud = start_daemon(settings("sine=frequency=440:sample_rate=48000"), name="loud")
    rules = REPO / "configs" / "prometheus" / "edged-rules.yml"
    with prometheus(tmp_path, silent.port, loud.port, rules=rules) as base:
        (alert,) = until(lambda: silent_alerts(base), 60, "EdgedAudioSilent pending")
        assert alert["state"] == "pending"
        assert alert["labels"]["stream"] == "test-pattern"
        assert alert["labels"]["instance"] == f"127.0.0.1:{silent.port}"
        assert level(base, silent.port) <= -60
        until(lambda: level(base, loud.port) > -60, 30, "the tone's level scraped")
        assert len(silent_alerts(base)) == 1  # the tone's stream is not silent
    assert silent.stop() == 0
    assert loud.stop() == 0


def test_scrapes_during_shutdown(start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}})
    results: list[int] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            try:
                results.append(http(daemon.url + "/metrics")[0])
            except OSError:
                results.append(0)  # refused once the listener closed: fine

    workers = [threading.Thread(target=scrape) for _ in range(4)]
    for worker in workers:
        worker.start()
    # every scraper is in its stride
    until(lambda: results.count(200) >= 2 * len(workers), 20, "every scraper answered twice")
    code = daemon.stop()
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    assert code == 0
    assert 200 in results
    assert set(results) <= {200, 0, 503}
    assert not [line for line in daemon.lines if "Traceback" in line or "ERROR" in line]

"""A real Prometheus (Debian's) scrapes a running edged; a scrape during shutdown is harmless."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import psutil
import pytest

from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import until

pytestmark = pytest.mark.integration


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


@pytest.mark.timeout(120)
def test_prometheus_scrapes_edged(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}})
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: edged\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{daemon.port}']\n"
    )
    prometheus = subprocess.Popen(
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
        base = f"http://127.0.0.1:{listening_port(prometheus.pid)}"
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
    finally:
        prometheus.send_signal(signal.SIGTERM)
        prometheus.wait(timeout=20)
    assert daemon.stop() == 0


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

"""The fleet dashboard against a real Prometheus (#19): Debian's `prometheus` on loopback (its
storage in tmp, a half-second scrape) finds two edged daemons through the file_sd file that
`edged peers --prometheus-sd` writes from mDNS on loopback, loads the alert rules, and answers
every query of every panel of configs/grafana/edged.json through its HTTP API, with the
dashboard's variables `node` and `event` as Grafana would send them. Each query's expected
answer is decided here, panel by panel."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.integration.test_edge_cache import member_cookie, request
from tests.rtmp_server import free_port
from tests.support import DaemonProcess, edged_command, until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "configs" / "grafana" / "edged.json"
RULES = REPO / "configs" / "prometheus" / "edged-rules.yml"
NODES = {"alpha", "beta"}
# As Grafana sends them: All of each variable, and intervals a half-second scrape fills.
VARIABLES = {
    "$node": "alpha|beta",
    "$event": "gala",
    "$__rate_interval": "20s",
    "$__range": "10m",
}

EVERY_BOX = "a series for each box"  # the query keeps the node label
DATA = "a value"  # an aggregate over the fleet
AS_THE_BOX = "as the boxes export it"  # the board decides (a sensor, a Pi's firmware)
# What each panel's queries answer (a list: each target's in turn); every panel is listed.
Expected = tuple[str, ...]
EXPECTED: dict[str, Expected | list[Expected]] = {
    "Boxes up": (DATA, "2"),
    "Streams up": (DATA, "2"),  # the test pattern on each box
    "Recording": (DATA, "0"),  # the test pattern records only when asked
    "Upload backlog": (DATA,),
    "Hottest box": (AS_THE_BOX, "edged_temperature_celsius"),
    "Sign-ups": (DATA, ">=1"),  # two sign-ups on alpha, a scrape between them
    "Frames per second": (EVERY_BOX,),
    "Bitrate": (EVERY_BOX,),
    "Dropped frames by stage": (EVERY_BOX,),
    "Stream up": (EVERY_BOX,),
    "Encode time p95": (EVERY_BOX,),
    "Live viewers": (EVERY_BOX,),  # a segment fetched from each box
    "Cameras present and expected": (EVERY_BOX,),
    "Recording by stream": (EVERY_BOX,),
    # The sensors as the box has them; the board profile's limits on every box.
    "Temperature and the board's limits": [(AS_THE_BOX, "edged_temperature_celsius"), (EVERY_BOX,)],
    "CPU": (EVERY_BOX,),
    "Thermal step-down level": (EVERY_BOX,),
    "Raspberry Pi throttle flags": (AS_THE_BOX, "edged_pi_throttled"),  # none off a Pi
    "Disk free and its floor": (EVERY_BOX,),
    "Spool": (EVERY_BOX,),
    "Upload waiting": (EVERY_BOX,),
    "Upload rate": (EVERY_BOX,),
    "Oldest pending upload": (EVERY_BOX,),
    "Upstream reachable": (EVERY_BOX,),
    "Cache hit ratio": (EVERY_BOX,),  # alpha served a clip twice; beta none (0/0: NaN)
    "Time to first byte": (DATA,),
    "First frame on guests' phones": (DATA,),
    "First byte from the box": (DATA,),
}


def panels() -> list[dict[str, Any]]:
    """The dashboard's panels with queries, each title once."""
    found = [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel.get("targets")]
    titles = [panel["title"] for panel in found]
    assert len(set(titles)) == len(titles), titles
    return found


def substituted(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


class Prometheus:
    """Debian's prometheus on loopback: a half-second scrape of the file_sd file, the rules."""

    def __init__(self, directory: Path, targets: Path) -> None:
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 500ms, evaluation_interval: 500ms}\n"
            f"rule_files: ['{RULES}']\n"
            "scrape_configs:\n"
            "  - job_name: edged\n"
            f"    file_sd_configs: [{{files: ['{targets}'], refresh_interval: 1s}}]\n"
        )
        self.log = (directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(query)}"
        status, _, body = request(url)
        assert status == 200, body
        return json.loads(body)

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def ready(self) -> bool:
        assert self.process.poll() is None, "prometheus exited: see prometheus.log"
        try:
            return request(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture
def file_sd(tmp_path: Path) -> Iterator[Path]:
    """`edged peers --prometheus-sd FILE` on loopback, running for the test."""
    targets = tmp_path / "edged-targets.json"
    writer = subprocess.Popen(
        [*edged_command("peers", "--prometheus-sd", str(targets)), "--interface", "127.0.0.1"],
        stderr=subprocess.DEVNULL,
    )
    try:
        yield targets
    finally:
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=10) == 0


def listed_nodes(targets: Path) -> set[str]:
    try:
        return {group["labels"]["node"] for group in json.loads(targets.read_text())}
    except (FileNotFoundError, json.JSONDecodeError):
        return set()


def exported(box: DaemonProcess, name: str) -> bool:
    _, _, body = request(box.url + "/metrics")
    return re.search(rf"^{name}\{{", body.decode(), re.M) is not None


def give_the_panels_something(boxes: dict[str, DaemonProcess], tmp_path: Path) -> None:
    """A segment from each box (live viewers), a clip served twice by alpha (cache hits)."""
    for box in boxes.values():
        _, _, playlist = request(box.url + "/live/test-pattern/index.m3u8")
        segment = re.findall(r"^segment-[0-9a-f]{8}-\d+\.m4s$", playlist.decode(), re.M)[-1]
        assert request(f"{box.url}/live/test-pattern/{segment}")[0] == 200
    alpha = boxes["alpha"]
    assert alpha.data_dir is not None
    token = (alpha.data_dir / "admin.token").read_text().strip()
    clip = make_clip(tmp_path / "teaser.mp4", seconds=1).read_bytes()
    put = f"{alpha.url}/api/v1/assets/teaser.mp4"
    assert request(put, "PUT", clip, Authorization=f"Bearer {token}")[0] == 201
    for _ in range(2):
        assert request(alpha.url + "/assets/teaser.mp4")[0] == 200


def check(prometheus: Prometheus, panel: dict[str, Any], box: DaemonProcess) -> None:
    """Every query of `panel` answers as EXPECTED says."""
    expectations = EXPECTED[panel["title"]]
    if not isinstance(expectations, list):
        expectations = [expectations] * len(panel["targets"])
    assert len(expectations) == len(panel["targets"]), panel["title"]
    for target, expected in zip(panel["targets"], expectations, strict=True):
        result = prometheus.query(substituted(target["expr"]))
        where = f"{panel['title']}: {target['expr']} -> {result}"
        if expected[0] == AS_THE_BOX:
            assert bool(result) == exported(box, expected[1]), where
            continue
        assert result, where
        if expected[0] == EVERY_BOX:
            assert {series["metric"].get("node") for series in result} == NODES, where
        elif len(expected) > 1:
            value = float(result[0]["value"][1])
            wanted = expected[1]
            assert value >= 1 if wanted == ">=1" else value == float(wanted), where


def test_every_panel_answers_from_a_real_prometheus(
    tmp_path: Path, start_daemon: StartDaemon, file_sd: Path
) -> None:
    gala = {"node": {"event": "gala"}}
    # Started side by side (each start waits seconds on mDNS), then each awaited.
    boxes = {name: start_daemon(gala, name=name, wait=False) for name in sorted(NODES)}
    for box in boxes.values():
        box.wait_ready()
    until(lambda: listed_nodes(file_sd) == NODES, 30, "both boxes in the file_sd file")
    prometheus = Prometheus(tmp_path, file_sd)
    try:
        until(prometheus.ready, 30, "prometheus ready")
        until(lambda: len(prometheus.query('up{job="edged"} == 1')) == 2, 30, "both scraped")
        member_cookie(boxes["alpha"], "ada@example.org")
        until(lambda: prometheus.query("edged_guest_signups_total"), 30, "the first sign-up")
        member_cookie(boxes["alpha"], "grace@example.org")
        give_the_panels_something(boxes, tmp_path)
        increase = 'sum(increase(edged_guest_signups_total{node="alpha"}[10m])) >= 1'
        until(lambda: prometheus.query(increase), 30, "the second sign-up scraped")
        until(lambda: prometheus.query("edged_live_viewers"), 30, "the viewers scraped")
        rate = 'rate(edged_cache_requests_total{node="alpha",result=~"hit.*"}[20s]) > 0'
        until(lambda: prometheus.query(rate), 30, "alpha's cache hits scraped")
        # Enough scrapes of each box for a rate over $__rate_interval (20 s).
        history = 'count_over_time(up{job="edged"}[20s]) >= 5'
        until(lambda: len(prometheus.query(history)) == 2, 30, "five scrapes of each box")

        found = panels()
        assert {panel["title"] for panel in found} == set(EXPECTED)
        for panel in found:
            check(prometheus, panel, boxes["alpha"])
        variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
        for variable in variables[1:]:
            values = prometheus.get(
                "/api/v1/label/" + variable["name"] + "/values",
                **{
                    "match[]": substituted(
                        variable["query"]["query"].split("(", 1)[1].rsplit(",", 1)[0]
                    )
                },
            )["data"]
            assert set(values) == ({"gala"} if variable["name"] == "event" else NODES), values
        rules = prometheus.get("/api/v1/rules")["data"]["groups"]
        assert rules and all(rule["health"] == "ok" for g in rules for rule in g["rules"]), rules
        ratio = next(panel for panel in found if panel["title"] == "Cache hit ratio")
        by_node = {
            series["metric"]["node"]: float(series["value"][1])
            for series in prometheus.query(substituted(ratio["targets"][0]["expr"]))
        }
        assert by_node["alpha"] > 0 and math.isnan(by_node["beta"]), by_node
    finally:
        prometheus.stop()
    for box in boxes.values():
        assert box.stop() == 0

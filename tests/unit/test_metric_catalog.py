"""The metric catalog against DESIGN.md: every promised name, with HELP, the right type, base
units and bounded labels; the alert rules and the dashboard speak of metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry

from edged.metrics import Metrics, SystemCollector

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO.parent / "shared" / "DESIGN.md"
# DESIGN.md's name uses bits; promtool's lint refuses a non-base unit, so edged exports bytes.
RENAMED = {"edged_stream_bitrate_bits_per_second": "edged_stream_bytes_per_second"}
UNBOUNDED_LABELS = {"id", "session", "path", "key", "file", "url", "ip", "address", "upload_id"}


def exposed(tmp_path: Path) -> dict[str, tuple[str, str, set[str]]]:
    """name as scraped -> (type, help, label names) of every family edged registers."""
    throttled = tmp_path / "get_throttled"
    throttled.write_text("0x50005\n")  # under-voltage and throttled now, as a Pi reports it
    metrics = Metrics(version="0", node="n", event="e", data_dir=tmp_path, throttled_file=throttled)
    metrics.streams.stream("cam")
    metrics.live.viewers.labels("cam", "hls")
    metrics.live.bytes.labels("cam", "hls")
    metrics.first_byte.labels("live")
    metrics.streams.bitrate.labels("cam")
    metrics.streams.fps.labels("cam")
    metrics.streams.up.labels("cam")
    metrics.streams.encoder.labels("cam", "libx264", "false")
    metrics.streams.encode_seconds.labels("cam")
    metrics.streams.temperature.labels("cpu")
    metrics.streams.throttle.labels("cam")
    metrics.streams.recording.labels("cam")
    metrics.devices.devices.labels("webcam")
    metrics.board.labels("x86", "true")
    metrics.cache.assets.labels("true")
    found = {}
    for family in metrics.registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        name = family.name + suffix
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        found[name] = (family.type, family.documentation, labels)
    return found


SNAPSHOT = REPO / "tests" / "data" / "design-metrics.txt"


def design_names() -> list[str]:
    """The names DESIGN.md promises; its snapshot in tests/data where shared/ is not beside."""
    if not DESIGN.exists():
        return [line for line in SNAPSHOT.read_text().splitlines() if line.startswith("edged_")]
    text = DESIGN.read_text()
    section = text[text.index("### Metrics") : text.index("### mDNS")]
    names = sorted(set(re.findall(r"`(edged_[a-z_]+)", section)))
    snapshot = [line for line in SNAPSHOT.read_text().splitlines() if line.startswith("edged_")]
    assert names == snapshot, "DESIGN.md changed: refresh tests/data/design-metrics.txt"
    return names


def test_every_design_metric_exists(tmp_path: Path) -> None:
    found = exposed(tmp_path)
    names = design_names()
    assert len(names) > 25
    missing = {RENAMED.get(name, name) for name in names} - set(found)
    assert missing == set()


def test_types_help_units_and_labels(tmp_path: Path) -> None:
    for name, (kind, documentation, labels) in exposed(tmp_path).items():
        assert documentation.strip(), f"{name} has no HELP"
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        assert not re.search(r"_(bits|milliseconds|kilobytes|megabytes|percent)\b", name), name
        assert not labels & UNBOUNDED_LABELS, f"{name} has an unbounded label {labels}"


def test_alert_rules_pass_promtool() -> None:
    rules = REPO / "configs" / "prometheus"
    for command in (
        ["check", "rules", "edged-rules.yml"],
        ["test", "rules", "edged-rules.test.yml"],
    ):
        result = subprocess.run(
            ["promtool", *command], cwd=rules, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = (REPO / "configs" / "prometheus" / "edged-rules.yml").read_text()
    tests = (REPO / "configs" / "prometheus" / "edged-rules.test.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) >= 10
    for alert in alerts:
        assert f"alertname: {alert}" in tests, f"{alert} has no promtool test"


def test_rules_and_dashboard_use_existing_metrics(tmp_path: Path) -> None:
    known = set(exposed(tmp_path)) | {"up"}
    known |= {f"{name}_bucket" for name in known} | {f"{name}_count" for name in known}
    rules = (REPO / "configs" / "prometheus" / "edged-rules.yml").read_text()
    dashboard = json.loads((REPO / "configs" / "grafana" / "edged.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    used = set(re.findall(r"\b(edged_[a-z_]+)", rules + "\n".join(expressions)))
    assert used - known == set()
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Frames per second", "Bitrate", "Dropped frames by stage"} <= titles


def test_pi_throttling_flags(tmp_path: Path) -> None:
    throttled = tmp_path / "get_throttled"
    throttled.write_text("0x50005\n")
    registry = CollectorRegistry()
    registry.register(SystemCollector(throttled))
    flag = lambda name: registry.get_sample_value("edged_pi_throttled", {"flag": name})  # noqa: E731
    assert (flag("under_voltage"), flag("frequency_capped"), flag("throttled")) == (1, 0, 1)
    assert (registry.get_sample_value("edged_memory_total_bytes") or 0) > 0

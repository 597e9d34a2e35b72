"""`edged doctor` on this machine, and a FAIL that sets the exit code."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict
from pathlib import Path

import pytest

from edged.doctor import UPSTREAM_OFF, Check, worst
from tests.support import run_edged, write_config

pytestmark = pytest.mark.integration


def test_doctor_reports_this_machine(tmp_path: Path) -> None:
    """The report's shape and the lines the config decides; what the host decides (board,
    cameras, disk, temperature, clock) is tested from facts in unit/test_doctor_verdicts.py."""
    result = run_edged("doctor", "--json", "--data-dir", str(tmp_path / "data"), timeout=60)
    summary = json.loads(result.stdout)
    checks = {check["name"]: check for check in summary["checks"]}
    assert {check["status"] for check in summary["checks"]} <= {"OK", "WARN", "FAIL"}
    assert summary["status"] == worst([Check(**check) for check in summary["checks"]])
    assert result.returncode == (1 if summary["status"] == "FAIL" else 0), result.stderr
    for name in ("board", "encoding", "disk", "temperature", "upstream", "mdns", "clock"):
        assert name in checks
    assert "cameras" in checks or any(name.startswith("camera ") for name in checks)
    assert checks["encoder libx264"]["status"] == "OK"  # PyAV's wheel always carries it
    assert float(checks["encoder libx264"]["detail"].split()[0]) > 0  # measured fps
    assert checks["upstream"] == asdict(UPSTREAM_OFF)
    # No daemon runs on this data dir: doctor cannot know a name, so it claims none (#12 item 16).
    assert checks["mdns"]["status"] == "WARN"
    assert "edged is not running on this data dir" in checks["mdns"]["detail"]
    assert ".local advertised" not in checks["mdns"]["detail"]
    for check in summary["checks"]:
        if check["status"] != "OK":
            assert check["advice"], f"{check['name']} says what is wrong but not what to do"


def test_unreachable_upstream_is_a_fail(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret-value-1234")
    secret.chmod(0o600)
    # A port bound and never listened on: refused, and no other test can take it meanwhile.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = write_config(
            tmp_path / "edged.toml",
            f'[upstream]\nendpoint = "127.0.0.1:{port}"\nsecure = false\naccess_key = "k"\n'
            f'secret_key_file = "{secret}"\n',
        )
        result = run_edged(
            "doctor", "--config", str(config), "--data-dir", str(tmp_path / "d"), timeout=90
        )
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "upstream" in line)
    assert line.startswith("FAIL") and "unreachable" in line
    assert "secret-value-1234" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("graph", "status", "heard"),
    [
        ("anullsrc=r=48000:cl=stereo", "WARN", "-inf dBFS: input muted or unplugged?"),
        ("sine=frequency=440:sample_rate=48000", "OK", "-18.1 dBFS peak over 1 s"),
    ],
)
def test_doctor_listens_to_each_streams_sound(
    tmp_path: Path, graph: str, status: str, heard: str
) -> None:
    """The test pattern's sound is the stand-in (there is no camera or sound card here): the
    doctor listens to a second of it, as it would to each sound card."""
    config = write_config(
        tmp_path / "edged.toml", f'[media]\ntest_pattern = "on"\naudio_stand_in = "{graph}"\n'
    )
    result = run_edged(
        "doctor", "--json", "--config", str(config), "--data-dir", str(tmp_path / "d"), timeout=90
    )
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    line = checks["audio test-pattern"]
    assert (line["status"], line["detail"]) == (status, f"lavfi:{graph},arealtime: {heard}")
    assert bool(line["advice"]) == (status != "OK")

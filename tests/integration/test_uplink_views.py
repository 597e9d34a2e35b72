"""The uplinks shown to people: `edged doctor`, `edged uploads` and `GET /api/v1/uploads`, on this
machine's loopback only (an upstream on 127.0.0.1 leaves by `lo`)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.integration.test_upload_api import post_json
from tests.integration.upload_support import s3, upstream_settings, write_random
from tests.s3server import S3Server
from tests.support import run_edged, until

pytestmark = pytest.mark.integration
__all__ = ["s3"]


def test_doctor_names_the_loopback_uplink(tmp_path: Path, s3: S3Server) -> None:
    config = tmp_path / "edged.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "upstream": upstream_settings(tmp_path, s3),
                "upload": {"uplinks": [{"match": "lo", "metered": True, "daily_budget": "1GiB"}]},
            }
        )
    )
    result = run_edged(
        "doctor", "--json", "--config", str(config), "--data-dir", str(tmp_path / "d"), timeout=120
    )
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["upstream"]["status"] == "OK"
    assert checks["uplink lo"] == {
        "name": "uplink lo",
        "status": "OK",
        "detail": "127.0.0.1; up; metered; carries guest, clip, manifest; route to upstream: yes; "
        f"budget left today {1024**3} bytes",
        "advice": "",
    }


def test_the_api_and_edged_uploads_show_the_loopback_uplink(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    """No [upload] uplinks: the one uplink is the kernel's route to the upstream (lo here), by
    the default store; the API shows it live, `edged uploads` as the daemon last saved it."""
    daemon = start_daemon({"mdns": {"enabled": False}, "upstream": upstream_settings(tmp_path, s3)})
    assert daemon.data_dir is not None
    url = daemon.url + "/api/v1/uploads"
    assert daemon.data_dir is not None
    crew = (daemon.data_dir / "admin.token").read_text().strip()

    def lo_seen() -> list[dict[str, object]]:
        return [
            row
            for row in json.loads(http(url, token=crew)[1])["uplinks"]
            if row["interface"] == "lo"
        ]

    (row,) = until(lo_seen, 30, "the API names lo")
    assert row["address"] == "127.0.0.1"
    assert (row["metered"], row["route"], row["usable"]) == (False, True, True)
    assert row["classes"] == ["guest", "clip", "manifest", "recording"]
    assert row["budget_left_bytes"] is None
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_uplink_up{interface="lo"} 1.0' in metrics
    assert b"edged_uplink_budget_remaining_bytes{" not in metrics
    state = daemon.data_dir / "uplinks.json"
    until(state.exists, 30, "the uplinks saved")
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert daemon.stop() == 0

    listed = run_edged("uploads", "--json", "--data-dir", str(daemon.data_dir))
    report = json.loads(listed.stdout)
    assert [row["interface"] for row in report["uplinks"]] == ["lo"]
    assert report["uplinks_seen_at"] > 0
    table = run_edged("uploads", "--data-dir", str(daemon.data_dir)).stdout
    assert "uplinks (as edged saw them at" in table
    assert "lo        127.0.0.1  unmetered  guest,clip,manifest,recording  usable" in table


def test_a_metered_uplink_alone_carries_the_clip_and_keeps_the_recording(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    """The upstream reached by lo alone, lo metered: the uploader takes only what lo carries (a
    clip goes, a recording waits, queued); the cap's schedule sets the bucket at start."""
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "upstream": upstream_settings(tmp_path, s3),
            "upload": {
                "uplinks": [{"match": "lo", "metered": True}],
                "bandwidth_schedule": {"00:00-12:00": "64MiB", "12:00-00:00": "64MiB"},
            },
        }
    )
    assert daemon.data_dir is not None
    token = (daemon.data_dir / "admin.token").read_text().strip()
    outbox = daemon.data_dir / "outbox"
    outbox.mkdir(exist_ok=True)
    write_random(outbox / "take.mp4", 1024 * 1024)
    write_random(outbox / "clip.mp4", 1024 * 1024)
    write_random(outbox / "later.mp4", 1024 * 1024)
    url = daemon.url + "/api/v1/uploads"
    assert daemon.data_dir is not None
    crew = (daemon.data_dir / "admin.token").read_text().strip()
    cap = "upload bandwidth cap set to 67108864 bytes/s"
    until(lambda: any(cap in line for line in daemon.lines), 30, "the cap set by the schedule")
    queued = {}
    for name, kind in (("take.mp4", "recording"), ("clip.mp4", "clip")):
        status, body = post_json(url, {"path": f"outbox/{name}", "kind": kind}, token)
        assert status == 202, body
        queued[kind] = body["id"]

    def state_of(kind: str) -> str:
        report = json.loads(http(url, token=crew)[1])
        return next(row["state"] for row in report["files"] if row["id"] == queued[kind])

    until(lambda: state_of("clip") == "done", 60, "the clip done")
    # The worker is free after the clip: a recording it may take would go before a later clip.
    status, body = post_json(url, {"path": "outbox/later.mp4", "kind": "clip"}, token)
    assert status == 202, body
    queued["later"] = body["id"]
    until(lambda: state_of("later") == "done", 60, "the later clip done")
    assert state_of("recording") == "queued"
    (row,) = json.loads(http(url, token=crew)[1])["uplinks"]
    assert (row["interface"], row["metered"], row["route"]) == ("lo", True, True)
    assert daemon.stop() == 0

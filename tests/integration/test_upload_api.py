"""The daemon with an upstream: the uploads API, its guard, and paths outside the data dir."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.integration.upload_support import (
    MiB,
    object_sha256,
    s3,
    upstream_settings,
    write_random,
)
from tests.s3server import SECRET_KEY, S3Server

pytestmark = pytest.mark.integration
__all__ = ["s3"]


def post_json(url: str, body: object, token: str | None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(  # noqa: S310 - loopback test URL
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_uploads_api_end_to_end(tmp_path: Path, s3: S3Server, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "node": {"event": "gala"},
            "upstream": upstream_settings(tmp_path, s3),
            "upload": {"part_size": "5MiB"},
        }
    )
    assert daemon.data_dir is not None
    token = (daemon.data_dir / "admin.token").read_text().strip()
    spool = daemon.data_dir / "outbox"
    spool.mkdir(exist_ok=True)
    sha = write_random(spool / "clip.mp4", 12 * MiB)
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"secret footage")

    url = daemon.url + "/api/v1/uploads"
    assert post_json(url, {"path": "outbox/clip.mp4"}, None)[0] == 401
    for bad in ("../outside.mp4", str(outside), "outbox/../../outside.mp4", "outbox", "\x00"):
        status, body = post_json(url, {"path": bad}, token)
        assert status == 404, (bad, body)
    assert post_json(url, {"path": "outbox/clip.mp4", "kind": "movie"}, token)[0] == 400
    assert post_json(url, ["not", "an", "object"], token)[0] == 400
    assert post_json(url, {"path": "outbox/clip.mp4", "stream": "../x"}, token)[0] == 400

    status, body = post_json(
        url, {"path": "outbox/clip.mp4", "stream": "cam1", "kind": "clip"}, token
    )
    assert status == 202, body
    file_id = body["id"]
    deadline = time.monotonic() + 60
    while True:
        status, raw = http(url, token=token)
        report = json.loads(raw)
        row = next(row for row in report["files"] if row["id"] == file_id)
        if row["state"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row["state"] == "done", row
    assert row["parts_done"] == row["parts_total"] == 3
    assert report["upstream"] == {"configured": True, "up": True}
    day = datetime.fromtimestamp((spool / "clip.mp4").stat().st_mtime, UTC).strftime("%Y-%m-%d")
    assert row["key"] == f"gala/box/cam1/{day}/clip.mp4"
    assert object_sha256(s3, row["key"]) == sha

    assert post_json(url + f"/{file_id}/retry", {}, token)[0] == 409
    assert post_json(url + "/999/retry", {}, token)[0] == 404

    _, metrics = http(daemon.url + "/metrics")
    assert b"edged_upstream_up 1.0" in metrics
    assert b'edged_upload_parts_total{result="ok"} 3.0' in metrics
    assert b"edged_upload_queue_files 0.0" in metrics
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=metrics, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(SECRET_KEY not in line for line in daemon.lines)
    assert daemon.stop() == 0


def test_uploads_api_queues_only_footage_folders(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    """Only spool/, cache/ and outbox/ may go upstream: never the token, journal, lock or keys;
    types are checked; no refusal names the data dir; nothing reaches the bucket."""
    daemon = start_daemon({"mdns": {"enabled": False}, "upstream": upstream_settings(tmp_path, s3)})
    assert daemon.data_dir is not None
    data_dir = daemon.data_dir
    token = (data_dir / "admin.token").read_text().strip()
    url = daemon.url + "/api/v1/uploads"
    outbox = data_dir / "outbox"
    outbox.mkdir(exist_ok=True)
    (outbox / "token-link.mp4").symlink_to(data_dir / "admin.token")
    (outbox / "upstream.key").write_text("private")
    (outbox / "loop-a").symlink_to(outbox / "loop-b")
    (outbox / "loop-b").symlink_to(outbox / "loop-a")
    (data_dir / "loose.mp4").write_bytes(b"not in a footage folder")
    write_random(outbox / "ok.mp4", 1024)
    refused = [
        "admin.token",
        "uploads.sqlite3",
        "edged.lock",
        str(data_dir / "admin.token"),
        "outbox/token-link.mp4",
        "outbox/upstream.key",
        "outbox/loop-a",
        "outbox/loop-a/x",
        "loose.mp4",
        "spool",
        "outbox/" + "x" * 5000,
    ]
    for bad in refused:
        status, body = post_json(url, {"path": bad}, token)
        assert status == 404, (bad, body)
        assert str(data_dir) not in json.dumps(body) and "admin.token" not in json.dumps(body)
    for bad_body in (
        {"path": "outbox/ok.mp4", "stream": None},
        {"path": "outbox/ok.mp4", "stream": True},
        {"path": "outbox/ok.mp4", "stream": 7},
        {"path": "outbox/ok.mp4", "stream": ""},
        {"path": "outbox/ok.mp4", "stream": "a b"},
        {"path": "outbox/ok.mp4", "kind": ["clip"]},
        {"path": "outbox/ok.mp4", "kind": None},
        {"path": None},
        {"path": 5},
    ):
        status, body = post_json(url, bad_body, token)
        assert status == 400, (bad_body, body)
        assert len(str(body["error"])) < 200
    status, body = post_json(url, {"path": "outbox/ok.mp4", "stream": "cam-1.a_b"}, token)
    assert status == 202, body
    assert post_json(url + "/99999999999999999999/retry", {}, token)[0] == 404
    assert post_json(url + "/9223372036854775808/retry", {}, token)[0] == 404
    assert post_json(url + "/" + "9" * 5000 + "/retry", {}, token)[0] == 404
    _, raw = http(url, token=token)
    keys = [row["key"] for row in json.loads(raw)["files"]]
    assert len(keys) == 1 and keys[0].endswith(
        "/cam-1.a_b/" + keys[0].rsplit("/", 2)[1] + "/ok.mp4"
    )
    assert all("Traceback" not in line for line in daemon.lines)
    assert daemon.stop() == 0


def test_uploads_cli_lists_the_journal(tmp_path: Path, s3: S3Server) -> None:
    from tests.integration.test_upload_crash import push_config
    from tests.support import run_edged

    config = push_config(tmp_path, s3)
    source = tmp_path / "one.mp4"
    write_random(source, 1 * MiB)
    data_dir = tmp_path / "data"
    pushed = run_edged(
        "uploads", "--config", str(config), "--data-dir", str(data_dir), "push", str(source)
    )
    assert pushed.returncode == 0, pushed.stderr
    listed = run_edged("uploads", "--json", "--config", str(config), "--data-dir", str(data_dir))
    report = json.loads(listed.stdout)
    assert report["files"][0]["state"] == "done"
    assert report["events"][0]["kind"] == "verified"
    table = run_edged("uploads", "--config", str(config), "--data-dir", str(data_dir))
    assert "done" in table.stdout and "1/1 parts" in table.stdout

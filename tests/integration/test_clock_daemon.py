"""A real daemon whose clock is two days behind (libfaketime) against an S3 server that checks
request times as AWS does (issue 21 item 3): the files wait, queued, with the server's message in
the log, in `GET /api/v1/uploads` and in `edged uploads`; the clock is a metric."""

from __future__ import annotations

import glob
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edged.clock import clock_synchronized
from tests.conftest import StartDaemon
from tests.integration.upload_support import MiB, s3, upstream_settings
from tests.s3server import S3Server
from tests.support import DaemonProcess, run_edged, until

pytestmark = pytest.mark.integration
__all__ = ["s3"]  # fixture

SERVER_MESSAGE = "The difference between the request time and the current time is too large."


def faked_clock(**settings: str) -> dict[str, str]:
    """libfaketime preloaded (the `faketime` command forks and keeps SIGTERM from edged)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    found += sorted(glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: scripts/install-debs faketime (make debs)"
    return {"LD_PRELOAD": found[0], "FAKETIME_DONT_FAKE_MONOTONIC": "1", **settings}


def get(daemon: DaemonProcess, path: str) -> bytes:
    """GET `path` as the crew (the upload queue is the crew's)."""
    assert daemon.data_dir is not None
    token = (daemon.data_dir / "admin.token").read_text().strip()
    call = urllib.request.Request(daemon.url + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 - loopback
    with urllib.request.urlopen(call, timeout=10) as response:  # noqa: S310
        return bytes(response.read())


def push(daemon: DaemonProcess, data_dir: Path, name: str) -> None:
    (data_dir / "outbox" / name).write_bytes(b"x" * MiB)
    token = (data_dir / "admin.token").read_text().strip()
    call = urllib.request.Request(  # noqa: S310 - loopback
        daemon.url + "/api/v1/uploads",
        data=json.dumps({"path": f"outbox/{name}", "stream": "pushed"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(call, timeout=10) as response:  # noqa: S310
        assert response.status == 202


@pytest.mark.timeout(120)
def test_a_skewed_clock_keeps_uploads_waiting_and_says_why(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    s3.max_skew_seconds = 900
    daemon = start_daemon(
        {"mdns": {"enabled": False}, "upstream": upstream_settings(tmp_path, s3)},
        env=faked_clock(FAKETIME="-2d"),
    )
    assert daemon.data_dir is not None
    if clock_synchronized() is False:  # the same kernel: the daemon must say so at start
        daemon.seen_or_wait(re.compile(r"system clock is not synchronized"))
    push(daemon, daemon.data_dir, "clip.bin")

    def refused_row() -> dict[str, Any] | None:
        report = json.loads(get(daemon, "/api/v1/uploads"))
        rows = [row for row in report["files"] if SERVER_MESSAGE in row["last_error"]]
        return rows[0] if rows else None

    row = until(refused_row, 60, "the server's message as the last error")
    assert row["state"] == "queued"
    assert "RequestTimeTooSkewed" in row["last_error"]
    daemon.seen_or_wait(re.compile(r"upstream refused the request time \(RequestTimeTooSkewed"))
    assert s3.skew_refusals >= 1
    assert [path for path, _ in s3.part_puts if path.count("/") >= 2] == []  # no object PUT

    listed = run_edged("uploads", "--json", "--data-dir", str(daemon.data_dir))
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)["files"]
    assert SERVER_MESSAGE in shown["last_error"]
    assert shown["state"] == "queued"

    metrics = get(daemon, "/metrics").decode()
    assert re.search(r"^edged_clock_synchronized (0\.0|1\.0|NaN)$", metrics, re.M)
    assert daemon.stop() == 0
    refusals = [line for line in daemon.lines if "upstream refused the request time" in line]
    assert len(refusals) == 1  # once a minute, not per retry


def uploads(daemon: DaemonProcess) -> dict[str, Any]:
    return dict(json.loads(get(daemon, "/api/v1/uploads")))


def done(daemon: DaemonProcess, name: str) -> bool:
    rows = [row for row in uploads(daemon)["files"] if row["key"].endswith(f"/{name}")]
    return bool(rows) and rows[0]["state"] == "done"


@pytest.mark.timeout(120)
def test_a_clock_step_forward_prunes_nothing_from_the_event_log(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    """Issue 21 item 4: events minutes old, then NTP steps the wall clock 40 days forward (a
    running daemon, libfaketime re-reading its offset): the next uploads prune no event."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    daemon = start_daemon(
        {"mdns": {"enabled": False}, "upstream": upstream_settings(tmp_path, s3)},
        env=faked_clock(FAKETIME_TIMESTAMP_FILE=str(offset), FAKETIME_CACHE_DURATION="1"),
    )
    assert daemon.data_dir is not None
    push(daemon, daemon.data_dir, "before.bin")
    until(lambda: done(daemon, "before.bin"), 60, "the first file uploads")
    before = [event for event in uploads(daemon)["events"] if event["file_id"] == 1]
    assert len(before) >= 4

    offset.write_text("+40d\n")
    daemon.wait_for(re.compile(r"the wall clock stepped \+34560\d\d s"), timeout=30)
    push(daemon, daemon.data_dir, "after.bin")
    until(lambda: done(daemon, "after.bin"), 60, "the second file uploads")

    after = [event for event in uploads(daemon)["events"] if event["file_id"] == 1]
    assert after == before
    assert daemon.stop() == 0
    assert not [line for line in daemon.lines if "pruned" in line]

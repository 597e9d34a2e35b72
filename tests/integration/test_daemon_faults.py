"""The daemon under faults found by trying it (issue 12): a second daemon on the same data dir,
a box with no upstream, a stream whose source ends. Each failed on the code before its fix."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from typing import TypeVar

import pytest

from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import run_edged, until

pytestmark = pytest.mark.integration

QUIET = {"mdns": {"enabled": False}}
T = TypeVar("T")


def test_a_second_daemon_on_the_same_data_dir_exits_3_and_touches_nothing(
    start_daemon: StartDaemon,
) -> None:
    first = start_daemon({**QUIET, "media": {"record_test_pattern": True, "segment_seconds": 60.0}})
    assert first.data_dir is not None and first.config_file is not None
    spool = first.data_dir / "spool" / "test-pattern"
    first.seen_or_wait(re.compile(r"stream test-pattern: starting -> up"))
    part = until(lambda: next(iter(spool.glob("*.mp4.part")), None), 20.0)
    size_before = until(lambda: part.stat().st_size, 20.0)  # the first fragment is written

    second = run_edged("run", "--config", str(first.config_file), "--data-dir", str(first.data_dir))
    assert second.returncode == 3
    assert f"in use by process {first.process.pid}" in second.stderr
    assert "removed" not in second.stderr  # no crash recovery ran on the first one's files
    assert part.exists()
    status, _ = http(first.url + "/healthz")
    assert status == 200
    until(lambda: part.stat().st_size > size_before, 20.0)  # the first daemon records on
    assert first.stop() == 0
    segments = list(spool.glob("*.mp4"))
    assert segments and segments[0].stat().st_size >= size_before


def test_sync_off_queues_nothing_and_the_test_pattern_is_not_recorded(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(QUIET)
    daemon.seen_or_wait(re.compile(r"stream test-pattern: starting -> up"))
    _, body = http(daemon.url + "/api/v1/streams")
    (stream,) = json.loads(body)["streams"]
    assert stream["stream"] == "test-pattern" and stream["recording"] is False
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_recording_active{stream="test-pattern"} 0.0' in metrics
    assert b"edged_upstream_configured 0.0" in metrics
    assert daemon.data_dir is not None
    crew = (daemon.data_dir / "admin.token").read_text().strip()
    _, body = http(daemon.url + "/api/v1/uploads", token=crew)
    report = json.loads(body)
    assert report["files"] == [] and report["upstream"]["configured"] is False

    assert daemon.data_dir is not None
    (daemon.data_dir / "outbox").mkdir(exist_ok=True)
    (daemon.data_dir / "outbox" / "note.txt").write_text("hello")
    token = (daemon.data_dir / "admin.token").read_text().strip()
    request = urllib.request.Request(  # noqa: S310 - loopback
        daemon.url + "/api/v1/uploads",
        data=json.dumps({"path": "outbox/note.txt"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310
    assert refused.value.code == 400
    assert b"sync is off" in refused.value.read()
    assert daemon.config_file is not None
    shown = run_edged(
        "uploads", "--config", str(daemon.config_file), "--data-dir", str(daemon.data_dir)
    )
    assert shown.returncode == 0 and shown.stdout.startswith("sync is off"), shown
    assert daemon.stop() == 0


def test_sync_off_records_cameras_and_keeps_the_footage(start_daemon: StartDaemon) -> None:
    daemon = start_daemon({**QUIET, "media": {"record_test_pattern": True, "segment_seconds": 1.0}})
    daemon.wait_for(re.compile(r"recorded \S+"), timeout=30)
    daemon.wait_for(re.compile(r"recorded \S+"), timeout=30)
    assert daemon.data_dir is not None
    crew = (daemon.data_dir / "admin.token").read_text().strip()
    _, body = http(daemon.url + "/api/v1/uploads", token=crew)
    assert json.loads(body)["files"] == []
    assert daemon.stop() == 0
    assert len(list((daemon.data_dir / "spool" / "test-pattern").glob("*.mp4"))) >= 2


@pytest.mark.timeout(90)
def test_a_stream_that_goes_down_restarts_with_backoff(start_daemon: StartDaemon) -> None:
    settings = {
        **QUIET,
        # A camera whose source ends after a second, again and again.
        "media": {"v4l2_stand_in": "testsrc2=size=320x240:rate=15:duration=1,realtime"},
    }
    daemon = start_daemon(
        settings,
        wrapper=("umockdev-wrapper",),
        command=(sys.executable, "-m", "tests.devices.daemon_with_testbed"),
    )
    stream = "elgato-cam-link-4k-0004e1a2b3c4"
    daemon.send("plug 1-4 0 6")
    daemon.wait_for(re.compile(rf"stream {stream}: starting -> up"))
    daemon.wait_for(re.compile(rf"stream {stream} down \(source ended\); restart 1 in 1 s"))
    daemon.wait_for(re.compile(rf"stream {stream}: starting -> up"))
    daemon.wait_for(re.compile(rf"stream {stream} down \(source ended\); restart 2 in 2 s"))
    _, body = http(daemon.url + "/api/v1/streams")
    (entry,) = [s for s in json.loads(body)["streams"] if s["stream"] == stream]
    assert entry["restarts"] == 2
    assert entry["state"] in ("down", "starting", "up")
    daemon.wait_for(re.compile(rf"stream {stream}: starting -> up"))
    daemon.wait_for(re.compile(rf"stream {stream} down \(source ended\); restart 3 in 4 s"))
    _, body = http(daemon.url + "/api/v1/streams")
    (entry,) = [s for s in json.loads(body)["streams"] if s["stream"] == stream]
    assert entry["restarts"] == 3 and entry["reason"] == "source ended"
    assert daemon.stop() == 0

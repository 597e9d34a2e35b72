"""The daemon records the test pattern: segments decode end to end with the counted frames, a
SIGKILL mid-segment loses at most the fragment in progress, and hotplug starts and stops streams."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from typing import TypeVar

import av
import pytest

from edged.media.mp4 import whole_prefix
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import until

pytestmark = pytest.mark.integration
T = TypeVar("T")

FINAL = re.compile(
    r"stream (?P<stream>\S+) final counts: captured (?P<captured>\d+), encoded (?P<encoded>\d+), "
    r"dropped capture (?P<capture>\d+), encode (?P<encode>\d+), output (?P<output>\d+)"
)


def decoded(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def whole_fragments(spool: Path) -> int:
    """Complete fragments in the segment being written (0 before it exists)."""
    parts = list(spool.glob("*.mp4.part"))
    if len(parts) != 1:
        return 0
    with parts[0].open("rb") as handle:
        return whole_prefix(handle, parts[0].stat().st_size)[1]


@pytest.mark.timeout(120)
def test_test_pattern_720p30_for_20_seconds(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "media": {
                "pattern_size": "1280x720",
                "pattern_fps": 30,
                "segment_seconds": 5.0,
                "record_test_pattern": True,
            },
        }
    )
    assert daemon.data_dir is not None
    daemon.wait_for(re.compile(r"recorded \S+-\d+\.mp4"), timeout=30)
    status, body = http(daemon.url + "/api/v1/streams")
    assert status == 200
    (stream,) = json.loads(body)["streams"]
    assert (stream["stream"], stream["state"], stream["encoder"]) == (
        "test-pattern",
        "up",
        "libx264",
    )
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_encoder_info{encoder="libx264",hardware="false",stream="test-pattern"} 1.0' in (
        metrics
    )
    for _ in range(3):  # four segments of 5 s recorded: about 20 s of footage
        daemon.wait_for(re.compile(r"recorded \S+\.mp4: \d+ frames"), timeout=30)
    assert daemon.stop(timeout=30) == 0
    final = next(FINAL.search(line) for line in daemon.lines if FINAL.search(line))
    assert final is not None
    counts = {key: int(value) for key, value in final.groupdict().items() if key != "stream"}
    assert counts["captured"] == counts["encoded"] + counts["encode"]
    segments = sorted((daemon.data_dir / "spool" / "test-pattern").glob("*.mp4"))
    assert len(segments) >= 4
    frames = [decoded(path) for path in segments]
    assert sum(frames) == counts["encoded"]  # the recorder lost nothing
    for path, decodable in zip(segments, frames, strict=True):
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["file"] == path.name
        assert sidecar["size"] == path.stat().st_size
        assert sidecar["frames"] == decodable
        assert sidecar["encoder"] == "libx264"
        assert sidecar["node"] == "box"


def test_sigkill_mid_segment_keeps_the_footage(start_daemon: StartDaemon) -> None:
    settings = {
        "mdns": {"enabled": False},
        "media": {
            "pattern_size": "320x240",
            "pattern_fps": 30,
            "segment_seconds": 60.0,
            "gop_seconds": 0.5,
            "record_test_pattern": True,
        },
    }
    daemon = start_daemon(settings)
    assert daemon.data_dir is not None
    spool = daemon.data_dir / "spool" / "test-pattern"
    # The segment is open with six GOPs on disk.
    written = until(lambda: (count := whole_fragments(spool)) >= 6 and count)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)
    (part,) = spool.glob("*.mp4.part")
    torn_size = part.stat().st_size

    again = start_daemon(settings)
    recovered_line = again.seen_or_wait(
        re.compile(r"recovered (\S+) after a crash: (\d+) fragments")
    )
    final = Path(recovered_line.group(1))
    fragments = int(recovered_line.group(2))
    assert not list(spool.glob("*.mp4.part")) or final.exists()
    assert final.exists() and final.stat().st_size <= torn_size
    frames = decoded(final)
    assert frames == fragments * 15  # whole GOPs of 0.5 s at 30 fps, nothing torn
    assert fragments >= written  # every fragment on disk before the kill is kept
    sidecar = json.loads(final.with_suffix(".json").read_text())
    assert sidecar["recovered"] is True and sidecar["frames"] == frames
    assert again.data_dir is not None
    crew = (again.data_dir / "admin.token").read_text().strip()
    _, body = http(again.url + "/api/v1/uploads", token=crew)
    assert json.loads(body)["files"] == []  # sync is off: the footage stays here, unqueued
    assert again.stop() == 0


def test_hotplug_starts_marks_down_and_resumes_a_stream(start_daemon: StartDaemon) -> None:
    settings = {
        "mdns": {"enabled": False},
        "media": {
            "pattern_size": "320x240",
            "v4l2_stand_in": "testsrc2=size=320x240:rate=15,realtime",
            "segment_seconds": 2.0,
        },
    }
    daemon = start_daemon(
        settings,
        wrapper=("umockdev-wrapper",),
        command=(sys.executable, "-m", "tests.devices.daemon_with_testbed"),
    )
    assert daemon.data_dir is not None
    assert daemon.seen_or_wait(re.compile(r"stream test-pattern: pattern 320x240"))
    stream = "elgato-cam-link-4k-0004e1a2b3c4"

    daemon.send("plug 1-4 0 6")
    daemon.wait_for(re.compile(rf"stream {stream}: starting -> up"))
    daemon.wait_for(re.compile(r"recorded \S+ .*"), timeout=20)
    _, body = http(daemon.url + "/api/v1/streams")
    assert {s["stream"] for s in json.loads(body)["streams"]} == {stream}  # pattern gave way

    daemon.send("unplug")
    daemon.wait_for(
        re.compile(rf"stream {stream} down: /dev/video0 unplugged; its footage is kept")
    )
    _, metrics = http(daemon.url + "/metrics")
    assert f'edged_stream_up{{stream="{stream}"}} 0.0'.encode() in metrics
    assert list((daemon.data_dir / "spool" / stream).glob("*.mp4")), "footage kept"

    daemon.send("plug 1-6 2 9")  # another port, another node: the same stream name
    daemon.wait_for(re.compile(rf"stream {stream}: starting -> up"))
    _, body = http(daemon.url + "/api/v1/streams")
    states = {s["stream"]: s["state"] for s in json.loads(body)["streams"]}
    assert states == {stream: "up"}
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_device_events_total{action="add"} 4.0' in metrics
    assert b'edged_device_events_total{action="remove"} 2.0' in metrics
    assert daemon.stop() == 0

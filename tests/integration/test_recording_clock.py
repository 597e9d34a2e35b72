"""Recording under a clock that lies (libfaketime, Debian's `faketime`): a box without a real-time
clock that boots twice to the same saved time keeps every segment, and a clock step during a run
reaches the next segment's name and sidecar without a restart (issue #21 items 1 and 2)."""

from __future__ import annotations

import glob
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest

from edged.media.recorder import parse_segment_name
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http

pytestmark = pytest.mark.integration

SAVED_TIME = "2019-12-31 23:59:59"
RECORDED = re.compile(r"recorded (?P<name>\S+\.mp4): (?P<frames>\d+) frames")
SETTINGS = {
    "mdns": {"enabled": False},
    "media": {
        "pattern_size": "160x120",
        "pattern_fps": 15,
        "gop_seconds": 0.5,
        "segment_seconds": 1.0,
        "record_test_pattern": True,
    },
}


def decoded(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def media_seconds(path: Path) -> float:
    """First frame's start to last frame's end, by the segment's own timestamps."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.pts is not None]
        assert packets and stream.time_base is not None, path.name
        first = min(p.pts for p in packets if p.pts is not None)
        last = max(packets, key=lambda p: p.pts or 0)
        end = (last.pts or 0) + (last.duration or 0)
        return float((end - first) * stream.time_base)


def faked_clock(**settings: str) -> dict[str, str]:
    """The environment that runs edged on libfaketime's clock (Debian's `faketime` package).

    Preloaded directly rather than through the `faketime` command, which forks and does not pass
    SIGTERM on to edged. The MT library: edged has threads. Monotonic time is left alone, as
    an NTP step leaves it (libfaketime 0.9.10 then refuses Python's `time.sleep`, which edged
    uses only to pace a file source).
    """
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    found += sorted(glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: scripts/install-debs faketime (make debs)"
    return {"LD_PRELOAD": found[0], "FAKETIME_DONT_FAKE_MONOTONIC": "1", **settings}


def boot_of(name: str) -> int:
    parsed = parse_segment_name(Path(name).stem)
    assert parsed is not None, name
    return parsed.boot


def sidecar(path: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads(path.with_suffix(".json").read_text())
    return document


@pytest.mark.timeout(120)
def test_two_starts_at_the_same_saved_time_keep_every_segment(start_daemon: StartDaemon) -> None:
    runs: list[list[str]] = []
    spool = Path()
    for _ in range(2):
        # The wall clock stands at the saved time (no "@": it does not run), so both starts see
        # the very same seconds and names taken from the clock collide every time, not only when
        # both starts happen to open a segment in the same second. Monotonic time runs.
        daemon = start_daemon(SETTINGS, env=faked_clock(FAKETIME=SAVED_TIME))
        assert daemon.data_dir is not None
        spool = daemon.data_dir / "spool" / "test-pattern"
        names = [daemon.wait_for(RECORDED, timeout=40)["name"] for _ in range(3)]
        assert daemon.stop(timeout=30) == 0
        names += [m["name"] for line in daemon.lines[-20:] if (m := RECORDED.search(line))]
        runs.append(sorted(set(names)))
    first, second = runs
    # Both starts wrote names in the same few seconds of 2019-12-31: the clock alone repeats.
    assert all(name.startswith(("20191231T2359", "20200101T0000")) for name in first + second)
    assert not set(first) & set(second), "no name repeats across starts"
    assert ({boot_of(name) for name in first}, {boot_of(name) for name in second}) == ({1}, {2})
    on_disk = sorted(path.name for path in spool.glob("*.mp4"))
    assert on_disk == sorted(first + second), "every segment of both starts is kept"
    for name in on_disk:
        path = spool / name
        document = sidecar(path)
        assert document["file"] == name
        assert document["size"] == path.stat().st_size
        assert decoded(path) == document["frames"]
        assert document["boot"] == boot_of(name)


@pytest.mark.timeout(120)
def test_a_clock_step_reaches_the_next_segment_without_a_restart(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    clock = tmp_path / "faketime"
    clock.write_text(f"@{SAVED_TIME}\n")
    daemon = start_daemon(
        SETTINGS,
        env=faked_clock(
            FAKETIME_TIMESTAMP_FILE=str(clock),
            FAKETIME_CACHE_DURATION="1",  # the file is read again every second
        ),
    )
    assert daemon.data_dir is not None
    before = daemon.wait_for(RECORDED, timeout=40)["name"]
    assert before.startswith(("20191231T2359", "20200101T0000"))
    clock.write_text("@2021-06-01 12:00:00\n")  # NTP reached the box: the clock steps
    # libfaketime reads the file within a second; segments are a second long: the segment open
    # then may carry the old date, the ones after it the new one.
    later = [daemon.wait_for(RECORDED, timeout=40)["name"] for _ in range(3)]
    status, playlist = http(daemon.url + "/live/test-pattern/index.m3u8")
    assert status == 200
    dates = re.findall(rb"#EXT-X-PROGRAM-DATE-TIME:(\S+)", playlist)
    assert dates and dates[-1].startswith(b"2021-06-01T"), dates  # live viewers see it too
    assert daemon.stop(timeout=30) == 0
    after = later[-1]
    assert after.startswith("20210601T"), later

    starts = [line for line in daemon.lines if "stream test-pattern: pattern" in line]
    assert len(starts) == 1, "the stream was never restarted"
    spool = daemon.data_dir / "spool" / "test-pattern"
    document = sidecar(spool / after)
    start = datetime.fromisoformat(str(document["start"]))
    assert (start.year, start.month, start.day) == (2021, 6, 1)
    assert start.strftime("%Y%m%dT%H%M%SZ") == after.split("-")[0]
    assert document["clock_synchronized"] in (True, False, None)
    for path in spool.glob("*.mp4"):
        facts = sidecar(path)
        frames = facts["frames"]
        assert isinstance(frames, int)
        length = datetime.fromisoformat(str(facts["end"])) - datetime.fromisoformat(
            str(facts["start"])
        )
        # The segment open during the step keeps its length: durations come from the media (its
        # own timestamps: a frame dropped under load leaves a gap, not a shorter segment).
        assert frames > 0
        assert abs(length.total_seconds() - media_seconds(path)) < 0.01, path.name
        assert datetime.fromisoformat(str(facts["start"])).tzinfo == UTC

"""The crew screen's view of the box: tiles, a line per concern, and the doctor's own findings
(its checks, its advice) as warnings in plain words."""

from __future__ import annotations

import json

import pytest

from edged.doctor import FAIL, OK, RESTREAM_ADVICE, UPSTREAM_OFF, WARN, Check
from edged.web.crew_view import (
    BoxFacts,
    CameraFacts,
    camera_tile,
    crew_state,
    doctor_findings,
    duration,
    heading,
    size,
    summary_lines,
    warnings,
)

NOW = 1_800_000_000.0
GiB = 2**30
WEBCAM = CameraFacts(
    "cam-usb-1",
    source="v4l2",
    width=1280,
    height=720,
    fps_target=30,
    fps=29.6,
    drops=3,
    audio="audio: hw:1",
    audio_device="hw:1",
    audio_dbfs=-18.4,
    recording=True,
)
PATTERN = CameraFacts("test-pattern", source="pattern", fps_target=15, fps=15.0)
HEALTHY = BoxFacts(
    now=NOW,
    node="box",
    cameras=(WEBCAM,),
    camera_devices=1,
    disk_free=50 * GiB,
    disk_total=64 * GiB,
    min_free_bytes=2 * GiB,
    temperatures={"cpu": 51.0},
    upstream_configured=True,
    upstream_up=True,
    clock_synced=True,
    signups=12,
)


def by_label(facts: BoxFacts) -> dict[str, tuple[str, str]]:
    return {line["label"]: (line["value"], line["status"]) for line in summary_lines(facts)}


def titles(facts: BoxFacts) -> list[str]:
    return [warning["title"] for warning in warnings(doctor_findings(facts))]


def test_a_camera_tile_shows_fps_drops_sound_and_its_thumbnail() -> None:
    tile = camera_tile(WEBCAM)
    assert tile["fps"] == "30/30 fps" and tile["ok"] is True
    assert tile["poster"] == "/live/cam-usb-1/poster.jpg"
    assert (tile["drops"], tile["size"], tile["recording"]) == (3, "1280x720", True)
    assert tile["audio"] == "-18 dBFS" and tile["level"] == pytest.approx(0.69)
    assert tile["meter"] is True and camera_tile(PATTERN)["meter"] is False


def test_a_camera_tile_down_says_why_and_without_figures_dashes() -> None:
    down = CameraFacts("cam-usb-1", state="down", reason="device unplugged", fps_target=30)
    tile = camera_tile(down)
    assert tile["ok"] is False and tile["state"] == "down: device unplugged"
    assert tile["fps"] == "-/30 fps" and tile["level"] == 0.0
    assert camera_tile(PATTERN)["audio"] == ""  # the status' line when it has no device
    assert camera_tile(CameraFacts("x", audio_device="hw:1", audio_dbfs=-120))["audio"] == "silent"


def test_a_healthy_box_has_no_warning_and_its_lines_are_ok() -> None:
    assert warnings(doctor_findings(HEALTHY)) == []
    lines = by_label(HEALTHY)
    assert lines == {
        "Recording": ("1 of 1 streams", OK),
        "Disk": ("50.0 GiB free of 64.0 GiB", OK),
        "Temperature": ("51 °C (cpu)", OK),
        "Upload backlog": ("nothing waiting", OK),
        "Upstream": ("up", OK),
        "Sign-ups": ("12", OK),
    }


def test_no_upstream_configured_is_the_doctors_warning_in_plain_words() -> None:
    facts = BoxFacts(now=NOW, upstream_configured=False, clock_synced=True)
    shown = warnings(doctor_findings(facts))
    upstream = next(w for w in shown if w["title"] == "Footage is not being uploaded")
    assert upstream == {
        "level": "warn",
        "title": "Footage is not being uploaded",
        "detail": UPSTREAM_OFF.detail,
        "advice": UPSTREAM_OFF.advice,
    }
    assert by_label(facts)["Upstream"] == ("off: footage stays on the box", WARN)


def test_an_upstream_down_is_a_failure_with_the_doctors_advice() -> None:
    facts = BoxFacts(
        now=NOW,
        upstream_configured=True,
        upstream_up=False,
        queue_files=4,
        queue_bytes=3 * GiB,
        oldest_pending_seconds=600,
        clock_synced=True,
    )
    first = warnings(doctor_findings(facts))[0]
    assert first["level"] == "fail" and first["title"] == "Footage is not being uploaded"
    assert "footage is kept until it can go" in first["advice"]
    assert by_label(facts)["Upload backlog"] == ("4 files, 3.0 GiB, oldest 10 min", WARN)
    assert by_label(facts)["Upstream"] == ("down: footage waits", FAIL)


def test_the_disk_below_its_floor_fails_as_the_doctor_says() -> None:
    facts = BoxFacts(**{**vars(HEALTHY), "disk_free": GiB})
    assert by_label(facts)["Disk"] == ("1.0 GiB free of 64.0 GiB", FAIL)
    disk = warnings(doctor_findings(facts))[0]
    assert (
        disk["title"] == "Disk space is low" and "recording stops below 2.0 GiB" in disk["advice"]
    )


def test_heat_and_an_unknown_temperature() -> None:
    hot = BoxFacts(**{**vars(HEALTHY), "temperatures": {"cpu": 82.0}, "throttled": True})
    assert by_label(hot)["Temperature"] == ("82 °C (cpu)", WARN)
    assert titles(hot) == ["Heat", "The box slows itself down"]
    unknown = BoxFacts(**{**vars(HEALTHY), "temperatures": {}})
    assert titles(unknown) == ["Temperature unknown"]
    assert by_label(unknown)["Temperature"] == ("no sensor", OK)


def test_no_camera_plugged_in_only_when_the_device_report_says_so() -> None:
    alone = BoxFacts(**{**vars(HEALTHY), "cameras": (PATTERN,), "camera_devices": 0})
    assert titles(alone) == ["No camera plugged in"]
    assert titles(BoxFacts(**{**vars(alone), "camera_devices": None})) == []
    # the test pattern records only when asked: not news
    assert by_label(alone)["Recording"] == ("0 of 1 streams", OK)


def test_fewer_cameras_than_expected() -> None:
    expecting = BoxFacts(**{**vars(HEALTHY), "cameras": (WEBCAM, PATTERN), "cameras_expected": 2})
    shown = warnings(doctor_findings(expecting))
    assert [(w["title"], w["detail"]) for w in shown] == [
        ("A camera is missing", "1 of 2 expected cameras stream")
    ]
    assert titles(BoxFacts(**{**vars(expecting), "cameras_expected": 1})) == []


def test_a_cameras_own_troubles() -> None:
    down = CameraFacts("cam-usb-1", state="down", reason="device unplugged", source="v4l2")
    idle = CameraFacts("cam-usb-2", source="v4l2", recording=False)
    muted = CameraFacts(
        "cam-usb-3", source="v4l2", recording=True, audio_device="hw:3", audio_dbfs=-90.0
    )
    facts = BoxFacts(**{**vars(HEALTHY), "cameras": (down, idle, muted)})
    shown = warnings(doctor_findings(facts))
    assert [w["title"] for w in shown] == [
        "Camera cam-usb-1 is not streaming",
        "Sound of cam-usb-1",
        "Camera cam-usb-2 is not recording",
        "Sound of cam-usb-2",
        "Sound of cam-usb-3",
    ]
    assert shown[0]["level"] == "fail" and shown[0]["detail"] == "down: device unplugged"
    assert "unmute the input" in shown[4]["advice"]  # the doctor's own words for a quiet input
    assert by_label(facts)["Recording"] == ("1 of 3 streams", WARN)


def test_restream_states_through_the_doctors_check() -> None:
    row = {
        "name": "yt",
        "stream": "cam-usb-1",
        "url": "rtmp://a.example/live/****",
        "enabled": True,
        "state": "retrying",
        "reason": "connection refused",
        "reconnects": 2,
    }
    live = {**row, "name": "tw", "state": "live", "reason": "", "since": NOW}
    facts = BoxFacts(**{**vars(HEALTHY), "restream": (row, live)})
    shown = warnings(doctor_findings(facts))
    assert [w["title"] for w in shown] == ["Restream yt is not live"]
    assert shown[0]["advice"] == RESTREAM_ADVICE and "****" in shown[0]["detail"]
    state = crew_state(facts)
    assert state["restream"] == [
        {"label": "yt (cam-usb-1)", "value": "retrying: connection refused", "status": WARN},
        {"label": "tw (cam-usb-1)", "value": "live", "status": OK},
    ]


def test_failures_come_first_and_ok_lines_are_left_out() -> None:
    checks = [Check("clock", WARN, "a"), Check("disk", OK, "b"), Check("upstream", FAIL, "c", "d")]
    assert [(w["level"], w["title"]) for w in warnings(checks)] == [
        ("fail", "Footage is not being uploaded"),
        ("warn", "The clock may be wrong"),
    ]


def test_a_check_without_a_plain_heading_keeps_its_name() -> None:
    assert heading(Check("mdns", WARN, "x")) == "Mdns"
    assert heading(Check("camera cam-usb-1", WARN, "x")) == "Camera cam-usb-1"


def test_sizes_and_waits_as_the_crew_reads_them() -> None:
    assert [size(n) for n in (0, 512, 2048, 5 * 2**20, int(12.34 * GiB))] == [
        "0 B",
        "512 B",
        "2 KiB",
        "5 MiB",
        "12.3 GiB",
    ]
    assert [duration(s) for s in (40, 300, 7800)] == ["40 s", "5 min", "2 h 10 min"]


def test_the_state_is_json() -> None:
    state = crew_state(HEALTHY)
    assert json.loads(json.dumps(state)) == state
    assert state["cameras"][0]["stream"] == "cam-usb-1" and state["warnings"] == []

"""`edged doctor`'s verdicts from facts: the same lines on every machine that runs the tests."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.devices.capabilities import Capabilities, Mode
from edged.devices.classify import DeviceKind
from edged.devices.manager import Device
from edged.doctor import (
    FAIL,
    OK,
    UPSTREAM_OFF,
    WARN,
    Check,
    audio_check,
    board_check,
    camera_checks,
    disk_check,
    encoder_checks,
    temperature_checks,
    upstream_check,
    worst,
)
from edged.errors import EdgedError
from edged.media.encoders import EncoderSettings, ProbeResult
from edged.media.level import FLOOR_DBFS
from edged.media.listen import Heard, peak_dbfs
from edged.s3bucket import UpstreamError

GiB = 2**30
SETTINGS = EncoderSettings(1280, 720, 30, 4_000_000)


def device(kind: DeviceKind, *, problem: str = "", modes: tuple[Mode, ...] = ()) -> Device:
    return Device(
        node="/dev/video0",
        sys_path="/sys/devices/x/video4linux/video0",
        kind=kind,
        reason="test",
        label="Cam Link 4K",
        stream="cam-link",
        usb_id="0fd9:0066",
        serial="",
        usb_path="1-4",
        driver="uvcvideo",
        name="Cam Link 4K",
        capabilities=Capabilities("uvcvideo", "Cam Link 4K", modes) if modes else None,
        problem=problem,
    )


def test_board_with_and_without_a_profile() -> None:
    assert board_check("pi5", "model file", is_fallback=False) == Check(
        "board", OK, "pi5: model file"
    )
    generic = board_check("generic-x86", "no profile matched", is_fallback=True)
    assert generic.status == WARN and "hardware/boards" in generic.advice


def test_no_camera_is_a_warning_naming_a_csi_camera() -> None:
    (none,) = camera_checks([])
    assert (none.name, none.status) == ("cameras", WARN)
    assert "CSI" not in none.detail and "test pattern" in none.advice
    (csi,) = camera_checks([device(DeviceKind.CSI_CAMERA), device(DeviceKind.CODEC)])
    assert csi.status == WARN and "(a CSI camera is present)" in csi.detail


def test_cameras_with_their_best_mode_and_problems() -> None:
    modes = (Mode("MJPG", 1920, 1080, 30.0), Mode("YUYV", 3840, 2160, 25.0))
    good, bad = camera_checks(
        [
            device(DeviceKind.CAPTURE_CARD, modes=modes),
            device(DeviceKind.WEBCAM, problem="cannot open /dev/video0: busy"),
        ]
    )
    assert (good.name, good.status) == ("camera cam-link", OK)
    assert good.detail.endswith("up to 3840x2160@25 YUYV")
    assert (bad.status, bad.advice) == (WARN, "cannot open /dev/video0: busy")


def test_encoders_software_and_hardware() -> None:
    software = ProbeResult("libx264", ok=True, reason="", fps=95.4)
    hardware = ProbeResult("h264_v4l2m2m", ok=False, reason="no device")
    checks = encoder_checks([hardware, software], SETTINGS, has_hardware=False)
    assert [(c.name, c.status) for c in checks] == [
        ("encoder h264_v4l2m2m", WARN),
        ("encoder libx264", OK),
        ("encoding", OK),
    ]
    assert checks[1].detail == "95 fps at 1280x720"
    assert checks[2].detail == "libx264 will be used"
    on_a_pi4 = encoder_checks([hardware, software], SETTINGS, has_hardware=True)
    assert on_a_pi4[-1].status == WARN and "software encoder libx264" in on_a_pi4[-1].detail


def test_no_encoder_fails_and_a_slow_one_warns() -> None:
    none = encoder_checks([ProbeResult("libx264", ok=False, reason="x")], SETTINGS, False)
    assert none[-1] == Check("encoding", FAIL, "no H.264 encoder works", "reinstall edged (PyAV)")
    slow = encoder_checks([ProbeResult("libx264", ok=True, reason="", fps=12.0)], SETTINGS, False)
    assert [(c.name, c.status) for c in slow][-2:] == [("encoding", OK), ("encoding speed", WARN)]


@pytest.mark.parametrize(
    ("free", "status"),
    [(1 * GiB, FAIL), (2 * GiB - 1, FAIL), (2 * GiB, WARN), (4 * GiB - 1, WARN), (4 * GiB, OK)],
)
def test_disk_against_min_free_bytes(free: int, status: str) -> None:
    check = disk_check(free, 100 * GiB, 300 * 2**20, minimum=2 * GiB)
    assert check.status == status
    assert check.detail.endswith("GiB free of 100.0 GiB; spool 300 MiB")
    assert bool(check.advice) == (status != OK)


@pytest.mark.parametrize(
    ("hottest", "status"), [(60.0, OK), (79.9, OK), (80.0, WARN), (84.9, WARN), (85.0, FAIL)]
)
def test_temperature_against_the_board_limits(hottest: float, status: str) -> None:
    (check,) = temperature_checks({"cpu": 40.0, "gpu": hottest}, 80.0, 85.0, throttled=None)
    assert check.status == status
    assert check.detail == f"{hottest:.0f} °C (gpu); limits 80/85 °C"


def test_no_sensor_and_pi_throttling() -> None:
    none, throttling = temperature_checks({}, 80.0, 85.0, throttled=True)
    assert (none.status, throttling.status) == (WARN, WARN)
    assert "VM" in none.advice and throttling.advice
    _, calm = temperature_checks({}, 80.0, 85.0, throttled=False)
    assert calm == Check("pi throttling", OK, "not throttled")


def test_upstream_verdicts() -> None:
    assert UPSTREAM_OFF.status == WARN and UPSTREAM_OFF.advice
    ok = upstream_check("s3.example:9000", "edged", None)
    assert ok.status == OK and "s3.example:9000 answers; bucket edged" in ok.detail
    down = upstream_check("s3.example:9000", "edged", UpstreamError("upstream unreachable"))
    assert (down.name, down.status, down.detail) == ("upstream", FAIL, "upstream unreachable")
    keys = upstream_check("s3.example:9000", "edged", EdgedError("secret_key_file: mode 0644"))
    assert (keys.name, keys.status) == ("credentials", FAIL)


def test_the_summary_is_the_worst_line() -> None:
    ok, warn, fail = Check("a", OK, ""), Check("b", WARN, ""), Check("c", FAIL, "")
    assert worst([]) == OK
    assert worst([ok, ok]) == OK
    assert worst([ok, warn]) == WARN
    assert worst([warn, fail, ok]) == FAIL


CARD = "hw:CARD=MS2109,DEV=0"


def test_a_stream_that_hears_its_card_says_its_peak() -> None:
    check = audio_check("audio cam", CARD, Heard(-23.44, 1.0), camera=True)
    assert check == Check("audio cam", OK, f"{CARD}: -23.4 dBFS peak over 1 s")


@pytest.mark.parametrize("peak", [-math.inf, -60.1, -96.0])
def test_nothing_heard_asks_whether_the_input_is_muted(peak: float) -> None:
    check = audio_check("audio cam", CARD, Heard(peak, 1.0), camera=True)
    assert check.status == WARN
    assert check.detail == f"{CARD}: {peak:.1f} dBFS: input muted or unplugged?"
    assert "alsamixer" in check.advice
    assert audio_check("audio cam", CARD, Heard(-math.inf, 1.0), camera=True).detail == (
        f"{CARD}: -inf dBFS: input muted or unplugged?"
    )
    assert audio_check("audio cam", CARD, Heard(-6.0, 0.0), camera=True).status == WARN  # no sound


def test_a_device_that_cannot_be_listened_to_says_why() -> None:
    busy = Heard(-math.inf, error=f"cannot open audio {CARD}: [Errno 16] Device or resource busy")
    check = audio_check("audio cam", CARD, busy, camera=True)
    assert check.status == WARN and check.detail == f"{CARD}: cannot listen: {busy.error}"
    assert "stop that to listen" in check.advice


def test_no_sound_device_warns_for_a_camera_only() -> None:
    camera = audio_check("audio cam", None, None, camera=True)
    assert (camera.status, camera.detail) == (WARN, "no audio device")
    assert "[audio] devices" in camera.advice
    assert audio_check("audio test-pattern", None, None, camera=False) == Check(
        "audio test-pattern", OK, "no audio device"
    )


def test_an_input_no_stream_takes_is_listed_with_how_to_assign_it() -> None:
    mic = "hw:CARD=Device,DEV=0"
    check = audio_check(f"audio {mic}", mic, Heard(-30.0, 1.0), camera=False, assigned=False)
    assert check.status == WARN
    assert check.detail == f"no stream takes it; {mic}: -30.0 dBFS peak over 1 s"
    assert check.advice == "name it for a stream in [audio] devices"
    silent = audio_check(f"audio {mic}", mic, Heard(-math.inf, 1.0), camera=False, assigned=False)
    assert silent.advice.endswith("; name it for a stream in [audio] devices")


def floats(values: list[float]) -> bytes:
    return struct.pack(f"={len(values)}f", *values)


def test_peak_in_dbfs() -> None:
    assert peak_dbfs(b"") == -math.inf
    assert peak_dbfs(floats([0.0, -0.0])) == -math.inf
    assert peak_dbfs(floats([0.1, -1.0, 0.5])) == 0.0
    assert peak_dbfs(floats([0.125])) == pytest.approx(-18.06, abs=0.01)
    assert peak_dbfs(floats([1e-9])) == FLOOR_DBFS  # the level metric's floor, not silence


@given(st.lists(st.floats(-1.0, 1.0, width=32), min_size=1))
def test_the_peak_is_the_loudest_sample_as_the_level_metric_reads_it(samples: list[float]) -> None:
    """The doctor and the level metric read the same peak (level.py: never above the true one,
    at most 0.07 dB under it); only digital silence reads -inf."""
    loudest = max(abs(value) for value in samples)
    level = peak_dbfs(floats(samples))
    assert level <= 0.0
    if not loudest:
        assert level == -math.inf
    elif 20 * math.log10(loudest) <= FLOOR_DBFS:  # the floor, or too small to tell from silence
        assert level in (FLOOR_DBFS, -math.inf)
    else:
        true = 20 * math.log10(loudest)
        assert max(true - 0.07, FLOOR_DBFS) <= level <= true

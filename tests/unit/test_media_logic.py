"""The media subsystem's pure parts: H.264 byte streams, MP4 structure, retention, thermal,
mode choice, gap counting, encoder candidates."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.devices.capabilities import Mode
from edged.media.encoders import EncoderSettings, candidates
from edged.media.mp4 import whole_prefix
from edged.media.packets import has_parameter_sets, nal_units, split_parameter_sets
from edged.media.pipeline import missing_frames
from edged.media.retention import SpoolFile, plan
from edged.media.sources import choose_mode
from edged.media.thermal import (
    MAX_LEVEL,
    STEP_DOWN_SECONDS,
    STEP_UP_SECONDS,
    ThermalPolicy,
    stepped_down,
)

SPS = b"\x67\x64\x00\x1f\xac"
PPS = b"\x68\xee\x3c\x80"
IDR = b"\x65\x88\x84\x00"


def annexb(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def test_split_parameter_sets_from_a_v4l2m2m_style_packet() -> None:
    packet = annexb(SPS, PPS, IDR)
    parameter_sets, rest = split_parameter_sets(packet)
    assert parameter_sets == annexb(SPS, PPS)
    assert rest == annexb(IDR)
    assert has_parameter_sets(packet) and not has_parameter_sets(rest)


def test_three_byte_start_codes() -> None:
    assert nal_units(b"\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS) == [SPS, PPS]


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_whole_prefix_drops_a_torn_fragment() -> None:
    head = box(b"ftyp", b"isom") + box(b"moov", b"x" * 20)
    fragment = box(b"moof", b"m" * 10) + box(b"mdat", b"d" * 50)
    data = head + fragment + fragment + fragment[:-7]
    end, fragments = whole_prefix(io.BytesIO(data), len(data))
    assert (end, fragments) == (len(head) + 2 * len(fragment), 2)


def test_whole_prefix_without_moov_is_nothing() -> None:
    data = box(b"ftyp", b"isom") + box(b"mo", b"")[:5]
    assert whole_prefix(io.BytesIO(data), len(data)) == (0, 0)


def test_moof_without_its_mdat_is_cut() -> None:
    head = box(b"ftyp") + box(b"moov")
    data = head + box(b"moof", b"m" * 4)
    assert whole_prefix(io.BytesIO(data), len(data)) == (len(head), 0)


@given(st.binary(max_size=300))
def test_whole_prefix_never_claims_more_than_the_file(data: bytes) -> None:
    end, fragments = whole_prefix(io.BytesIO(data), len(data))
    assert 0 <= end <= len(data) and fragments >= 0


def spool(path: str, size: int, mtime: float, uploaded: bool) -> SpoolFile:
    return SpoolFile(path, size, mtime, uploaded)


def test_retention_deletes_oldest_uploaded_first() -> None:
    files = [
        spool("new-up", 10, 3, True),
        spool("old-up", 10, 1, True),
        spool("oldest-not", 10, 0, False),
    ]
    decision = plan(files, free_bytes=85, min_free_bytes=100, delete_unuploaded=False)
    assert [f.path for f in decision.delete] == ["old-up", "new-up"]
    assert decision.freed == 20 and not decision.stop_recording


def test_retention_never_deletes_unuploaded_unless_allowed() -> None:
    files = [spool("up", 10, 1, True), spool("not", 50, 0, False)]
    decision = plan(files, free_bytes=50, min_free_bytes=100, delete_unuploaded=False)
    assert [f.path for f in decision.delete] == ["up"]
    assert decision.stop_recording
    allowed = plan(files, free_bytes=50, min_free_bytes=100, delete_unuploaded=True)
    assert [f.path for f in allowed.delete] == ["up", "not"]
    assert not allowed.stop_recording


def test_retention_does_nothing_with_enough_space() -> None:
    assert plan([spool("a", 1, 0, True)], 200, 100, delete_unuploaded=True).delete == ()


def test_thermal_steps_down_then_up_with_hysteresis() -> None:
    policy = ThermalPolicy(soft_limit=75, hard_limit=85)
    now = 0.0
    assert policy.update(78, False, now) == 0  # hot, the clock starts
    now += STEP_DOWN_SECONDS
    assert policy.update(78, False, now) == 1
    now += STEP_DOWN_SECONDS
    assert policy.update(78, False, now) == 2
    assert policy.update(72, False, now + 1) == 2  # inside the hysteresis band: hold
    now += 2
    assert policy.update(60, False, now) == 2  # cool: the clock starts
    assert policy.update(60, False, now + STEP_UP_SECONDS - 1) == 2
    assert policy.update(60, False, now + STEP_UP_SECONDS) == 1


def test_thermal_hard_limit_and_firmware_throttling() -> None:
    policy = ThermalPolicy(soft_limit=75, hard_limit=85)
    assert policy.update(90, False, 0) == MAX_LEVEL
    calm = ThermalPolicy(soft_limit=75, hard_limit=85)
    calm.update(50, True, 0)
    assert calm.update(50, True, STEP_DOWN_SECONDS) == 1
    assert ThermalPolicy(75, 85).update(None, False, 0) == 0


def test_thermal_settings_step_down() -> None:
    base = EncoderSettings(1280, 720, 30, 3_000_000)
    assert stepped_down(base, 1) == base
    assert stepped_down(base, 2) == EncoderSettings(640, 360, 30, 3_000_000)
    assert stepped_down(base, 3) == EncoderSettings(640, 360, 30, 1_500_000)


def test_mode_choice_prefers_mjpeg_above_720p_on_usb2() -> None:
    modes = (
        Mode("YUYV", 1920, 1080, 5.0),
        Mode("MJPG", 1920, 1080, 30.0),
        Mode("YUYV", 640, 480, 30.0),
    )
    assert choose_mode(modes, 1920, 1080, 30, usb2=True) == Mode("MJPG", 1920, 1080, 30.0)
    assert choose_mode(modes, 640, 480, 30, usb2=True) == Mode("YUYV", 640, 480, 30.0)
    assert choose_mode((), 640, 480, 30, usb2=True) is None


@pytest.mark.parametrize(
    ("previous", "current", "fps", "missing"),
    [(None, 1.0, 30, 0), (1.0, 1.0 + 1 / 30, 30, 0), (1.0, 1.0 + 4 / 30, 30, 3), (2.0, 1.0, 30, 0)],
)
def test_missing_frames(previous: float | None, current: float, fps: float, missing: int) -> None:
    assert missing_frames(previous, current, fps) == missing


def test_candidates_end_with_libx264_once() -> None:
    assert candidates(["h264_v4l2m2m", "libx264"]) == ["h264_v4l2m2m", "libx264"]
    assert candidates(["h264_qsv", "h264_qsv"]) == ["h264_qsv", "libx264"]

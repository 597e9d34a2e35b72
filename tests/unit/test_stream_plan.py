"""`wanted_streams`: which streams should run, from the devices present and the config."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.config import MediaConfig
from edged.devices.board import BUILTIN_FALLBACK
from edged.devices.capabilities import Capabilities, Mode
from edged.devices.classify import STREAMABLE, DeviceKind
from edged.devices.manager import Device
from edged.media.stream_plan import (
    PATTERN_STREAM,
    PlanConfig,
    StreamSpec,
    pattern_wanted,
    records,
    stream_changes,
    wanted_streams,
)

DEFAULTS = BUILTIN_FALLBACK.defaults


def device(
    stream: str | None,
    kind: DeviceKind = DeviceKind.WEBCAM,
    *,
    node: str = "/dev/video0",
    sys_path: str = "/sys/video0",
    modes: tuple[Mode, ...] = (),
) -> Device:
    return Device(
        node=node,
        sys_path=sys_path,
        kind=kind,
        reason="test",
        label="Camera",
        stream=stream,
        usb_id="",
        serial="",
        usb_path="",
        driver="uvcvideo",
        name="Camera",
        capabilities=Capabilities("uvcvideo", "Camera", modes) if modes else None,
        problem="",
    )


def config(test_pattern: str = "auto", **media: Any) -> PlanConfig:
    return PlanConfig(MediaConfig(test_pattern=test_pattern, **media), DEFAULTS)


def test_no_camera_in_auto_runs_the_pattern_alone() -> None:
    wanted = wanted_streams([], config("auto", pattern_size="320x240", pattern_fps=15))
    assert list(wanted) == [PATTERN_STREAM]
    spec = wanted[PATTERN_STREAM]
    assert spec.device is None
    assert spec.source.kind == "pattern"
    assert (spec.source.width, spec.source.height, spec.source.fps) == (320, 240, 15)
    assert spec.bitrate == DEFAULTS["webcam"].bitrate


def test_a_camera_in_auto_replaces_the_pattern() -> None:
    camera = device("cam-1", modes=(Mode("MJPG", 1280, 720, 30.0),))
    wanted = wanted_streams([camera], config("auto"))
    assert list(wanted) == ["cam-1"]
    spec = wanted["cam-1"]
    assert spec.device is camera
    assert spec.source.kind == "v4l2" and spec.source.location == "/dev/video0"
    assert spec.source.options["input_format"] == "mjpeg"
    assert spec.bitrate == DEFAULTS["webcam"].bitrate


def test_pattern_on_runs_beside_cameras_and_off_never() -> None:
    cards = [device("card-1", DeviceKind.CAPTURE_CARD)]
    assert set(wanted_streams(cards, config("on"))) == {"card-1", PATTERN_STREAM}
    assert wanted_streams(cards, config("on"))["card-1"].bitrate == 4_000_000
    assert wanted_streams([], config("off")) == {}


def test_devices_that_do_not_stream_are_left_out() -> None:
    present = [
        device(None),  # a webcam's metadata node: no stream name
        device("csi-1", DeviceKind.CSI_CAMERA),
        device("codec", DeviceKind.CODEC),
    ]
    assert list(wanted_streams(present, config("auto"))) == [PATTERN_STREAM]


def test_the_last_device_with_a_stream_name_wins() -> None:
    first = device("cam", node="/dev/video0", sys_path="/sys/a")
    second = device("cam", node="/dev/video2", sys_path="/sys/b")
    assert wanted_streams([first, second], config())["cam"].device is second
    assert wanted_streams([second, first], config())["cam"].device is first


def test_an_unstartable_camera_leaves_room_for_the_pattern() -> None:
    present = [device("cam")]
    wanted = wanted_streams(present, config("auto"), unstartable={"cam"})
    assert list(wanted) == [PATTERN_STREAM]


@pytest.mark.parametrize(("is_file", "kind"), [(True, "file"), (False, "pattern")])
def test_the_v4l2_stand_in_replaces_every_camera_source(is_file: bool, kind: str) -> None:
    plan = dataclasses.replace(
        config(v4l2_stand_in="testsrc2=size=320x240:rate=15"), stand_in_is_file=is_file
    )
    spec = wanted_streams([device("cam")], plan)["cam"]
    assert spec.source.kind == kind
    assert spec.source.location == "testsrc2=size=320x240:rate=15"
    assert (spec.source.width, spec.source.height) == (1280, 720)  # the class's defaults


def test_a_spec_compares_by_value_so_an_unchanged_device_is_not_restarted() -> None:
    camera = device("cam")
    assert wanted_streams([camera], config()) == wanted_streams([camera], config())
    moved = dataclasses.replace(camera, node="/dev/video4")
    assert wanted_streams([moved], config())["cam"] != wanted_streams([camera], config())["cam"]


def test_changes_stop_the_unwanted_and_start_the_missing_and_the_changed() -> None:
    camera = device("cam")
    before = wanted_streams([], config())  # the pattern alone
    after = wanted_streams([camera], config())
    todo = stream_changes(before, after)
    assert todo.stop == (PATTERN_STREAM,)
    assert todo.start == (after["cam"],)
    assert stream_changes(after, after) == stream_changes(after, after, {"other"})
    assert stream_changes(after, after).start == ()
    moved = wanted_streams([dataclasses.replace(camera, node="/dev/video4")], config())
    assert stream_changes(after, moved).start == (moved["cam"],)
    assert stream_changes(after, moved).stop == ()


def test_a_replugged_camera_restarts_even_when_nothing_changed() -> None:
    running = wanted_streams([device("cam")], config())
    assert stream_changes(running, running, {"cam"}).start == (running["cam"],)


def test_the_pattern_records_only_when_asked() -> None:
    plain, asked = MediaConfig(), MediaConfig(record_test_pattern=True)
    assert records("cam", True, plain) and not records("cam", False, plain)
    assert not records(PATTERN_STREAM, True, plain)
    assert records(PATTERN_STREAM, True, asked) and not records(PATTERN_STREAM, False, asked)


kinds = st.sampled_from(list(DeviceKind))
names = st.sampled_from(["a", "b", "c", None])
devices = st.lists(st.builds(device, names, kinds), max_size=6)
modes = st.sampled_from(["auto", "on", "off"])


@given(devices, modes, st.frozensets(st.sampled_from(["a", "b", "c"])))
def test_wanted_streams_invariants(
    present: list[Device], mode: str, unstartable: frozenset[str]
) -> None:
    wanted = wanted_streams(present, config(mode), unstartable=unstartable)
    cameras = {
        d.stream
        for d in present
        if d.kind in STREAMABLE and d.stream is not None and d.stream not in unstartable
    }
    assert set(wanted) - {PATTERN_STREAM} == cameras
    assert (PATTERN_STREAM in wanted) == pattern_wanted(mode, len(cameras))
    for name, spec in wanted.items():
        assert isinstance(spec, StreamSpec) and spec.name == name
        assert (spec.device is None) == (name == PATTERN_STREAM)


@given(devices, devices, modes)
def test_after_the_changes_the_running_streams_are_the_wanted_ones(
    before: list[Device], after: list[Device], mode: str
) -> None:
    running = wanted_streams(before, config(mode))
    wanted = wanted_streams(after, config(mode))
    todo = stream_changes(running, wanted)
    result = {name: spec for name, spec in running.items() if name not in todo.stop}
    result.update({spec.name: spec for spec in todo.start})
    assert result == wanted
    assert not set(todo.stop) & {spec.name for spec in todo.start}

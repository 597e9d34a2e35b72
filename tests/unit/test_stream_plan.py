"""`wanted_streams`: which streams should run, from the devices present and the config."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.config import AudioConfig, MediaConfig
from edged.devices.board import BUILTIN_FALLBACK
from edged.devices.capabilities import Capabilities, Mode
from edged.devices.classify import STREAMABLE, DeviceKind
from edged.devices.manager import Device
from edged.media.audio import AudioSpec
from edged.media.stream_plan import (
    PATTERN_STREAM,
    PlanConfig,
    StreamSpec,
    hearing,
    pattern_wanted,
    records,
    sound_pulled,
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
    usb_path: str = "",
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
        usb_path=usb_path,
        driver="uvcvideo",
        name="Camera",
        capabilities=Capabilities("uvcvideo", "Camera", modes) if modes else None,
        problem="",
    )


def sound_card(alsa: str, usb_path: str, card: int = 1) -> Device:
    return Device(
        node=f"/dev/snd/pcmC{card}D0c",
        sys_path=f"/sys/sound/card{card}/pcmC{card}D0c",
        kind=DeviceKind.AUDIO,
        reason="test",
        label="USB Audio",
        stream=None,
        usb_id="",
        serial="",
        usb_path=usb_path,
        driver="snd-usb-audio",
        name="",
        capabilities=None,
        problem="",
        alsa=alsa,
    )


def config(
    test_pattern: str = "auto", audio: AudioConfig | None = None, **media: Any
) -> PlanConfig:
    return PlanConfig(
        MediaConfig(test_pattern=test_pattern, **media), DEFAULTS, audio=audio or AudioConfig()
    )


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


# -- each stream's sound --------------------------------------------------------------------------

MS2109 = "hw:CARD=MS2109,DEV=0"
C920 = "hw:CARD=C920,DEV=0"
MIC = "hw:CARD=Device,DEV=0"
SINE = "sine=frequency=440:sample_rate=48000"
CARD = device("card", DeviceKind.CAPTURE_CARD, node="/dev/video4", sys_path="/s/4", usb_path="1-4")
WEBCAM = device("webcam", node="/dev/video0", sys_path="/s/0", usb_path="1-2")


def alsa(name: str) -> AudioSpec:
    return AudioSpec("alsa", name, 48000, 128000)


def sounds(wanted: dict[str, StreamSpec]) -> dict[str, str | None]:
    return {name: spec.audio.label if spec.audio else None for name, spec in wanted.items()}


def test_a_camera_takes_the_sound_card_on_its_usb_device_with_no_configuration() -> None:
    present = [CARD, WEBCAM, sound_card(MS2109, "1-4"), sound_card(MIC, "1-9", card=3)]
    wanted = wanted_streams(present, config())
    assert wanted["card"].audio == alsa(MS2109)
    assert wanted["webcam"].audio is None  # its microphone is not plugged; the lone mic not taken
    assert sounds(wanted_streams(present, config(audio=AudioConfig(enabled=False)))) == {
        "card": None,
        "webcam": None,
    }


def test_the_override_wins_and_a_card_it_takes_is_not_opened_twice() -> None:
    present = [CARD, WEBCAM, sound_card(MS2109, "1-4"), sound_card(C920, "1-2", card=2)]
    audio = AudioConfig(devices={"card": MIC, "webcam": MS2109})  # the lone mic; the card's sound
    assert sounds(wanted_streams(present, config(audio=audio))) == {"card": MIC, "webcam": MS2109}
    taken = AudioConfig(devices={PATTERN_STREAM: MS2109})
    assert sounds(wanted_streams(present, config("on", audio=taken))) == {
        "card": None,  # the pattern has its sound: one hw: device opens once
        "webcam": C920,
        PATTERN_STREAM: MS2109,
    }


def test_the_stand_in_is_for_streams_without_a_sound_card() -> None:
    present = [CARD, WEBCAM, sound_card(MS2109, "1-4")]
    wanted = wanted_streams(present, config("on", audio_stand_in=SINE))
    assert sounds(wanted) == {
        "card": MS2109,
        "webcam": f"lavfi:{SINE},arealtime",
        PATTERN_STREAM: f"lavfi:{SINE},arealtime",
    }
    assert sounds(wanted_streams([], config())) == {PATTERN_STREAM: None}


def test_plugging_a_sound_card_restarts_only_its_stream() -> None:
    running = wanted_streams([CARD, WEBCAM], config("on"))
    wanted = wanted_streams([CARD, WEBCAM, sound_card(MS2109, "1-4")], config("on"))
    todo = stream_changes(running, wanted)
    assert (todo.stop, todo.start, todo.keep) == ((), (wanted["card"],), ())
    assert wanted["card"].audio == alsa(MS2109)


def test_pulling_a_sound_card_keeps_its_stream_running_video_only() -> None:
    running = wanted_streams([CARD, WEBCAM, sound_card(MS2109, "1-4")], config())
    wanted = wanted_streams([CARD, WEBCAM], config())
    todo = stream_changes(running, wanted)
    assert (todo.stop, todo.start, todo.keep) == ((), (), (wanted["card"],))
    assert sound_pulled(running["card"], wanted["card"])
    # Plugged back (any card number, the same ALSA name): the stream starts again with it.
    back = wanted_streams([CARD, WEBCAM, sound_card(MS2109, "1-4", card=5)], config())
    assert back == running
    assert stream_changes(wanted, back).start == (back["card"],)


def test_a_sound_card_pulled_with_other_changes_restarts() -> None:
    running = wanted_streams([CARD, sound_card(MS2109, "1-4")], config())
    moved = dataclasses.replace(CARD, node="/dev/video6")
    wanted = wanted_streams([moved], config())
    assert not sound_pulled(running["card"], wanted["card"])
    assert stream_changes(running, wanted).start == (wanted["card"],)
    # The stand-in takes over from a pulled card: that is a new sound, so a restart.
    stand_in = config(audio_stand_in=SINE)
    before = wanted_streams([CARD, sound_card(MS2109, "1-4")], stand_in)
    after = wanted_streams([CARD], stand_in)
    assert stream_changes(before, after).start == (after["card"],)
    # Asked to restart (the camera itself was replugged): no keeping.
    assert stream_changes(running, wanted_streams([CARD], config()), {"card"}).keep == ()


def test_the_streams_hearing_a_device_are_found_by_its_alsa_name() -> None:
    audio = AudioConfig(devices={"webcam": MIC})
    wanted = wanted_streams([CARD, WEBCAM, sound_card(MS2109, "1-4")], config(audio=audio))
    assert hearing(wanted, MIC) == {"webcam"}
    assert hearing(wanted, MS2109) == {"card"}
    assert hearing(wanted, C920) == set()


kinds = st.sampled_from(list(DeviceKind))
names = st.sampled_from(["a", "b", "c", None])
ports = st.sampled_from(["", "1-1", "1-2"])
nodes = st.sampled_from([f"/dev/video{n}" for n in range(0, 12, 2)])
cameras = st.builds(device, names, kinds, node=nodes, usb_path=ports)
cards = st.builds(sound_card, st.sampled_from([MS2109, C920, MIC]), ports, st.integers(1, 4))
# As udev lists them: each node once, each ALSA name once (the kernel makes card ids unique).
devices = st.lists(
    st.one_of(cameras, cards),
    max_size=6,
    unique_by=(lambda d: d.node, lambda d: d.alsa or d.node),
)
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
    result.update({spec.name: spec for spec in todo.start + todo.keep})
    assert result == wanted
    assert not set(todo.stop) & {spec.name for spec in todo.start + todo.keep}
    assert not {spec.name for spec in todo.start} & {spec.name for spec in todo.keep}
    for spec in todo.keep:  # kept: only their sound went
        assert spec.audio is None and running[spec.name].audio is not None


@given(devices, modes)
def test_an_alsa_device_is_never_given_to_two_streams(present: list[Device], mode: str) -> None:
    wanted = wanted_streams(present, config(mode))
    heard = [spec.audio.location for spec in wanted.values() if spec.audio is not None]
    assert len(heard) == len(set(heard))

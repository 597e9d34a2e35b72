"""Audio inputs from udev facts, their ALSA names, and which camera each one goes with: pure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.devices.classify import DeviceKind
from edged.devices.manager import Device, DeviceManager, describe_sound
from edged.devices.report import print_devices, report_json
from edged.devices.sound import (
    Pcm,
    SoundFacts,
    alsa_name,
    classify_sound,
    pair,
    parse_pcm,
    unpaired,
)
from edged.metrics import DeviceMetrics


def pcm(
    sys_name: str = "pcmC1D0c", card_id: str = "MS2109", usb_path: str = "1-5", **more: str
) -> SoundFacts:
    return SoundFacts(
        sys_path=f"/sys/x/{usb_path}/{sys_name}",
        sys_name=sys_name,
        dev_node=f"/dev/snd/{sys_name}",
        card_id=card_id,
        driver="snd-usb-audio",
        usb_path=usb_path,
        **more,
    )


def video(node: str, usb_path: str, kind: DeviceKind = DeviceKind.CAPTURE_CARD) -> Device:
    return Device(
        node=node,
        sys_path=f"/sys/{node}",
        kind=kind,
        reason="test",
        label="Camera",
        stream=f"camera-{usb_path}" if kind is not DeviceKind.IGNORED else None,
        usb_id="",
        serial="",
        usb_path=usb_path,
        driver="uvcvideo",
        name="Camera",
        capabilities=None,
        problem="",
    )


def audio(sys_name: str, card_id: str, usb_path: str) -> Device:
    device = describe_sound(pcm(sys_name, card_id, usb_path))
    assert device is not None
    return device


@pytest.mark.parametrize(
    ("sys_name", "expected"),
    [
        ("pcmC1D0c", Pcm(1, 0, capture=True)),
        ("pcmC0D3p", Pcm(0, 3, capture=False)),
        ("pcmC12D10c", Pcm(12, 10, capture=True)),
        ("controlC1", None),
        ("card1", None),
        ("pcmC1D0", None),
        ("pcmC1D0cx", None),
        ("hwC0D0", None),
        ("", None),
    ],
)
def test_parse_pcm(sys_name: str, expected: Pcm | None) -> None:
    assert parse_pcm(sys_name) == expected


def test_alsa_name_from_the_card_id() -> None:
    assert alsa_name("MS2109", Pcm(1, 0, capture=True)) == "hw:CARD=MS2109,DEV=0"
    assert alsa_name("C920", Pcm(2, 1, capture=True)) == "hw:CARD=C920,DEV=1"


@pytest.mark.parametrize("odd", ["", "a,b", "x=y", "two words", "é", "A" * 40])
def test_alsa_name_falls_back_to_the_card_number(odd: str) -> None:
    assert alsa_name(odd, Pcm(3, 0, capture=True)) == "hw:CARD=3,DEV=0"


def test_capture_pcm_is_an_audio_input() -> None:
    verdict = classify_sound(pcm(product="USB Video"))
    assert verdict is not None
    classification, name = verdict
    assert classification.kind is DeviceKind.AUDIO
    assert name == "hw:CARD=MS2109,DEV=0"
    assert classification.label == "USB Video"
    assert classification.reason == "ALSA capture device 0 of MS2109 (USB audio on 1-5)"


@pytest.mark.parametrize("sys_name", ["pcmC0D0p", "controlC0", "card0", "midiC1D0", "seq"])
def test_playback_cards_and_controls_are_not_inputs(sys_name: str) -> None:
    assert classify_sound(pcm(sys_name, "vc4hdmi0", "")) is None


def test_describe_sound_is_a_device_of_kind_audio() -> None:
    device = describe_sound(pcm(vendor_id="534d", product_id="2109"))
    assert device is not None
    assert (device.kind, device.node, device.alsa, device.stream, device.name) == (
        DeviceKind.AUDIO,
        "/dev/snd/pcmC1D0c",
        "hw:CARD=MS2109,DEV=0",
        None,
        "",  # no V4L2 name: board detection reads those
    )
    assert device.usb_id == "534d:2109"
    assert describe_sound(pcm("pcmC0D0p")) is None


def test_capture_card_and_webcam_each_get_their_own_sound() -> None:
    devices = [
        video("/dev/video0", "1-2", DeviceKind.WEBCAM),
        video("/dev/video1", "1-2", DeviceKind.IGNORED),  # its metadata node
        video("/dev/video4", "1-5"),
        audio("pcmC2D0c", "C920", "1-2"),
        audio("pcmC1D0c", "MS2109", "1-5"),
    ]
    assert pair(devices) == {
        "/dev/video0": "hw:CARD=C920,DEV=0",
        "/dev/video4": "hw:CARD=MS2109,DEV=0",
    }
    assert unpaired(devices) == []


def test_lone_microphone_is_unpaired() -> None:
    devices = [video("/dev/video0", "1-2"), audio("pcmC3D0c", "Device", "1-7")]
    assert pair(devices) == {}
    assert unpaired(devices) == ["hw:CARD=Device,DEV=0"]


def test_audio_not_on_usb_is_never_paired() -> None:
    devices = [video("/dev/video0", ""), audio("pcmC0D0c", "PCH", "")]
    assert pair(devices) == {}
    assert unpaired(devices) == ["hw:CARD=PCH,DEV=0"]


def test_one_input_is_never_given_to_two_cameras() -> None:
    """Two capture nodes on one USB device, one PCM: the first node (numeric order) gets it."""
    devices = [
        video("/dev/video10", "1-4"),
        video("/dev/video2", "1-4"),
        audio("pcmC1D0c", "Card", "1-4"),
    ]
    assert pair(devices) == {"/dev/video2": "hw:CARD=Card,DEV=0"}


def test_two_inputs_on_one_device_go_in_order() -> None:
    devices = [
        audio("pcmC1D1c", "Card", "1-4"),
        audio("pcmC1D0c", "Card", "1-4"),
        video("/dev/video0", "1-4"),
    ]
    assert pair(devices) == {"/dev/video0": "hw:CARD=Card,DEV=0"}
    assert unpaired(devices) == ["hw:CARD=Card,DEV=1"]


PORTS = st.sampled_from(["", "1-1", "1-2", "2-1.3"])


@given(
    st.lists(st.tuples(st.integers(0, 30), PORTS, st.booleans()), max_size=8),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3), PORTS), max_size=8),
)
def test_pairing_shares_a_usb_device_and_books_each_input_once(
    cameras: list[tuple[int, str, bool]], inputs: list[tuple[int, int, str]]
) -> None:
    devices = [
        video(f"/dev/video{number}", port, DeviceKind.WEBCAM if live else DeviceKind.IGNORED)
        for number, (port, live) in {number: (port, live) for number, port, live in cameras}.items()
    ]
    ports = {(card, dev): port for card, dev, port in inputs}  # the kernel numbers PCMs once
    devices += [
        audio(f"pcmC{card}D{dev}c", f"c{card}", port) for (card, dev), port in ports.items()
    ]
    pairs = pair(devices)
    by_node = {device.node: device for device in devices}
    by_alsa = {device.alsa: device for device in devices if device.alsa}
    assert len(set(pairs.values())) == len(pairs)
    for node, name in pairs.items():
        assert by_node[node].kind is DeviceKind.WEBCAM
        assert by_node[node].usb_path == by_alsa[name].usb_path != ""
    assert sorted(unpaired(devices)) == sorted(set(by_alsa) - set(pairs.values()))


BOARD = Board(
    BoardFacts(
        model="", compatible=(), machine="x86_64", nvhost_msenc=False, v4l2_names=frozenset()
    ),
    BUILTIN_FALLBACK,
    "test",
)


def test_report_pairs_both_ways() -> None:
    devices = [
        video("/dev/video4", "1-5"),
        video("/dev/video5", "1-5", DeviceKind.IGNORED),
        audio("pcmC1D0c", "MS2109", "1-5"),
        audio("pcmC3D0c", "Device", "1-7"),
    ]
    report = report_json(BOARD, devices)
    assert [(d["node"], d["audio"]) for d in report["devices"]] == [
        ("/dev/video4", "hw:CARD=MS2109,DEV=0"),
        ("/dev/video5", None),
    ]
    assert [(d["alsa"], d["video"], d["kind"]) for d in report["audio"]] == [
        ("hw:CARD=MS2109,DEV=0", "/dev/video4", "audio"),
        ("hw:CARD=Device,DEV=0", None, "audio"),
    ]
    assert "alsa" not in report["devices"][0]
    assert "capabilities" not in report["audio"][0]


def test_printed_report_names_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    print_devices(report_json(BOARD, [audio("pcmC3D0c", "Device", "1-7")]))
    out = capsys.readouterr().out
    assert "no video devices found" in out
    assert "hw:CARD=Device,DEV=0" in out
    assert "(unpaired)" in out
    print_devices(report_json(BOARD, []))
    assert "no audio inputs found" in capsys.readouterr().out


def manager_with(*devices: Device) -> tuple[DeviceManager, CollectorRegistry]:
    registry = CollectorRegistry()
    manager = DeviceManager({}, DeviceMetrics(registry))
    manager.devices = {device.sys_path: device for device in devices}
    return manager, registry


def test_manager_queries_for_the_media_side() -> None:
    manager, _ = manager_with(
        video("/dev/video4", "1-5"),
        audio("pcmC1D0c", "MS2109", "1-5"),
        audio("pcmC3D0c", "Device", "1-7"),
    )
    assert manager.audio_for("/dev/video4") == "hw:CARD=MS2109,DEV=0"
    assert manager.audio_for("/dev/video9") is None
    assert manager.unpaired_audio() == ["hw:CARD=Device,DEV=0"]


def test_audio_is_counted_by_kind() -> None:
    manager, registry = manager_with(video("/dev/video4", "1-5"), audio("pcmC1D0c", "M", "1-5"))
    manager._update_gauges()
    metrics = generate_latest(registry).decode()
    assert 'edged_devices{kind="audio"} 1.0' in metrics
    assert 'edged_devices{kind="capture_card"} 1.0' in metrics


class SoundEvent:
    """The udev device of a sound hotplug event (the seam: no udev here)."""

    action = "add"
    subsystem = "sound"

    def __init__(self, sys_name: str) -> None:
        self.sys_name = sys_name
        self.sys_path = f"/sys/devices/usb1/1-5/1-5:1.2/sound/card1/{sys_name}"
        self.device_node = f"/dev/snd/{sys_name}"
        self.properties: dict[str, str] = {}
        self.attributes: dict[str, bytes] = {"id": b"MS2109"}

    def find_parent(self, subsystem: str, device_type: str | None = None) -> Any:
        return self if subsystem == "sound" else None  # its own `id` stands for the card's


async def test_sound_events_add_inputs_and_drop_the_rest() -> None:
    manager, _ = manager_with()
    for sys_name in ("card1", "controlC1", "pcmC1D0p", "pcmC1D0c"):
        await manager._apply("add", f"/sys/{sys_name}", SoundEvent(sys_name))
    event = await asyncio.wait_for(manager.events.get(), 30)
    assert (event.action, event.device.kind, event.device.alsa) == (
        "add",
        DeviceKind.AUDIO,
        "hw:CARD=MS2109,DEV=0",
    )
    assert manager.events.empty()
    assert [device.node for device in manager.devices.values()] == ["/dev/snd/pcmC1D0c"]
    await manager._apply("remove", "/sys/pcmC1D0c", None)
    assert (await asyncio.wait_for(manager.events.get(), 30)).action == "remove"
    assert manager.devices == {}
    await manager.stop()

"""A sound card named in [audio] devices, plugged in while its stream runs without it: the stream
opens it again (its spec did not change, so only the event can say so); the others run on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import AudioConfig, MediaConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.devices.classify import DeviceKind
from edged.devices.manager import Device, DeviceEvent, DeviceManager
from edged.media.recorder import SegmentIdentity
from edged.media.stream_plan import PATTERN_STREAM
from edged.media.stream_supervisor import StreamSupervisor
from edged.metrics import DeviceMetrics, StreamMetrics
from tests.support import eventually

pytestmark = pytest.mark.integration

MIC = "hw:CARD=EdgedTestMic,DEV=0"  # no such card here: it fails to open, with its reason


def lone_mic(alsa: str) -> Device:
    return Device(
        node="/dev/snd/pcmC3D0c",
        sys_path="/sys/devices/usb1/1-7/sound/card3/pcmC3D0c",
        kind=DeviceKind.AUDIO,
        reason="test",
        label="USB PnP Sound Device",
        stream=None,
        usb_id="0d8c:0014",
        serial="",
        usb_path="1-7",
        driver="snd-usb-audio",
        name="",
        capabilities=None,
        problem="",
        alsa=alsa,
    )


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[tuple[StreamSupervisor, DeviceManager]]:
    """The test pattern with a lone microphone assigned to it, and the devices as udev left them
    (the manager is not started: the test hands the supervisor each event)."""
    media = MediaConfig(test_pattern="on", pattern_size="320x240", pattern_fps=15)
    board = Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test")
    supervisor = StreamSupervisor(
        media,
        board,
        StreamMetrics(CollectorRegistry()),
        tmp_path / "spool",
        lambda: SegmentIdentity(node="box", event="gig"),
        lambda segment: None,
        audio=AudioConfig(devices={PATTERN_STREAM: MIC}),
    )
    devices = DeviceManager({}, DeviceMetrics(CollectorRegistry()))
    await supervisor.start(devices, boot=1)
    try:
        yield supervisor, devices
    finally:
        await supervisor.stop()


def audio_line(supervisor: StreamSupervisor) -> str:
    return str(supervisor.status()[0]["audio"])


async def test_a_named_device_plugged_in_is_opened_again(
    box: tuple[StreamSupervisor, DeviceManager],
) -> None:
    supervisor, devices = box
    await eventually(lambda: audio_line(supervisor).startswith("video only: "), 20, "no mic")
    assert audio_line(supervisor).startswith(f"video only: cannot open audio {MIC}")
    before = supervisor.streams[PATTERN_STREAM].pipeline

    other = lone_mic("hw:CARD=Other,DEV=0")  # a device no stream names: nothing restarts
    devices.devices[other.sys_path] = other
    await supervisor.apply_event(DeviceEvent("add", other))
    assert supervisor.streams[PATTERN_STREAM].pipeline is before

    mic = lone_mic(MIC)
    devices.devices[mic.sys_path] = mic
    await supervisor.apply_event(DeviceEvent("add", mic))
    after = supervisor.streams[PATTERN_STREAM].pipeline
    assert after is not before, "the stream that names the device opens it again"
    assert supervisor.status()[0]["audio_device"] == MIC

    del devices.devices[mic.sys_path]  # pulled again: named in config, so the spec stays
    await supervisor.apply_event(DeviceEvent("remove", mic))
    assert supervisor.streams[PATTERN_STREAM].pipeline is after

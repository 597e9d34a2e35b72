"""Run under `umockdev-wrapper`: a real pyudev Monitor sees sound cards come and go.

A capture card with its sound card is plugged in; its sound card alone is removed, then added
again under another card number (the video stays) after an HDMI output (playback only); a lone
USB microphone appears; the capture card is pulled out. One JSON line per step: the device
events the DeviceManager emits, then what it answers the media side (audio_for,
unpaired_audio); the metrics before the last step.
"""

from __future__ import annotations

import asyncio
import json

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from edged.devices.manager import DeviceManager  # noqa: E402
from tests.devices import trees  # noqa: E402
from tests.devices.hotplug_probe import started_manager, sys_path  # noqa: E402

CARD_VIDEO = "/dev/video4"


def plug(testbed: UMockdev.Testbed, nodes: list[trees.Node]) -> None:
    testbed.add_from_string(trees.render(nodes))  # umockdev sends each node's "add" uevent


def unplug(testbed: UMockdev.Testbed, nodes: list[trees.Node]) -> None:
    for node in reversed(nodes):
        testbed.uevent(sys_path(node), "remove")
        testbed.remove_device(sys_path(node))


async def step(manager: DeviceManager, events: int) -> None:
    """Print the next `events` device events, then the manager's answers."""
    seen = []
    for _ in range(events):
        event = await asyncio.wait_for(manager.events.get(), 10)
        seen.append([event.action, event.device.kind.value, event.device.node, event.device.alsa])
    answers = {"audio_for": manager.audio_for(CARD_VIDEO), "unpaired": manager.unpaired_audio()}
    print(json.dumps({"events": sorted(seen)} | answers), flush=True)


async def main() -> None:
    testbed = UMockdev.Testbed.new()
    registry = CollectorRegistry()
    manager = await started_manager(registry)
    card = trees.ms2109_with_sound()
    video, sound = card[:4], card[4:]  # USB device, UVC interface, 2 nodes | UAC interface, card
    plug(testbed, card)
    await step(manager, 3)  # capture node, metadata node, capture PCM
    unplug(testbed, sound[1:])  # the sound card alone (its interface stays)
    await step(manager, 1)
    # umockdev's uevent socket holds about ten datagrams: a step sends fewer, then waits.
    plug(testbed, trees.hdmi_out())  # no event: playback only
    again = trees.usb_audio("1-5", 2, 4, "MS2109", ["D0c"])[1:]  # numbered anew, same card id
    plug(testbed, again)
    await step(manager, 1)  # the card's input, and nothing of the HDMI output
    plug(testbed, trees.lone_mic())  # its playback PCM: no event
    await step(manager, 1)
    print(json.dumps({"metrics": generate_latest(registry).decode()}), flush=True)
    unplug(testbed, video + sound[:1] + again)
    await step(manager, 3)
    await manager.stop()


if __name__ == "__main__":
    asyncio.run(main())

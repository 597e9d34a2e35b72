"""Run under `umockdev-wrapper`: a real pyudev Monitor sees a capture card come and go.

Adds a Cam Link 4K, removes it, adds it again on another USB port; prints one JSON line per
device event the DeviceManager emits, then the metrics. The test reads that output.
"""

from __future__ import annotations

import asyncio
import json

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from edged.devices import capture_cards  # noqa: E402
from edged.devices.capabilities import Capabilities  # noqa: E402
from edged.devices.manager import DeviceManager  # noqa: E402
from edged.metrics import DeviceMetrics  # noqa: E402
from tests.devices import trees  # noqa: E402


def no_probe(node: str) -> tuple[Capabilities | None, str]:
    return None, "not probed in this test"


def sys_path(node: trees.Node) -> str:
    return "/sys" + node.path


async def started_manager(registry: CollectorRegistry) -> DeviceManager:
    """A device manager over the testbed's devices, started; prints the first line every probe
    prints (the devices it starts with)."""
    manager = DeviceManager(capture_cards(), DeviceMetrics(registry), probe=no_probe, debounce=0.05)
    await manager.start()
    print(json.dumps({"start": len(manager.devices)}), flush=True)
    return manager


async def main() -> None:
    testbed = UMockdev.Testbed.new()
    registry = CollectorRegistry()
    manager = await started_manager(registry)

    async def next_event() -> dict[str, str | None]:
        event = await asyncio.wait_for(manager.events.get(), 10)
        return {
            "action": event.action,
            "node": event.device.node,
            "kind": event.device.kind,
            "stream": event.device.stream,
        }

    # Plugged in, pulled out, plugged into another port (the kernel numbers it anew).
    card: list[trees.Node] = []
    for port, first_video, bus_device in (("1-4", 0, 6), (None, 0, 0), ("1-6", 2, 9)):
        if port is None:
            for node in reversed(card):
                testbed.uevent(sys_path(node), "remove")
                testbed.remove_device(sys_path(node))
        else:
            card = trees.cam_link(port=port, first_video=first_video, bus_device=bus_device)
            testbed.add_from_string(trees.render(card))
            for node in card:
                testbed.uevent(sys_path(node), "add")
        events = [await next_event(), await next_event()]  # capture node and metadata node
        print(json.dumps({"events": events}), flush=True)
        print(json.dumps({"devices": sorted(d.kind for d in manager.devices.values())}), flush=True)
    await manager.stop()
    metrics = generate_latest(registry).decode()
    print(json.dumps({"metrics": metrics}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

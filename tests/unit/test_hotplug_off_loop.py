"""A hotplug event's sysfs reads (properties, attributes, parents) happen in a thread, never on
the event loop, which only takes the event's action and path from the monitor."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from edged.devices.capabilities import Capabilities
from edged.devices.manager import DeviceManager
from edged.metrics import DeviceMetrics

SYS_PATH = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4:1.0/video4linux/video0"


class SysfsDevice:
    """The udev device of a hotplug event (the seam: no udev here), noting which threads read
    what libudev would read from sysfs."""

    action = "add"
    sys_path = SYS_PATH

    def __init__(self) -> None:
        self.readers: set[int] = set()

    def _read(self) -> None:
        self.readers.add(threading.get_ident())

    @property
    def properties(self) -> dict[str, str]:
        self._read()
        return {"DEVNAME": "/dev/video0", "ID_V4L_CAPABILITIES": ":capture:", "ID_BUS": "usb"}

    @property
    def attributes(self) -> dict[str, bytes]:
        self._read()
        return {"name": b"Cam Link 4K", "index": b"0"}

    def find_parent(self, subsystem: str, device_type: str | None = None) -> Any:
        self._read()
        return None

    @property
    def parent(self) -> Any:
        self._read()
        return None

    @property
    def device_node(self) -> str:
        self._read()
        return "/dev/video0"


class OneEventMonitor:
    def __init__(self, device: SysfsDevice) -> None:
        self._events = [device]

    def poll(self, timeout: float) -> SysfsDevice | None:
        return self._events.pop() if self._events else None


def not_probed(node: str) -> tuple[Capabilities | None, str]:
    return None, "not probed in this test"


async def test_a_hotplug_event_is_described_off_the_event_loop() -> None:
    manager = DeviceManager({}, DeviceMetrics(CollectorRegistry()), probe=not_probed, debounce=0)
    device = SysfsDevice()
    manager._monitor = OneEventMonitor(device)
    try:
        manager._on_readable()  # what the loop runs when the monitor's descriptor is readable
        event = await asyncio.wait_for(manager.events.get(), 30)
    finally:
        manager._monitor = None
        await manager.stop()
    assert (event.action, event.device.node, event.device.name) == (
        "add",
        "/dev/video0",
        "Cam Link 4K",
    )
    assert manager.devices[SYS_PATH] == event.device
    assert device.readers and threading.get_ident() not in device.readers

"""The device subsystem: what is plugged in now, and add/remove events as the crew replugs.

Video nodes and ALSA capture devices (kind "audio") share one list, one event queue and one
gauge; `audio_for()` says which audio input goes with a camera or capture card.

Enumeration, the sysfs reads of a hotplug event and capability probes run in threads; the udev
monitor is read from the event loop through its file descriptor (the event's action and path come
with it), and events are debounced per device.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pyudev

from edged.devices import capabilities, sound, udev
from edged.devices.capabilities import Capabilities
from edged.devices.classify import STREAMABLE, DeviceKind, NodeFacts, classify, stream_name
from edged.devices.sound import SoundFacts, classify_sound
from edged.metrics import DeviceMetrics

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.3
EVENT_QUEUE_SIZE = 256

Probe = Callable[[str], tuple[Capabilities | None, str]]


@dataclass(frozen=True)
class Device:
    """One video4linux node, or one ALSA capture device (kind AUDIO), as edged understands it."""

    node: str
    sys_path: str
    kind: DeviceKind
    reason: str
    label: str
    stream: str | None
    usb_id: str
    serial: str
    usb_path: str
    driver: str
    name: str
    capabilities: Capabilities | None
    problem: str
    alsa: str = ""  # audio only: the ALSA name, hw:CARD=<id>,DEV=<n>

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["kind"] = self.kind.value
        unused = ("capabilities", "stream", "name") if self.kind is DeviceKind.AUDIO else ("alsa",)
        for key in unused:
            del document[key]
        return document


def describe(facts: NodeFacts, cards: Mapping[str, str], probe: Probe) -> Device:
    """Classify a node and, for a camera or card, read its capabilities (blocking)."""
    verdict = classify(facts, cards)
    streamable = verdict.kind in STREAMABLE
    caps, problem = probe(facts.dev_node) if streamable else (None, "")
    named = streamable or verdict.kind is DeviceKind.CSI_CAMERA
    return Device(
        node=facts.dev_node,
        sys_path=facts.sys_path,
        kind=verdict.kind,
        reason=verdict.reason,
        label=verdict.label,
        stream=stream_name(facts, verdict.label) if named else None,
        usb_id=f"{facts.vendor_id}:{facts.product_id}" if facts.vendor_id else "",
        serial=facts.serial,
        usb_path=facts.usb_path,
        driver=facts.driver,
        name=facts.name,
        capabilities=caps,
        problem=problem,
    )


def describe_sound(facts: SoundFacts) -> Device | None:
    """An ALSA capture device; None for playback devices, cards and control nodes."""
    verdict = classify_sound(facts)
    if verdict is None:
        return None
    classification, alsa = verdict
    return Device(
        node=facts.dev_node,
        sys_path=facts.sys_path,
        kind=classification.kind,
        reason=classification.reason,
        label=classification.label,
        stream=None,
        usb_id=f"{facts.vendor_id}:{facts.product_id}" if facts.vendor_id else "",
        serial=facts.serial,
        usb_path=facts.usb_path,
        driver=facts.driver,
        name="",  # not a V4L2 name: board detection reads those
        capabilities=None,
        problem="",
        alsa=alsa,
    )


def scan(cards: Mapping[str, str], probe: Probe = capabilities.probe) -> list[Device]:
    """Every video4linux node now (blocking)."""
    return [describe(facts, cards, probe) for facts in udev.enumerate_nodes()]


def scan_sound() -> list[Device]:
    """Every ALSA capture device now (blocking)."""
    found = (describe_sound(facts) for facts in udev.enumerate_sound())
    return [device for device in found if device is not None]


def scan_all(cards: Mapping[str, str], probe: Probe = capabilities.probe) -> list[Device]:
    """Video nodes, then audio inputs (blocking)."""
    return scan(cards, probe) + scan_sound()


def _what_for(device: Device) -> str:
    """The tail of a hotplug log line: the stream a camera feeds or an input's ALSA name."""
    if device.stream:
        return f", stream {device.stream}"
    return f", {device.alsa}" if device.alsa else ""


@dataclass(frozen=True)
class DeviceEvent:
    action: str  # "add" or "remove"
    device: Device


class DeviceManager:
    """Keeps the list of devices current; `events` is a bounded queue the media pipeline reads."""

    def __init__(
        self,
        cards: Mapping[str, str],
        metrics: DeviceMetrics,
        *,
        probe: Probe = capabilities.probe,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self._cards = cards
        self._metrics = metrics
        self._probe = probe
        self._debounce = debounce
        self.devices: dict[str, Device] = {}
        self.events: asyncio.Queue[DeviceEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._monitor: pyudev.Monitor | None = None
        self._pending: dict[str, tuple[str, Any, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen for hotplug first (nothing plugged in meanwhile is missed), then scan."""
        try:
            self._monitor = udev.monitor()
        except (OSError, ValueError) as error:
            logger.error(
                "udev hotplug unavailable (%s): devices are scanned once at start only", error
            )
        else:
            asyncio.get_running_loop().add_reader(self._monitor.fileno(), self._on_readable)
        for device in await asyncio.to_thread(scan_all, self._cards, self._probe):
            self.devices[device.sys_path] = device
        self._update_gauges()
        for device in self.devices.values():
            logger.info("device %s: %s (%s)", device.node, device.kind.value, device.reason)

    async def stop(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            asyncio.get_running_loop().remove_reader(monitor.fileno())
        for _, _, handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_readable(self) -> None:
        if self._monitor is None:
            return
        while True:
            try:
                device = self._monitor.poll(timeout=0)
            except (OSError, ValueError) as error:
                logger.warning("udev monitor: unreadable event: %s", error)
                continue
            if device is None:
                return
            action = device.action
            if action not in ("add", "remove"):
                continue
            sys_path = device.sys_path
            if sys_path in self._pending:
                self._pending[sys_path][2].cancel()
            handle = asyncio.get_running_loop().call_later(self._debounce, self._settle, sys_path)
            self._pending[sys_path] = (action, device, handle)

    def _settle(self, sys_path: str) -> None:
        action, device, _ = self._pending.pop(sys_path)
        task = asyncio.get_running_loop().create_task(self._apply(action, sys_path, device))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, action: str, sys_path: str, udev_device: Any) -> None:
        if action == "remove":
            known = self.devices.pop(sys_path, None)
            if known is None:
                return
            self._emit(DeviceEvent("remove", known))
            return
        device = await asyncio.to_thread(self._describe_event, udev_device)
        if device is None:
            return
        self.devices[sys_path] = device
        self._emit(DeviceEvent("add", device))

    def _describe_event(self, udev_device: Any) -> Device | None:
        """The device a hotplug event names, None for a sound device that is no audio input:
        its facts are read from sysfs (blocking)."""
        if udev.subsystem(udev_device) == udev.SOUND:
            return describe_sound(udev.sound_facts(udev_device))
        return describe(udev.node_facts(udev_device), self._cards, self._probe)

    # -- queries for the media side --------------------------------------------------------------

    def audio_for(self, video_node: str) -> str | None:
        """The ALSA name (hw:CARD=<id>,DEV=<n>) of the audio input on the same USB device as
        the camera or capture card at `video_node`, or None."""
        return sound.pair(self.devices.values()).get(video_node)

    def unpaired_audio(self) -> list[str]:
        """ALSA names of the audio inputs no camera claims (a lone USB microphone)."""
        return sound.unpaired(self.devices.values())

    def _emit(self, event: DeviceEvent) -> None:
        self._metrics.events.labels(event.action).inc()
        self._update_gauges()
        device = event.device
        logger.info(
            "device %s %s: %s%s",
            event.action,
            device.node,
            device.kind.value,
            _what_for(device),
        )
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("device event queue full: dropped %s of %s", event.action, device.node)

    def _update_gauges(self) -> None:
        counts = Counter(device.kind for device in self.devices.values())
        for kind in DeviceKind:
            self._metrics.devices.labels(kind.value).set(counts.get(kind, 0))

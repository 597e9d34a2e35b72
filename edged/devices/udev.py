"""The pyudev adapter: video4linux nodes as NodeFacts and sound devices as SoundFacts,
enumerated or from hotplug events.

Enumeration blocks (it walks sysfs): call it in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pyudev

from edged.devices.classify import NodeFacts
from edged.devices.sound import SoundFacts

logger = logging.getLogger(__name__)

T = TypeVar("T")

SUBSYSTEM = "video4linux"
SOUND = "sound"


def _attribute(device: Any, name: str) -> str:
    try:
        value = device.attributes.get(name)
    except (OSError, UnicodeDecodeError, KeyError):
        return ""
    if value is None:
        return ""
    return bytes(value).decode("utf-8", "replace").strip()


def _safe(read: Callable[[], Any]) -> str:
    try:
        value = read()
    except (OSError, UnicodeDecodeError, KeyError, ValueError, AttributeError):
        return ""
    return "" if value is None else str(value)


def _parent(device: Any, subsystem: str, device_type: str | None) -> Any:
    try:
        return device.find_parent(subsystem, device_type)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def node_facts(device: Any) -> NodeFacts:
    """Facts of one video4linux device; malformed or missing values become empty strings."""
    try:
        properties = {str(key): str(value) for key, value in device.properties.items()}
    except (UnicodeDecodeError, OSError, ValueError):
        properties = {}
    usb = _parent(device, "usb", "usb_device")
    interface = _parent(device, "usb", "usb_interface")
    try:
        parent = device.parent
    except (OSError, ValueError):
        parent = None
    driver = (
        properties.get("ID_USB_DRIVER")
        or (interface and _safe(lambda: interface.driver))
        or (parent and _safe(lambda: parent.driver))
        or ""
    )
    if usb:
        vendor = _attribute(usb, "idVendor").lower()
        product_id = _attribute(usb, "idProduct").lower()
        serial = _attribute(usb, "serial") or properties.get("ID_SERIAL_SHORT", "")
        usb_path = _safe(lambda: usb.sys_name)
        product = properties.get("ID_V4L_PRODUCT") or _attribute(usb, "product")
        bus = "usb"
    else:
        vendor = product_id = serial = usb_path = ""
        product = properties.get("ID_V4L_PRODUCT", "")
        bus = properties.get("ID_BUS") or (parent and _safe(lambda: parent.subsystem)) or ""
    return NodeFacts(
        sys_path=_safe(lambda: device.sys_path),
        dev_node=_safe(lambda: device.device_node) or properties.get("DEVNAME", ""),
        name=_attribute(device, "name"),
        capabilities=properties.get("ID_V4L_CAPABILITIES", ""),
        driver=driver,
        vendor_id=vendor,
        product_id=product_id,
        serial=serial,
        usb_path=usb_path,
        bus=bus,
        product=product,
        index=_attribute(device, "index"),
        properties=properties,
    )


def _described(
    context: pyudev.Context | None, subsystem: str, describe: Callable[[Any], T]
) -> list[T]:
    """The facts of every device of `subsystem` udev knows now, in udev's order."""
    facts = []
    for device in (context or pyudev.Context()).list_devices(subsystem=subsystem):
        try:
            facts.append(describe(device))
        except Exception:  # one broken device must not hide the others
            logger.exception("skipping a %s device udev describes badly", subsystem)
    return facts


def enumerate_nodes(context: pyudev.Context | None = None) -> list[NodeFacts]:
    """Every video4linux node udev knows now, sorted by device node."""
    return sorted(_described(context, SUBSYSTEM, node_facts), key=lambda fact: fact.dev_node)


def subsystem(device: Any) -> str:
    """The udev subsystem of a device, "" when udev does not say."""
    return _safe(lambda: device.subsystem)


def sound_facts(device: Any) -> SoundFacts:
    """Facts of one sound device (card, control or PCM); missing values become empty strings."""
    card = _parent(device, SOUND, None)  # a PCM's card
    usb = _parent(device, "usb", "usb_device")
    interface = _parent(device, "usb", "usb_interface")
    try:
        properties = {str(key): str(value) for key, value in device.properties.items()}
    except (UnicodeDecodeError, OSError, ValueError):
        properties = {}
    return SoundFacts(
        sys_path=_safe(lambda: device.sys_path),
        sys_name=_safe(lambda: device.sys_name),
        dev_node=_safe(lambda: device.device_node) or properties.get("DEVNAME", ""),
        card_id=_attribute(card, "id") if card else "",
        driver=properties.get("ID_USB_DRIVER")
        or (interface and _safe(lambda: interface.driver))
        or "",
        vendor_id=_attribute(usb, "idVendor").lower() if usb else "",
        product_id=_attribute(usb, "idProduct").lower() if usb else "",
        serial=(_attribute(usb, "serial") if usb else "") or properties.get("ID_SERIAL_SHORT", ""),
        usb_path=_safe(lambda: usb.sys_name) if usb else "",
        product=_attribute(usb, "product") if usb else "",
    )


def enumerate_sound(context: pyudev.Context | None = None) -> list[SoundFacts]:
    """Every sound device udev knows now (cards, controls, PCMs), sorted by sysfs path."""
    return sorted(_described(context, SOUND, sound_facts), key=lambda fact: fact.sys_path)


def monitor(context: pyudev.Context | None = None) -> pyudev.Monitor:
    """A started, non-blocking monitor of video4linux and sound add/remove events."""
    context = context or pyudev.Context()
    udev_monitor = pyudev.Monitor.from_netlink(context)
    udev_monitor.filter_by(SUBSYSTEM)
    udev_monitor.filter_by(SOUND)
    udev_monitor.start()
    return udev_monitor

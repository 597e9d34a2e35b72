"""What a video4linux node is, decided from its udev facts alone: pure, no I/O."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from edged.devices.board import ProfileError


class DeviceKind(StrEnum):
    WEBCAM = "webcam"
    CAPTURE_CARD = "capture_card"
    CSI_CAMERA = "csi_camera"
    CODEC = "codec"
    IGNORED = "ignored"
    AUDIO = "audio"  # an ALSA capture device (edged.devices.sound), not a video node


STREAMABLE = (DeviceKind.WEBCAM, DeviceKind.CAPTURE_CARD)


@dataclass(frozen=True)
class NodeFacts:
    """One video4linux node as udev and sysfs describe it."""

    sys_path: str
    dev_node: str
    name: str = ""  # sysfs `name`: the V4L2 video device name
    capabilities: str = ""  # ID_V4L_CAPABILITIES, e.g. ":capture:"
    driver: str = ""  # the driver of the interface or platform device
    vendor_id: str = ""  # USB idVendor (lower-case hex)
    product_id: str = ""
    serial: str = ""
    usb_path: str = ""  # the port chain, e.g. "1-1.2"
    bus: str = ""  # ID_BUS: usb, platform, pci
    product: str = ""  # ID_V4L_PRODUCT or the USB product string
    index: str = ""  # sysfs `index`: 0 for a UVC capture node, 1 for its metadata node
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Classification:
    kind: DeviceKind
    reason: str
    label: str  # what the crew reads: the card name from the table, or the product


_CODEC = re.compile(r"^bcm2835-codec")
_ISP = re.compile(r"^(bcm2835-isp|pispbe|rpi-hevc-dec|bcm2835-v4l2-isp)")
_CSI = re.compile(r"^(unicam|rp1-cfe)")
_CSI_IMAGE = re.compile(r"^(unicam-image|rp1-cfe-csi2[-_]ch0)$")
_LOOPBACK = re.compile(r"loopback|dummy video device|obs virtual camera", re.IGNORECASE)
_CAPTURE_WORDS = re.compile(
    r"capture|hdmi|cam ?link|game ?cap|live ?gamer|magewell|elgato|avermedia|ms2109|ms2130",
    re.IGNORECASE,
)
_HEX_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")


def load_capture_cards(path: Path) -> dict[str, str]:
    """USB "vvvv:pppp" -> card name, from `hardware/capture-cards.toml`."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ProfileError(f"{path}: cannot read capture card table: {error}") from error
    cards: dict[str, str] = {}
    for index, entry in enumerate(document.get("card", [])):
        usb, name = entry.get("usb"), entry.get("name")
        if not isinstance(usb, str) or not _HEX_ID.match(usb.lower()):
            raise ProfileError(f'{path}: card[{index}].usb must look like "0fd9:0066", not {usb!r}')
        if not isinstance(name, str) or not name:
            raise ProfileError(f"{path}: card[{index}].name must be a non-empty string")
        cards[usb.lower()] = name
    return cards


def classify(facts: NodeFacts, capture_cards: Mapping[str, str]) -> Classification:
    """The kind of a node, with the reason a person can read."""
    name = facts.name.strip()
    label = facts.product or name or facts.dev_node
    capabilities = facts.capabilities
    if _CODEC.match(name):
        return Classification(DeviceKind.CODEC, f"hardware codec node {name!r}", name)
    if _ISP.match(name):
        return Classification(DeviceKind.IGNORED, f"ISP node {name!r}, not a camera", name)
    if _CSI.match(name):
        if _CSI_IMAGE.match(name):
            return Classification(
                DeviceKind.CSI_CAMERA,
                f"CSI camera receiver {name!r}: needs libcamera, not streamed through V4L2",
                "CSI camera",
            )
        return Classification(DeviceKind.IGNORED, f"CSI receiver side node {name!r}", name)
    if facts.driver == "v4l2loopback" or _LOOPBACK.search(name):
        return Classification(DeviceKind.IGNORED, "loopback device, not a camera", label)
    if ":capture:" not in capabilities:
        if not capabilities:
            why = "udev gives no ID_V4L_CAPABILITIES"
        elif facts.driver == "uvcvideo" or facts.index not in ("", "0"):
            why = "UVC metadata node (no :capture: capability)"
        else:
            why = f"no :capture: capability ({capabilities.strip(':')})"
        return Classification(DeviceKind.IGNORED, why, label)
    usb_id = f"{facts.vendor_id}:{facts.product_id}".lower()
    if usb_id in capture_cards:
        card = capture_cards[usb_id]
        return Classification(DeviceKind.CAPTURE_CARD, f"USB id {usb_id} is {card}", card)
    if _CAPTURE_WORDS.search(f"{name} {facts.product}"):
        return Classification(
            DeviceKind.CAPTURE_CARD, f"name {label!r} reads like an HDMI capture card", label
        )
    where = "USB video class" if facts.driver == "uvcvideo" or facts.bus == "usb" else facts.bus
    return Classification(DeviceKind.WEBCAM, f"{where or 'video'} capture device", label)


def _slug(text: str, limit: int) -> str:
    """Lower-case words joined by hyphens, whole words only, at most `limit` characters."""
    words = [word for word in re.split(r"[^a-z0-9]+", text.lower()) if word]
    kept: list[str] = []
    for word in words:
        if len("-".join([*kept, word])) > limit:
            break
        kept.append(word)
    return "-".join(kept) if kept else "-".join(words)[:limit].strip("-")


def stream_name(facts: NodeFacts, label: str) -> str:
    """A stream name that survives replugging: serial first, then USB path, then the product.

    Safe for URLs, metric labels and object keys: lower case letters, digits and hyphens.
    """
    base = _slug(label, 24) or "camera"
    serial = _slug(facts.serial, 16)
    if serial:
        return f"{base}-{serial}"
    if facts.usb_path:
        return f"{base}-usb-{_slug(facts.usb_path, 16)}"
    return base

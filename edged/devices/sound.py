"""ALSA sound devices: which are capture inputs, their ALSA names, and the video node each one
belongs to. Pure, no I/O: the udev adapter gathers the facts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from edged.devices.classify import STREAMABLE, Classification, DeviceKind


@dataclass(frozen=True)
class SoundFacts:
    """One device of udev's `sound` subsystem (a card, a control node or a PCM)."""

    sys_path: str
    sys_name: str  # e.g. "pcmC1D0c", "controlC1", "card1"
    dev_node: str  # e.g. "/dev/snd/pcmC1D0c"
    card_id: str = ""  # sysfs `id` of the card, e.g. "MS2109"
    driver: str = ""  # the driver of the USB interface or the card's parent, e.g. snd-usb-audio
    vendor_id: str = ""  # USB idVendor of the USB device (lower-case hex)
    product_id: str = ""
    serial: str = ""
    usb_path: str = ""  # the USB device's port chain, e.g. "1-5": what pairs audio with video
    product: str = ""  # the USB product string


@dataclass(frozen=True)
class Pcm:
    card: int
    device: int
    capture: bool


_PCM = re.compile(r"^pcmC(\d{1,3})D(\d{1,3})([cp])$")
_CARD_ID = re.compile(r"^[A-Za-z0-9_]{1,31}$")  # the kernel keeps ids to letters, digits, _


def parse_pcm(sys_name: str) -> Pcm | None:
    """`pcmC1D0c` -> Pcm(1, 0, capture=True); None for a card, a control node or anything else."""
    match = _PCM.match(sys_name)
    if match is None:
        return None
    return Pcm(int(match[1]), int(match[2]), match[3] == "c")


def alsa_name(card_id: str, pcm: Pcm) -> str:
    """`hw:CARD=<id>,DEV=<n>`: stable across replugs; the card number when the id is unusable."""
    card = card_id if _CARD_ID.match(card_id) else str(pcm.card)
    return f"hw:CARD={card},DEV={pcm.device}"


def classify_sound(facts: SoundFacts) -> tuple[Classification, str] | None:
    """(classification, ALSA name) of a capture PCM; None for what is not an audio input
    (playback PCMs such as HDMI out, cards, control nodes)."""
    pcm = parse_pcm(facts.sys_name)
    if pcm is None or not pcm.capture:
        return None
    name = alsa_name(facts.card_id, pcm)
    card = facts.card_id or f"card {pcm.card}"
    where = f"USB audio on {facts.usb_path}" if facts.usb_path else "not on USB: not paired"
    reason = f"ALSA capture device {pcm.device} of {card} ({where})"
    label = facts.product or card
    return Classification(DeviceKind.AUDIO, reason, label), name


class Listed(Protocol):
    """What pairing reads of a device (edged.devices.manager.Device has it)."""

    @property
    def node(self) -> str: ...
    @property
    def kind(self) -> DeviceKind: ...
    @property
    def usb_path(self) -> str: ...
    @property
    def alsa(self) -> str: ...


def _order(device: Listed) -> tuple[int, ...]:
    """Device nodes in their numeric order (/dev/video2 before /dev/video10)."""
    return tuple(int(number) for number in re.findall(r"\d+", device.node))


def pair(devices: Iterable[Listed]) -> dict[str, str]:
    """Video node -> ALSA name of its audio: the first capture PCM on the same USB device goes
    to that USB device's first camera or capture card, the second to the second, and so on.
    An ALSA device is never given to two streams (a hw: device opens once)."""
    present = list(devices)
    audio = sorted((d for d in present if d.kind is DeviceKind.AUDIO and d.usb_path), key=_order)
    video = sorted((d for d in present if d.kind in STREAMABLE and d.usb_path), key=_order)
    pairs: dict[str, str] = {}
    for usb_path in dict.fromkeys(device.usb_path for device in video):
        cameras = [device for device in video if device.usb_path == usb_path]
        inputs = [device for device in audio if device.usb_path == usb_path]
        pairs.update(
            (camera.node, sound.alsa) for camera, sound in zip(cameras, inputs, strict=False)
        )
    return pairs


def unpaired(devices: Iterable[Listed]) -> list[str]:
    """ALSA names of the audio inputs no camera claims (a lone USB microphone), in node order."""
    present = list(devices)
    taken = set(pair(present).values())
    audio = sorted((d for d in present if d.kind is DeviceKind.AUDIO), key=_order)
    return [device.alsa for device in audio if device.alsa not in taken]

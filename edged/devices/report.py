"""What `edged devices` and `GET /api/v1/devices` show."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edged.devices import capture_cards, detect_board
from edged.devices.board import Board
from edged.devices.classify import DeviceKind
from edged.devices.manager import Device, scan, scan_sound
from edged.devices.sound import pair


def board_json(board: Board) -> dict[str, Any]:
    profile = board.profile
    return {
        "profile": profile.id,
        "name": profile.name,
        "reason": board.reason,
        "model": board.facts.model,
        "machine": board.facts.machine,
        "encoders": list(profile.encoders),
        "thermal": {
            "soft_limit_celsius": profile.soft_limit_celsius,
            "hard_limit_celsius": profile.hard_limit_celsius,
        },
    }


def report_json(board: Board, devices: Iterable[Device]) -> dict[str, Any]:
    """The board; each video node with `audio`, the ALSA name of its paired input or None; and
    every audio input under `audio` with `video`, the node it is paired with or None."""
    present = list(devices)
    pairs = pair(present)
    paired_with = {alsa: node for node, alsa in pairs.items()}
    video, audio = [], []
    for device in present:
        document = device.as_json()
        if device.kind is DeviceKind.AUDIO:
            audio.append(document | {"video": paired_with.get(device.alsa)})
        else:
            video.append(document | {"audio": pairs.get(device.node)})
    return {"board": board_json(board), "devices": video, "audio": audio}


def devices_report(root: Path) -> dict[str, Any]:
    """Scan now and detect the board (blocking)."""
    devices = scan(capture_cards())
    board = detect_board(root, {device.name for device in devices})
    return report_json(board, devices + scan_sound())


def print_devices(report: dict[str, Any]) -> None:
    board = report["board"]
    print(f"board: {board['name']} ({board['reason']}); encoders: {', '.join(board['encoders'])}")
    if not report["devices"]:
        print("no video devices found")
    else:
        print(f"{'NODE':14} {'KIND':13} {'STREAM':28} {'AUDIO':22} {'LABEL':30} WHY")
    for device in report["devices"]:
        why = device["problem"] or device["reason"]
        print(
            f"{device['node']:14} {device['kind']:13} {device['stream'] or '-':28} "
            f"{device['audio'] or '-':22} {device['label'][:30]:30} {why}"
        )
    print_audio(report["audio"])


def print_audio(audio: list[dict[str, Any]]) -> None:
    if not audio:
        print("no audio inputs found")
        return
    print(f"{'AUDIO':22} {'NODE':20} {'PAIRED WITH':14} {'LABEL':30} WHY")
    for device in audio:
        paired = device["video"] or "- (unpaired)"
        print(
            f"{device['alsa']:22} {device['node']:20} {paired:14} "
            f"{device['label'][:30]:30} {device['reason']}"
        )

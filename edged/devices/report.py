"""What `edged devices` and `GET /api/v1/devices` show."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edged.devices import capture_cards, detect_board
from edged.devices.board import Board
from edged.devices.manager import Device, scan


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
    return {"board": board_json(board), "devices": [device.as_json() for device in devices]}


def devices_report(root: Path) -> dict[str, Any]:
    """Scan now and detect the board (blocking)."""
    devices = scan(capture_cards())
    board = detect_board(root, {device.name for device in devices})
    return report_json(board, devices)


def print_devices(report: dict[str, Any]) -> None:
    board = report["board"]
    print(f"board: {board['name']} ({board['reason']}); encoders: {', '.join(board['encoders'])}")
    if not report["devices"]:
        print("no video devices found")
        return
    print(f"{'NODE':14} {'KIND':13} {'STREAM':28} {'LABEL':30} WHY")
    for device in report["devices"]:
        why = device["problem"] or device["reason"]
        print(
            f"{device['node']:14} {device['kind']:13} {device['stream'] or '-':28} "
            f"{device['label'][:30]:30} {why}"
        )

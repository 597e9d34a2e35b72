"""What `edged encoders` shows: the board's candidates, the probe of each, the winner."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edged.devices import detect_board
from edged.media.encoders import EncoderSettings, candidates, probe


def encoders_report(root: Path) -> dict[str, Any]:
    """Probe every candidate at the board's webcam defaults (blocking)."""
    board = detect_board(root, [])
    defaults = board.profile.defaults["webcam"]
    settings = EncoderSettings(defaults.width, defaults.height, defaults.fps, defaults.bitrate)
    results = [probe(name, settings) for name in candidates(board.profile.encoders)]
    winner = next((result.encoder for result in results if result.ok), None)
    return {
        "board": board.profile.id,
        "settings": dataclasses.asdict(settings),
        "candidates": [dataclasses.asdict(result) for result in results],
        "winner": winner,
    }


def print_encoders(report: dict[str, Any]) -> None:
    settings = report["settings"]
    print(
        f"board {report['board']}, probing at {settings['width']}x{settings['height']}"
        f"@{settings['fps']}"
    )
    for result in report["candidates"]:
        verdict = f"OK   {result['fps']:7.1f} fps" if result["ok"] else "FAIL"
        kind = "hardware" if result["hardware"] else "software"
        print(f"  {result['encoder']:14} {kind:9} {verdict}  {result['reason']}")
    print(f"winner: {report['winner'] or 'none: no encoder works'}")

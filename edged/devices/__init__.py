"""Cameras and capture cards: udev enumeration and hotplug, classification, the board profile."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from edged.devices.board import Board, ProfileError, load_profiles, read_facts, select_profile
from edged.devices.classify import load_capture_cards
from edged.paths import resource_dir


def hardware_dir() -> Path:
    return resource_dir("hardware")


logger = logging.getLogger(__name__)


def capture_cards(directory: Path | None = None) -> dict[str, str]:
    """The capture card table; a broken table is logged and treated as empty."""
    try:
        return load_capture_cards((directory or hardware_dir()) / "capture-cards.toml")
    except ProfileError as error:
        logger.error("%s; capture cards are known by name only until it is fixed", error)
        return {}


def detect_board(root: Path, v4l2_names: Iterable[str], directory: Path | None = None) -> Board:
    """The board under `root` (normally /) and its profile from `hardware/boards`.

    Broken profile files are logged and skipped.
    """
    profiles, problems = load_profiles((directory or hardware_dir()) / "boards")
    for problem in problems:
        logger.error("board profile skipped: %s", problem)
    return select_profile(read_facts(root, v4l2_names), profiles)

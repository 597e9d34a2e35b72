"""Which board edged runs on, and its profile from `hardware/boards/*.toml`.

Reading /proc, /sys and /dev goes through one root path, so tests point it at a fixture tree.
"""

from __future__ import annotations

import platform
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.errors import EdgedError

CAMERA_CLASSES = ("webcam", "capture_card")
DEFAULT_KEYS = ("width", "height", "fps", "bitrate")


class ProfileError(EdgedError, ValueError):
    """A board profile file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class BoardFacts:
    """What the system says about the board."""

    model: str
    compatible: tuple[str, ...]
    machine: str
    nvhost_msenc: bool
    v4l2_names: frozenset[str]


@dataclass(frozen=True)
class StreamDefaults:
    width: int
    height: int
    fps: int
    bitrate: int


@dataclass(frozen=True)
class BoardProfile:
    id: str
    name: str
    priority: int
    model: tuple[str, ...]
    compatible: tuple[str, ...]
    v4l2_names: tuple[str, ...]
    machine: tuple[str, ...]
    nvhost_msenc: bool | None
    encoders: tuple[str, ...]
    defaults: Mapping[str, StreamDefaults]
    soft_limit_celsius: float
    hard_limit_celsius: float
    source: str
    hardware_encoder: bool = False  # the board surely has one (a fall back to software is news)

    @property
    def is_fallback(self) -> bool:
        return not (self.model or self.compatible or self.v4l2_names or self.machine)


@dataclass(frozen=True)
class Board:
    """The detected board: its facts, the chosen profile and why."""

    facts: BoardFacts
    profile: BoardProfile
    reason: str


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def read_facts(
    root: Path, v4l2_names: Iterable[str] = (), machine: str | None = None
) -> BoardFacts:
    """Facts from `<root>/proc/device-tree/model`, the devicetree `compatible`, `/dev`."""
    model = _read_text(root / "proc/device-tree/model").strip("\x00\n ")
    if not model:
        model = _read_text(root / "sys/firmware/devicetree/base/model").strip("\x00\n ")
    compatible_raw = _read_text(root / "sys/firmware/devicetree/base/compatible")
    if not compatible_raw:
        compatible_raw = _read_text(root / "proc/device-tree/compatible")
    compatible = tuple(item for item in compatible_raw.split("\x00") if item.strip())
    return BoardFacts(
        model=model,
        compatible=compatible,
        machine=machine if machine is not None else platform.machine(),
        nvhost_msenc=(root / "dev/nvhost-msenc").exists(),
        v4l2_names=frozenset(v4l2_names),
    )


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProfileError(f"{where}.{key}: must be a list of strings, not {value!r}")
    return tuple(value)


def _number(table: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ProfileError(f"{where}.{key}: must be a positive number, not {value!r}")
    return kind(value)


def _table(document: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: missing table [{key}]")
    return value


def parse_profile(document: Mapping[str, Any], source: str) -> BoardProfile:
    """A profile from its parsed TOML; ProfileError names the file and key on any problem."""
    board = _table(document, "board", source)
    match = _table(document, "match", source)
    encoders = _table(document, "encoders", source)
    thermal = _table(document, "thermal", source)
    defaults_table = _table(document, "defaults", source)
    for key in ("id", "name"):
        if not isinstance(board.get(key), str) or not board[key]:
            raise ProfileError(f"{source}: board.{key} must be a non-empty string")
    nvhost = match.get("nvhost_msenc")
    if nvhost is not None and not isinstance(nvhost, bool):
        raise ProfileError(f"{source}: match.nvhost_msenc must be true or false, not {nvhost!r}")
    h264 = _strings(encoders, "h264", f"{source}: encoders")
    if not h264:
        raise ProfileError(f"{source}: encoders.h264 must name at least one encoder")
    defaults = {}
    for camera_class in CAMERA_CLASSES:
        values = _table(defaults_table, camera_class, f"{source}: defaults")
        where = f"{source}: defaults.{camera_class}"
        defaults[camera_class] = StreamDefaults(
            **{key: _number(values, key, where, int) for key in DEFAULT_KEYS}
        )
    soft = _number(thermal, "soft_limit_celsius", f"{source}: thermal", float)
    hard = _number(thermal, "hard_limit_celsius", f"{source}: thermal", float)
    if hard < soft:
        raise ProfileError(f"{source}: thermal.hard_limit_celsius {hard} is below the soft limit")
    hardware = board.get("hardware_encoder", False)
    if not isinstance(hardware, bool):
        raise ProfileError(f"{source}: board.hardware_encoder must be true or false")
    priority = board.get("priority", 100)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ProfileError(f"{source}: board.priority must be an integer, not {priority!r}")
    return BoardProfile(
        id=board["id"],
        name=board["name"],
        priority=priority,
        model=_strings(match, "model", f"{source}: match"),
        compatible=_strings(match, "compatible", f"{source}: match"),
        v4l2_names=_strings(match, "v4l2_names", f"{source}: match"),
        machine=_strings(match, "machine", f"{source}: match"),
        nvhost_msenc=nvhost,
        encoders=h264,
        defaults=defaults,
        soft_limit_celsius=soft,
        hard_limit_celsius=hard,
        source=source,
        hardware_encoder=hardware,
    )


BUILTIN_FALLBACK = BoardProfile(
    id="generic",
    name="Generic board (built in)",
    priority=1000,
    model=(),
    compatible=(),
    v4l2_names=(),
    machine=(),
    nvhost_msenc=None,
    encoders=("libx264",),
    defaults={
        "webcam": StreamDefaults(1280, 720, 30, 2_500_000),
        "capture_card": StreamDefaults(1280, 720, 30, 4_000_000),
    },
    soft_limit_celsius=75.0,
    hard_limit_celsius=85.0,
    source="built in",
)


def load_profile(path: Path) -> BoardProfile:
    """One profile file; ProfileError names the file and the key."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ProfileError(f"{path}: cannot read board profile: {error}") from error
    return parse_profile(document, str(path))


def load_profiles(directory: Path) -> tuple[list[BoardProfile], list[str]]:
    """Every valid `*.toml` profile in matching order, and the problems of the broken ones.

    A broken file is skipped (the box must still run); without any fallback profile the built-in
    generic one is used.
    """
    profiles, problems = [], []
    for path in sorted(directory.glob("*.toml")):
        try:
            profiles.append(load_profile(path))
        except ProfileError as error:
            problems.append(str(error))
    if not any(profile.is_fallback for profile in profiles):
        problems.append(
            f"{directory}: no fallback profile (one with an empty [match]); "
            "using the built-in generic profile"
        )
        profiles.append(BUILTIN_FALLBACK)
    return sorted(profiles, key=lambda profile: (profile.priority, profile.id)), problems


def _evidence(profile: BoardProfile, facts: BoardFacts) -> str | None:
    """Why `profile` fits `facts`, or None when it does not."""
    if profile.nvhost_msenc is not None and profile.nvhost_msenc != facts.nvhost_msenc:
        return None
    if profile.machine and facts.machine not in profile.machine:
        return None
    for needle in profile.model:
        if needle in facts.model:
            return f"device-tree model {facts.model!r} contains {needle!r}"
    for value in profile.compatible:
        if value in facts.compatible:
            return f"device-tree compatible lists {value!r}"
    for prefix in profile.v4l2_names:
        for name in sorted(facts.v4l2_names):
            if name.startswith(prefix):
                return f"V4L2 device {name!r} present"
    if profile.machine and not (profile.model or profile.compatible or profile.v4l2_names):
        return f"machine is {facts.machine}"
    return None


def select_profile(facts: BoardFacts, profiles: list[BoardProfile]) -> Board:
    """The first profile whose evidence fits; the fallback says that the board is unknown."""
    for profile in profiles:
        if profile.is_fallback:
            continue
        reason = _evidence(profile, facts)
        if reason is not None:
            return Board(facts, profile, reason)
    fallback = next(profile for profile in profiles if profile.is_fallback)
    described = facts.model or "no device-tree model"
    return Board(
        facts,
        fallback,
        f"unknown board ({described}, {facts.machine}): using the generic profile",
    )

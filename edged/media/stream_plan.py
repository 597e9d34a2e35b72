"""Which streams should run: a pure function of the devices present and the config.

A stream per camera or capture card; the test pattern when configured "on", or in "auto" while
no camera streams. The stream supervisor compares this with what runs and starts, stops or
restarts pipelines until they match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

from edged.config import MediaConfig
from edged.devices.board import Board, StreamDefaults
from edged.devices.classify import STREAMABLE
from edged.devices.manager import Device
from edged.media import sources
from edged.media.sources import SourceSpec

PATTERN_STREAM = "test-pattern"
PATTERN_DEFAULTS = "webcam"  # the test pattern is encoded at a webcam's bitrate


@dataclass(frozen=True)
class StreamSpec:
    """A stream that should run: where its frames come from, its bitrate before any thermal
    step, and its device (None: the test pattern)."""

    name: str
    source: SourceSpec
    bitrate: int
    device: Device | None = None


@dataclass(frozen=True)
class PlanConfig:
    """What `wanted_streams` needs to know beyond the devices; built once at start."""

    media: MediaConfig
    defaults: Mapping[str, StreamDefaults]  # per device kind, from the board profile
    stand_in_is_file: bool = False  # `media.v4l2_stand_in` names a file (else a lavfi graph)

    @classmethod
    def build(cls, media: MediaConfig, board: Board) -> PlanConfig:
        """Reads the file system once (whether the stand-in is a file): call from a thread."""
        stand_in = media.v4l2_stand_in
        return cls(media, board.profile.defaults, bool(stand_in) and Path(stand_in).is_file())


def device_source(device: Device, defaults: StreamDefaults, config: PlanConfig) -> SourceSpec:
    """The source of a camera's stream: its closest mode, or the configured stand-in."""
    stand_in = config.media.v4l2_stand_in
    size = (defaults.width, defaults.height, defaults.fps)
    if stand_in:
        return SourceSpec("file" if config.stand_in_is_file else "pattern", stand_in, *size)
    modes = device.capabilities.modes if device.capabilities else ()
    mode = sources.choose_mode(modes, *size, usb2=True)
    return sources.v4l2(device.node, mode, *size)


def pattern_wanted(test_pattern: str, cameras: int) -> bool:
    """The test pattern runs when configured "on", or in "auto" while no camera streams."""
    return test_pattern == "on" or (test_pattern == "auto" and cameras == 0)


def wanted_streams(
    devices: Iterable[Device], config: PlanConfig, *, unstartable: Set[str] = frozenset()
) -> dict[str, StreamSpec]:
    """Stream name -> spec. Devices come oldest first: when two share a stream name, the later
    one (the last plugged in) wins. A camera in `unstartable` (no encoder works for it) is left
    out, and so does not keep the test pattern away."""
    wanted: dict[str, StreamSpec] = {}
    for device in devices:
        if device.kind not in STREAMABLE or device.stream is None:
            continue
        if device.stream in unstartable:
            continue
        defaults = config.defaults[device.kind.value]
        source = device_source(device, defaults, config)
        wanted[device.stream] = StreamSpec(device.stream, source, defaults.bitrate, device)
    if pattern_wanted(config.media.test_pattern, len(wanted)):
        width, height = (int(v) for v in config.media.pattern_size.split("x"))
        source = sources.pattern(width, height, config.media.pattern_fps)
        bitrate = config.defaults[PATTERN_DEFAULTS].bitrate
        wanted[PATTERN_STREAM] = StreamSpec(PATTERN_STREAM, source, bitrate)
    return wanted


@dataclass(frozen=True)
class StreamChanges:
    """What the supervisor does to make the running streams match the wanted ones."""

    stop: tuple[str, ...]  # running and no longer wanted
    start: tuple[StreamSpec, ...]  # missing, changed (stopped first), or asked to restart


def stream_changes(
    running: Mapping[str, StreamSpec],
    wanted: Mapping[str, StreamSpec],
    restart: Set[str] = frozenset(),
) -> StreamChanges:
    """Stop what is not wanted; start what is missing, what changed and what `restart` names
    (a camera plugged in again). A stream whose spec is unchanged is left alone, even one
    waiting for its restart after a failure: its own backoff brings it back."""
    stop = tuple(name for name in running if name not in wanted)
    start = tuple(
        spec
        for name, spec in wanted.items()
        if name not in running or running[name] != spec or name in restart
    )
    return StreamChanges(stop, start)


def records(name: str, recording: bool, media: MediaConfig) -> bool:
    """Whether a stream records now: the disk allows it, and the test pattern only if asked."""
    return recording and (name != PATTERN_STREAM or media.record_test_pattern)

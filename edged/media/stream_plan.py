"""Which streams should run: a pure function of the devices present and the config.

A stream per camera or capture card; the test pattern when configured "on", or in "auto" while
no camera streams. Each stream's sound: its `[audio] devices` override, else the sound card on its
camera's USB device, else the stand-in (audio.py `audio_spec`). The stream supervisor compares
this with what runs and starts, stops or restarts pipelines until they match.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path

from edged.config import AudioConfig, MediaConfig
from edged.devices import sound
from edged.devices.board import Board, StreamDefaults
from edged.devices.classify import STREAMABLE
from edged.devices.manager import Device
from edged.media import sources
from edged.media.audio import AudioSpec, audio_spec
from edged.media.sources import SourceSpec

PATTERN_STREAM = "test-pattern"
PATTERN_DEFAULTS = "webcam"  # the test pattern is encoded at a webcam's bitrate


@dataclass(frozen=True)
class StreamSpec:
    """A stream that should run: where its frames come from, its bitrate before any thermal
    step, its device (None: the test pattern) and its sound (None: video only)."""

    name: str
    source: SourceSpec
    bitrate: int
    device: Device | None = None
    audio: AudioSpec | None = None


@dataclass(frozen=True)
class PlanConfig:
    """What `wanted_streams` needs to know beyond the devices; built once at start."""

    media: MediaConfig
    defaults: Mapping[str, StreamDefaults]  # per device kind, from the board profile
    stand_in_is_file: bool = False  # `media.v4l2_stand_in` names a file (else a lavfi graph)
    audio: AudioConfig = field(default_factory=AudioConfig)

    @classmethod
    def build(cls, media: MediaConfig, board: Board, audio: AudioConfig) -> PlanConfig:
        """Reads the file system once (whether the stand-in is a file): call from a thread."""
        stand_in = media.v4l2_stand_in
        is_file = bool(stand_in) and Path(stand_in).is_file()
        return cls(media, board.profile.defaults, is_file, audio)


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
    out, and so does not keep the test pattern away. Sound cards among `devices` go to the
    cameras on their USB device."""
    present = list(devices)
    paired = sound.pair(present)
    wanted: dict[str, StreamSpec] = {}
    for device in present:
        if device.kind not in STREAMABLE or device.stream is None:
            continue
        if device.stream in unstartable:
            continue
        defaults = config.defaults[device.kind.value]
        source = device_source(device, defaults, config)
        audio = audio_spec(device.stream, config.audio, config.media, paired.get(device.node))
        wanted[device.stream] = StreamSpec(device.stream, source, defaults.bitrate, device, audio)
    if pattern_wanted(config.media.test_pattern, len(wanted)):
        width, height = (int(v) for v in config.media.pattern_size.split("x"))
        source = sources.pattern(width, height, config.media.pattern_fps)
        bitrate = config.defaults[PATTERN_DEFAULTS].bitrate
        audio = audio_spec(PATTERN_STREAM, config.audio, config.media)
        wanted[PATTERN_STREAM] = StreamSpec(PATTERN_STREAM, source, bitrate, audio=audio)
    return wanted


@dataclass(frozen=True)
class StreamChanges:
    """What the supervisor does to make the running streams match the wanted ones."""

    stop: tuple[str, ...]  # running and no longer wanted
    start: tuple[StreamSpec, ...]  # missing, changed (stopped first), or asked to restart
    keep: tuple[StreamSpec, ...] = ()  # running on, under this spec: their sound card was pulled


def sound_pulled(running: StreamSpec, wanted: StreamSpec) -> bool:
    """Only the stream's sound card went away: the stream goes on video-only (its audio thread
    ends by itself), rather than restarting its pictures for it."""
    return (
        wanted.audio is None
        and running.audio is not None
        and dataclasses.replace(running, audio=None) == wanted
    )


def stream_changes(
    running: Mapping[str, StreamSpec],
    wanted: Mapping[str, StreamSpec],
    restart: Set[str] = frozenset(),
) -> StreamChanges:
    """Stop what is not wanted; start what is missing, what changed and what `restart` names
    (a camera or sound card plugged in again). A stream whose spec is unchanged is left alone,
    even one waiting for its restart after a failure: its own backoff brings it back; one that
    only lost its sound card keeps running. A sound card plugged in changes the spec of the
    stream it belongs to, and only that stream's."""
    stop = tuple(name for name in running if name not in wanted)
    start: list[StreamSpec] = []
    keep: list[StreamSpec] = []
    for name, spec in wanted.items():
        old = running.get(name)
        if old is None or name in restart:
            start.append(spec)
        elif old != spec:
            (keep if sound_pulled(old, spec) else start).append(spec)
    return StreamChanges(stop, tuple(start), tuple(keep))


def hearing(wanted: Mapping[str, StreamSpec], alsa: str) -> set[str]:
    """The streams whose sound is the ALSA device `alsa` (plugged in again: they reopen it)."""
    return {
        name
        for name, spec in wanted.items()
        if spec.audio is not None and spec.audio.kind == "alsa" and spec.audio.location == alsa
    }


def records(name: str, recording: bool, media: MediaConfig) -> bool:
    """Whether a stream records now: the disk allows it, and the test pattern only if asked."""
    return recording and (name != PATTERN_STREAM or media.record_test_pattern)

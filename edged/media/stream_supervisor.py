"""The stream supervisor: makes the running pipelines match `wanted_streams`.

It starts, stops and restarts pipelines on the event loop, one change at a time (a lock orders
hotplug, restarts after a failure, and thermal steps). A pipeline that ends without being asked
starts again with backoff (the stream's own `RestartPolicy`: 1 s doubling to 30 s), its restart
count and reason shown in the status. Encoder probes run in threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.clock import clock_synchronized
from edged.config import AudioConfig, MediaConfig
from edged.devices.board import Board
from edged.devices.classify import STREAMABLE, DeviceKind
from edged.devices.manager import Device, DeviceEvent, DeviceManager
from edged.errors import MediaError
from edged.media.audio import describe_audio, ensure_alsa_config
from edged.media.encoders import Encoder, EncoderChoice, EncoderSettings, choose
from edged.media.hls_playlist import HlsWindow, carried
from edged.media.live import LiveHub
from edged.media.pipeline import StreamPipeline
from edged.media.recorder import Recorder, Segment, SegmentIdentity
from edged.media.sources import Source
from edged.media.stream_plan import (
    PlanConfig,
    StreamSpec,
    hearing,
    records,
    stream_changes,
    wanted_streams,
)
from edged.media.thermal import decimation, stepped_down
from edged.metrics import StreamMetrics
from edged.supervise import RestartPolicy

logger = logging.getLogger(__name__)

# The streams away (unplugged, renamed) whose HLS numbers are kept for their return; past this
# many, the longest away is forgotten (it comes back numbering from 0, under new URLs).
HLS_KEPT_STREAMS = 64


def forgotten(kept: Sequence[str], running: Set[str], limit: int) -> list[str]:
    """The names of `kept` (oldest first) to forget so that at most `limit` stay: the oldest
    of those not running; never a running stream's (its numbers are needed at its restart)."""
    away = [name for name in kept if name not in running]
    return away[: max(0, len(kept) - limit)]


@dataclass
class StreamEntry:
    """A running stream (or one waiting for its restart)."""

    spec: StreamSpec
    pipeline: StreamPipeline
    recorder: Recorder
    hub: LiveHub
    settings: EncoderSettings  # before any thermal step
    choice: EncoderChoice
    restarts: RestartPolicy = field(default_factory=RestartPolicy)
    waiting: bool = False  # down, and a restart is scheduled

    @property
    def device(self) -> Device | None:
        return self.spec.device


class StreamSupervisor:
    """Owns the streams: `reconcile()` after each change of devices, `set_thermal_level()` and
    `set_recording()` from the governor and the retention worker, all on the event loop."""

    def __init__(
        self,
        media: MediaConfig,
        board: Board,
        metrics: StreamMetrics,
        spool: Path,
        identity: Callable[[], SegmentIdentity],
        on_segment: Callable[[Segment], None],  # called in a recorder thread
        *,
        gop_cache: bool = True,
        audio: AudioConfig | None = None,
    ) -> None:
        self._media = media
        self._audio = audio if audio is not None else AudioConfig()
        self._board = board
        self._metrics = metrics
        self._spool = spool
        self._identity = identity
        self._on_segment = on_segment
        self._gop_cache = gop_cache
        self._plan = PlanConfig(media, board.profile.defaults, audio=self._audio)
        self._devices: DeviceManager | None = None
        self._choices: dict[EncoderSettings, EncoderChoice] = {}
        self._segment_numbers: dict[str, Iterator[int]] = {}  # per stream, for the whole start
        # Per stream, its last run's live HLS window and when (monotonic) it stopped: the next
        # run numbers on from it, and lists its segments while they are fresh (`carried`).
        # Only the numbers once taken, or once the stream is gone (`_retire`).
        self._hls_windows: dict[str, tuple[HlsWindow, float]] = {}
        self._unstartable: set[str] = set()  # cameras no encoder works for, until replugged
        self._watchers: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.streams: dict[str, StreamEntry] = {}
        self.boot = 0  # this daemon start's number, part of every segment name
        self.recording = True
        self.thermal_level = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, devices: DeviceManager | None, boot: int) -> None:
        self.boot = boot
        self._devices = devices
        self._plan = await asyncio.to_thread(
            PlanConfig.build, self._media, self._board, self._audio
        )
        await self.reconcile()

    async def stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        async with self._lock:
            for name in list(self.streams):
                await self._stop(name)

    async def follow(self, devices: DeviceManager) -> None:
        """Hotplug: the supervised task that applies each device event."""
        while True:
            await self.apply_event(await devices.events.get())

    async def apply_event(self, event: DeviceEvent) -> None:
        device = event.device
        restart: Set[str] = frozenset()
        if device.kind is DeviceKind.AUDIO:
            if event.action == "add":  # a stream that names it in [audio] devices reopens it
                restart = hearing(self._wanted(), device.alsa)
        elif device.kind not in STREAMABLE or device.stream is None:
            return
        elif event.action == "add":  # a plugged-in camera starts afresh, even under a known name
            self._unstartable.discard(device.stream)
            restart = {device.stream}
        await self.reconcile(restart=restart)

    # -- reconciling ---------------------------------------------------------------------------

    def _present(self) -> Iterable[Device]:
        return list(self._devices.devices.values()) if self._devices is not None else []

    async def reconcile(self, *, restart: Set[str] = frozenset()) -> None:
        """Stop what is no longer wanted, start what is missing, restart what changed (and the
        names in `restart`)."""
        async with self._lock:
            await self._reconcile(restart)

    def _wanted(self) -> dict[str, StreamSpec]:
        return wanted_streams(self._present(), self._plan, unstartable=self._unstartable)

    async def _reconcile(self, restart: Set[str]) -> None:
        while True:
            unstartable = len(self._unstartable)
            running = {name: entry.spec for name, entry in self.streams.items()}
            todo = stream_changes(running, self._wanted(), restart)
            for name in todo.stop:
                await self._retire(name)
            for spec in todo.keep:
                self._sound_pulled(spec)
            for spec in todo.start:
                await self._start(spec)
            if len(self._unstartable) == unstartable:
                return
            restart = frozenset()  # a camera became unstartable: plan again without it

    async def _retire(self, name: str) -> None:
        """Stop a stream no longer wanted: only its HLS numbers are kept for its return."""
        entry = await self._stop(name)
        kept = self._hls_windows.get(name)
        if kept is not None:
            self._keep_hls(name, kept[0].numbering(), kept[1])
        if entry is not None and entry.device is not None:
            self._metrics.up.labels(name).set(0)
            logger.info(
                "stream %s down: %s unplugged; its footage is kept", name, entry.device.node
            )

    def _sound_pulled(self, spec: StreamSpec) -> None:
        """The running stream's sound card was pulled: it goes on under `spec`, video only."""
        entry = self.streams[spec.name]
        pulled = entry.spec.audio
        assert pulled is not None  # noqa: S101 - stream_plan.sound_pulled: it had sound
        logger.warning(
            "stream %s: sound card %s unplugged; the stream goes on without sound",
            spec.name,
            pulled.label,
        )
        entry.spec = spec

    # -- one stream ----------------------------------------------------------------------------

    async def _start(self, spec: StreamSpec, restarts: RestartPolicy | None = None) -> bool:
        """Start (or restart) a stream; False when no encoder works for it (logged, and a
        camera is then unstartable until plugged in again)."""
        name = spec.name
        if name in self.streams:
            await self._stop(name)
        source = spec.source
        base = EncoderSettings(
            source.width, source.height, source.fps, spec.bitrate, self._media.gop_seconds
        )
        settings = stepped_down(base, self.thermal_level)
        try:
            choice = await self._choice(settings)
        except MediaError as error:
            logger.error("stream %s not started: %s", name, error)
            if spec.device is not None:
                self._unstartable.add(name)
            return False
        entry = self._build(spec, base, settings, choice)
        if restarts is not None:
            entry.restarts = restarts
        self._launch(entry, settings)
        return True

    async def _choice(self, settings: EncoderSettings) -> EncoderChoice:
        if settings not in self._choices:
            self._choices[settings] = await asyncio.to_thread(
                choose, self._board.profile.encoders, settings
            )
        return self._choices[settings]

    def _build(
        self,
        spec: StreamSpec,
        base: EncoderSettings,
        settings: EncoderSettings,
        choice: EncoderChoice,
    ) -> StreamEntry:
        name, source = spec.name, spec.source
        device = spec.device.label if spec.device else "test pattern"
        sound = spec.audio
        if sound is not None and sound.kind == "alsa" and ensure_alsa_config(os.environ):
            logger.info(
                "ALSA_CONFIG_PATH unset: PyAV's ALSA reads %s", os.environ["ALSA_CONFIG_PATH"]
            )
        sound_label = sound.label if sound is not None else None

        def identity() -> SegmentIdentity:  # node and event read when each segment closes
            return dataclasses.replace(
                self._identity(), device=device, encoder=choice.winner, audio_device=sound_label
            )

        recorder = Recorder(
            name,
            self._spool,
            width=settings.width,
            height=settings.height,
            fps=settings.fps,
            segment_seconds=self._media.segment_seconds,
            identity=identity,
            on_segment=self._on_segment,
            boot=self.boot,
            clock_state=clock_synchronized,
            numbers=self._segment_numbers.setdefault(name, itertools.count()),
            active=records(name, self.recording, self._media),
            audio=sound,
        )
        pipeline = StreamPipeline(
            name,
            lambda: Source(source),
            lambda: Encoder(choice.winner, settings),
            self._metrics,
            audio=sound,
        )
        pipeline.decimation = decimation(self.thermal_level)
        hub = LiveHub(
            name,
            settings.width,
            settings.height,
            settings.fps,
            gop_cache=self._gop_cache,
            expects_audio=sound is not None,
            previous=self._previous_hls(name),
        )
        pipeline.add_output(recorder)
        pipeline.add_output(hub)
        return StreamEntry(spec, pipeline, recorder, hub, base, choice)

    def _launch(self, entry: StreamEntry, settings: EncoderSettings) -> None:
        name, choice = entry.spec.name, entry.choice
        self._metrics.encoder.labels(name, choice.winner, str(choice.hardware).lower()).set(1)
        self._metrics.recording.labels(name).set(1 if entry.recorder.active else 0)
        self._metrics.throttle.labels(name).set(self.thermal_level)
        entry.restarts.started(time.monotonic())
        self.streams[name] = entry
        entry.pipeline.start()
        watcher = asyncio.create_task(self._watch(entry), name=f"watch-{name}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        logger.info(
            "stream %s: %s %dx%d@%d with %s",
            name,
            entry.spec.source.kind,
            settings.width,
            settings.height,
            settings.fps,
            choice.winner,
        )

    async def _stop(self, name: str) -> StreamEntry | None:
        entry = self.streams.pop(name, None)
        if entry is not None:
            await self._stop_pipeline(entry)
        return entry

    async def _stop_pipeline(self, entry: StreamEntry) -> None:
        """Stop a run; its live HLS window, final once the muxer is closed, is kept for the
        stream's next run (a restart, a replug) to number on from."""
        await entry.pipeline.stop()
        if self.streams.get(entry.spec.name, entry) is entry:  # no newer run took over meanwhile
            self._keep_hls(entry.spec.name, entry.hub.hls.window)

    def _keep_hls(self, name: str, window: HlsWindow, stopped: float | None = None) -> None:
        self._hls_windows.pop(name, None)  # the newest last
        self._hls_windows[name] = (window, time.monotonic() if stopped is None else stopped)
        for gone in forgotten(list(self._hls_windows), set(self.streams), HLS_KEPT_STREAMS):
            del self._hls_windows[gone]

    def _previous_hls(self, name: str) -> HlsWindow | None:
        """What the stream's next run starts from (`carried`); only its numbers stay here, the
        segments it still lists live on in the new run's window alone."""
        kept = self._hls_windows.get(name)
        if kept is None:
            return None
        window, stopped = kept
        self._hls_windows[name] = (window.numbering(), stopped)
        return carried(window, time.monotonic() - stopped)

    def kept_hls(self, name: str) -> HlsWindow | None:
        """The HLS window kept for the stream's next run (for the tests and the status)."""
        kept = self._hls_windows.get(name)
        return kept[0] if kept is not None else None

    async def _watch(self, entry: StreamEntry) -> None:
        """A stream that ends without being asked starts again: 1 s, doubling to 30 s."""
        name = entry.spec.name
        await entry.pipeline.wait_ended()
        if self.streams.get(name) is not entry:
            return  # stopped on purpose: unplugged, stepped down, shut down
        reason = entry.pipeline.reason or "ended"
        wait = entry.restarts.failed(time.monotonic(), reason)
        entry.waiting = True
        logger.warning(
            "stream %s down (%s); restart %d in %.0f s", name, reason, entry.restarts.restarts, wait
        )
        await self._stop_pipeline(entry)  # the recorder closes its segment now, not at restart
        await asyncio.sleep(wait)
        async with self._lock:
            if self.streams.get(name) is not entry:
                return
            del self.streams[name]
            await self._start(entry.spec, entry.restarts)
            await self._reconcile(frozenset())

    # -- decisions from the governor and the retention worker ----------------------------------

    async def set_thermal_level(self, level: int) -> None:
        """Halve the frame rate at level 1; restart the streams whose encoder settings change."""
        async with self._lock:
            before, self.thermal_level = self.thermal_level, level
            for name, entry in list(self.streams.items()):
                self._metrics.throttle.labels(name).set(level)
                entry.pipeline.decimation = decimation(level)
                if stepped_down(entry.settings, level) != stepped_down(entry.settings, before):
                    await self._start(entry.spec, entry.restarts)
            await self._reconcile(frozenset())  # a camera no encoder takes lets the pattern in

    def set_recording(self, recording: bool) -> None:
        """Record or not (the disk is full); stopping closes each stream's open segment."""
        self.recording = recording
        for name, entry in self.streams.items():
            entry.recorder.active = records(name, recording, self._media)
            self._metrics.recording.labels(name).set(1 if entry.recorder.active else 0)

    # -- what the web asks ---------------------------------------------------------------------

    def hub(self, name: str) -> LiveHub | None:
        entry = self.streams.get(name)
        return entry.hub if entry is not None else None

    def request_keyframe(self, name: str) -> None:
        entry = self.streams.get(name)
        if entry is not None:
            entry.pipeline.request_keyframe()

    def status(self) -> list[dict[str, Any]]:
        return [self._describe(name, entry) for name, entry in self.streams.items()]

    def _describe(self, name: str, entry: StreamEntry) -> dict[str, Any]:
        return {
            "stream": name,
            "state": "down" if entry.waiting else entry.pipeline.state.value,
            "reason": entry.restarts.last_error if entry.waiting else entry.pipeline.reason,
            "restarts": entry.restarts.restarts,
            "source": entry.spec.source.kind,
            "encoder": entry.choice.winner,
            "hardware": entry.choice.hardware,
            "width": entry.settings.width,
            "height": entry.settings.height,
            "fps": entry.settings.fps,
            "recording": entry.recorder.active,
            "throttle_level": self.thermal_level,
            "viewers": len(entry.hub.viewers),
            "frames": dataclasses.asdict(entry.pipeline.counts),
            "audio": describe_audio(
                entry.pipeline.audio,
                entry.pipeline.audio_failure,
                pulled=entry.pipeline.audio is not None and entry.spec.audio is None,
            ),
            "audio_device": entry.pipeline.audio.label if entry.pipeline.audio else None,
            "audio_samples_dropped": dict(entry.pipeline.audio_dropped),
        }

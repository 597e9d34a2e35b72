"""The media subsystem: a stream per camera (or the test pattern), following hotplug, with the
recorder, retention and the thermal governor around them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from edged.clock import clock_synchronized
from edged.config import MediaConfig, StorageConfig
from edged.devices.board import Board, StreamDefaults
from edged.devices.classify import STREAMABLE
from edged.devices.manager import Device, DeviceEvent, DeviceManager
from edged.errors import MediaError
from edged.media import sources
from edged.media.encoders import Encoder, EncoderChoice, EncoderSettings, choose
from edged.media.live import LiveHub
from edged.media.pipeline import StreamPipeline
from edged.media.recorder import Recorder, Segment, recover, segment_from_sidecar, take_boot
from edged.media.retention import SpoolFile, plan
from edged.media.sources import Source, SourceSpec
from edged.media.thermal import ThermalPolicy, read_pi_throttled, read_temperatures
from edged.metrics import StreamMetrics
from edged.supervise import RestartPolicy, Supervisor

logger = logging.getLogger(__name__)

PATTERN_STREAM = "test-pattern"
RETENTION_SECONDS = 10.0
THERMAL_SECONDS = 5.0


def stepped_down(settings: EncoderSettings, level: int) -> EncoderSettings:
    """Settings at a thermal level: 2 halves the resolution, 3 the bitrate too (1 is fps)."""
    if level >= 2:
        settings = dataclasses.replace(
            settings, width=settings.width // 4 * 2, height=settings.height // 4 * 2
        )
    if level >= 3:
        settings = dataclasses.replace(settings, bitrate=settings.bitrate // 2)
    return settings


@dataclass
class StreamEntry:
    pipeline: StreamPipeline
    recorder: Recorder
    hub: LiveHub
    spec: SourceSpec
    settings: EncoderSettings
    choice: EncoderChoice
    device: Device | None
    restarts: RestartPolicy = field(default_factory=RestartPolicy)
    waiting: bool = False  # down, and a restart is scheduled


class MediaManager:
    """Starts, stops and supervises the streams; `on_segment` queues recordings for upload."""

    def __init__(
        self,
        media: MediaConfig,
        storage: StorageConfig,
        board: Board,
        metrics: StreamMetrics,
        data_dir: Path,
        identity: Callable[[], Mapping[str, str]],  # node and event, read when a segment closes
        on_segment: Callable[[Segment], Coroutine[Any, Any, Any]],
        is_uploaded: Callable[[str], bool],
        is_queued: Callable[[str], bool],
        *,
        free_bytes: Callable[[], int] | None = None,
        gop_cache: bool = True,
    ) -> None:
        self._gop_cache = gop_cache
        self._media = media
        self._storage = storage
        self._board = board
        self._metrics = metrics
        self.spool = data_dir / "spool"
        self._identity = identity
        self._on_segment = on_segment
        self._is_uploaded = is_uploaded
        self._is_queued = is_queued
        self._handoffs: set[Any] = set()
        self._free_bytes = free_bytes or (lambda: psutil.disk_usage(str(data_dir)).free)
        self._data_dir = data_dir
        self.boot = 0  # this daemon start's number, part of every segment name
        self._segment_numbers: dict[str, Iterator[int]] = {}  # per stream, for the whole start
        self.streams: dict[str, StreamEntry] = {}
        self._choices: dict[EncoderSettings, EncoderChoice] = {}
        self._supervisor: Supervisor | None = None
        self._own_supervisor = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._devices: DeviceManager | None = None
        self._thermal = ThermalPolicy(
            board.profile.soft_limit_celsius, board.profile.hard_limit_celsius
        )
        self.recording = True

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self, devices: DeviceManager | None, supervisor: Supervisor | None = None
    ) -> None:
        if supervisor is None:
            supervisor, self._own_supervisor = Supervisor(None), True
        self._supervisor = supervisor
        self._loop = asyncio.get_running_loop()
        self._devices = devices
        self.spool.mkdir(parents=True, exist_ok=True)
        self.boot = await asyncio.to_thread(take_boot, self._data_dir, self.spool)
        logger.info("start %d of this box: segment names carry it", self.boot)
        for segment in await asyncio.to_thread(recover, self.spool, self._identity()):
            await self._on_segment(segment)
        for segment in await asyncio.to_thread(self._unqueued_segments):
            logger.info("queueing %s for upload (closed while edged stopped)", segment.path)
            await self._on_segment(segment)
        present = [d for d in (devices.devices.values() if devices else []) if d.kind in STREAMABLE]
        for device in present:
            await self._start_device(device)
        await self._update_pattern()
        if devices is not None:
            supervisor.spawn("media-hotplug", lambda: self._follow(devices))
        supervisor.spawn("media-retention", self._retention_loop)
        supervisor.spawn("media-thermal", self._thermal_loop)

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            for name in ("media-hotplug", "media-retention", "media-thermal"):
                await supervisor.cancel(name)
            if self._own_supervisor:
                await supervisor.stop()
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for name in list(self.streams):
            await self._stop_stream(name)
        # Segments closed just now are handed to the upload queue before the uploader stops.
        await asyncio.gather(
            *(asyncio.wrap_future(f) for f in self._handoffs), return_exceptions=True
        )

    def _unqueued_segments(self) -> list[Segment]:
        """Closed segments with a sidecar that the upload journal has never seen."""
        found = []
        for sidecar in sorted(self.spool.glob("*/*.json")):
            video = sidecar.with_suffix(".mp4")
            if not video.exists() or self._is_queued(str(video)):
                continue
            try:
                found.append(segment_from_sidecar(sidecar))
            except (ValueError, KeyError, OSError) as error:
                logger.warning("spool: ignoring %s: %s", sidecar, error)
        return found

    # -- streams -------------------------------------------------------------------------------

    def _defaults(self, camera_class: str) -> StreamDefaults:
        return self._board.profile.defaults[camera_class]

    def _spec_for(self, device: Device, defaults: StreamDefaults) -> SourceSpec:
        stand_in = self._media.v4l2_stand_in
        if stand_in:
            if Path(stand_in).is_file():
                return SourceSpec("file", stand_in, defaults.width, defaults.height, defaults.fps)
            return SourceSpec("pattern", stand_in, defaults.width, defaults.height, defaults.fps)
        modes = device.capabilities.modes if device.capabilities else ()
        mode = sources.choose_mode(modes, defaults.width, defaults.height, defaults.fps, usb2=True)
        return sources.v4l2(device.node, mode, defaults.width, defaults.height, defaults.fps)

    async def _choice(self, settings: EncoderSettings) -> EncoderChoice:
        if settings not in self._choices:
            self._choices[settings] = await asyncio.to_thread(
                choose, self._board.profile.encoders, settings
            )
        return self._choices[settings]

    async def _start_device(self, device: Device) -> None:
        if device.stream is None:
            return
        defaults = self._defaults(device.kind.value)
        spec = self._spec_for(device, defaults)
        await self._start_stream(device.stream, spec, defaults.bitrate, device)

    async def _start_stream(
        self,
        name: str,
        spec: SourceSpec,
        bitrate: int,
        device: Device | None,
        restarts: RestartPolicy | None = None,
    ) -> None:
        if name in self.streams:
            await self._stop_stream(name)
        base = EncoderSettings(spec.width, spec.height, spec.fps, bitrate, self._media.gop_seconds)
        settings = stepped_down(base, self._thermal.level)
        try:
            choice = await self._choice(settings)
        except MediaError as error:
            logger.error("stream %s not started: %s", name, error)
            return
        facts = {"encoder": choice.winner, "device": device.label if device else "test pattern"}

        def identity() -> dict[str, str]:
            return {**self._identity(), **facts}

        recorder = Recorder(
            name,
            self.spool,
            width=settings.width,
            height=settings.height,
            fps=settings.fps,
            segment_seconds=self._media.segment_seconds,
            identity=identity,
            on_segment=self._segment_closed,
            boot=self.boot,
            clock_state=clock_synchronized,
            numbers=self._segment_numbers.setdefault(name, itertools.count()),
            active=self._records(name),
        )
        pipeline = StreamPipeline(
            name,
            lambda: Source(spec),
            lambda: Encoder(choice.winner, settings),
            self._metrics,
        )
        pipeline.decimation = 2 if self._thermal.level >= 1 else 1
        hub = LiveHub(
            name, settings.width, settings.height, settings.fps, gop_cache=self._gop_cache
        )
        pipeline.add_output(recorder)
        pipeline.add_output(hub)
        self._metrics.encoder.labels(name, choice.winner, str(choice.hardware).lower()).set(1)
        self._metrics.recording.labels(name).set(1 if recorder.active else 0)
        self._metrics.throttle.labels(name).set(self._thermal.level)
        entry = StreamEntry(pipeline, recorder, hub, spec, base, choice, device)
        if restarts is not None:
            entry.restarts = restarts
        entry.restarts.started(time.monotonic())
        self.streams[name] = entry
        pipeline.start()
        watcher = asyncio.create_task(self._watch(name, entry), name=f"watch-{name}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        logger.info(
            "stream %s: %s %dx%d@%d with %s",
            name,
            spec.kind,
            settings.width,
            settings.height,
            settings.fps,
            choice.winner,
        )

    def _records(self, name: str) -> bool:
        """Whether a stream records now: the disk allows it, and the test pattern only if asked."""
        return self.recording and (name != PATTERN_STREAM or self._media.record_test_pattern)

    async def _watch(self, name: str, entry: StreamEntry) -> None:
        """A stream that ends without being asked starts again: 1 s, doubling to 30 s."""
        await entry.pipeline.wait_ended()
        if self.streams.get(name) is not entry:
            return  # stopped on purpose: unplugged, stepped down, shut down
        reason = entry.pipeline.reason or "ended"
        wait = entry.restarts.failed(time.monotonic(), reason)
        entry.waiting = True
        logger.warning(
            "stream %s down (%s); restart %d in %.0f s",
            name,
            reason,
            entry.restarts.restarts,
            wait,
        )
        await entry.pipeline.stop()  # the recorder closes its segment now, not at the restart
        await asyncio.sleep(wait)
        if self.streams.get(name) is entry:
            del self.streams[name]
            await self._start_stream(
                name, entry.spec, entry.settings.bitrate, entry.device, entry.restarts
            )
            await self._update_pattern()

    async def _stop_stream(self, name: str) -> None:
        entry = self.streams.pop(name, None)
        if entry is not None:
            await entry.pipeline.stop()

    def _segment_closed(self, segment: Segment) -> None:
        """Called in a recorder thread: hand the segment to the event loop's upload queue."""
        if self._loop is not None and not self._loop.is_closed():
            future: Any = asyncio.run_coroutine_threadsafe(self._on_segment(segment), self._loop)
            self._handoffs.add(future)
            future.add_done_callback(self._handoffs.discard)

    async def _update_pattern(self) -> None:
        """The test pattern runs when configured "on", or in "auto" while no camera streams."""
        cameras = [name for name in self.streams if name != PATTERN_STREAM]
        wanted = self._media.test_pattern == "on" or (
            self._media.test_pattern == "auto" and not cameras
        )
        running = PATTERN_STREAM in self.streams
        if wanted and not running:
            width, height = (int(v) for v in self._media.pattern_size.split("x"))
            spec = sources.pattern(width, height, self._media.pattern_fps)
            await self._start_stream(PATTERN_STREAM, spec, self._defaults("webcam").bitrate, None)
        elif running and not wanted:
            await self._stop_stream(PATTERN_STREAM)

    async def _follow(self, devices: DeviceManager) -> None:
        while True:
            event = await devices.events.get()
            await self._apply_event(event)

    async def _apply_event(self, event: DeviceEvent) -> None:
        device = event.device
        if device.kind not in STREAMABLE or device.stream is None:
            return
        if event.action == "add":
            await self._start_device(device)
        else:
            entry = self.streams.get(device.stream)
            if entry is not None and entry.device and entry.device.sys_path == device.sys_path:
                await self._stop_stream(device.stream)
                self._metrics.up.labels(device.stream).set(0)
                logger.info(
                    "stream %s down: %s unplugged; its footage is kept", device.stream, device.node
                )
        await self._update_pattern()

    def hub(self, name: str) -> LiveHub | None:
        entry = self.streams.get(name)
        return entry.hub if entry is not None else None

    def request_keyframe(self, name: str) -> None:
        entry = self.streams.get(name)
        if entry is not None:
            entry.pipeline.request_keyframe()

    def status(self) -> list[dict[str, Any]]:
        result = []
        for name, entry in self.streams.items():
            counts = entry.pipeline.counts
            result.append(
                {
                    "stream": name,
                    "state": "down" if entry.waiting else entry.pipeline.state.value,
                    "reason": entry.restarts.last_error if entry.waiting else entry.pipeline.reason,
                    "restarts": entry.restarts.restarts,
                    "source": entry.spec.kind,
                    "encoder": entry.choice.winner,
                    "hardware": entry.choice.hardware,
                    "width": entry.settings.width,
                    "height": entry.settings.height,
                    "fps": entry.settings.fps,
                    "recording": entry.recorder.active,
                    "throttle_level": self._thermal.level,
                    "viewers": len(entry.hub.viewers),
                    "frames": dataclasses.asdict(counts),
                }
            )
        return result

    # -- retention -----------------------------------------------------------------------------

    def spool_files(self) -> list[SpoolFile]:
        files = []
        for path in self.spool.glob("*/*.mp4"):
            try:
                facts = path.stat()
            except FileNotFoundError:
                continue
            files.append(
                SpoolFile(str(path), facts.st_size, facts.st_mtime, self._is_uploaded(str(path)))
            )
        return files

    def apply_retention(self) -> None:
        """Delete what the plan allows; stop or resume recording (blocking: run in a thread)."""
        files = self.spool_files()
        self._metrics.spool_bytes.set(sum(f.size for f in files))
        decision = plan(
            files,
            self._free_bytes(),
            self._storage.min_free_bytes,
            delete_unuploaded=self._storage.delete_unuploaded,
        )
        for victim in decision.delete:
            for path in (Path(victim.path), Path(victim.path).with_suffix(".json")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            logger.info(
                "retention: deleted %s (%s, %d bytes)",
                victim.path,
                "uploaded" if victim.uploaded else "NOT uploaded",
                victim.size,
            )
        recording = not decision.stop_recording
        if recording != self.recording:
            if recording:
                logger.info("retention: free space is back; recording resumes")
            else:
                logger.error(
                    "retention: disk nearly full and nothing more may be deleted (footage not yet "
                    "uploaded is kept); recording stops, live view goes on. Free space or let "
                    "uploads finish"
                )
            self.recording = recording
        for name, entry in list(self.streams.items()):  # a thread: the loop may change the dict
            entry.recorder.active = self._records(name)  # stopping closes the open segment
            self._metrics.recording.labels(name).set(1 if entry.recorder.active else 0)

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.to_thread(self.apply_retention)
            await asyncio.sleep(RETENTION_SECONDS)

    # -- thermal -------------------------------------------------------------------------------

    async def _thermal_loop(self) -> None:
        while True:
            readings = await asyncio.to_thread(read_temperatures)
            throttled = await asyncio.to_thread(read_pi_throttled)
            for sensor, value in readings.items():
                self._metrics.temperature.labels(sensor).set(value)
            hottest = max(readings.values()) if readings else None
            before = self._thermal.level
            level = self._thermal.update(hottest, bool(throttled), time.monotonic())
            if level != before:
                logger.warning(
                    "thermal: %s °C, throttled %s: level %d -> %d",
                    hottest,
                    throttled,
                    before,
                    level,
                )
                await self._apply_thermal(before, level)
            await asyncio.sleep(THERMAL_SECONDS)

    async def _apply_thermal(self, before: int, level: int) -> None:
        for name, entry in list(self.streams.items()):
            self._metrics.throttle.labels(name).set(level)
            entry.pipeline.decimation = 2 if level >= 1 else 1
            if stepped_down(entry.settings, level) != stepped_down(entry.settings, before):
                await self._start_stream(
                    name, entry.spec, entry.settings.bitrate, entry.device, entry.restarts
                )

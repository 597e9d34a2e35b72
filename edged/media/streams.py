"""The media subsystem behind one face: the streams (following hotplug), the spool's crash
recovery, the retention worker and the thermal governor.

Each job is its own object: `StreamSupervisor` (stream_supervisor.py) makes the pipelines match
`wanted_streams`, `RetentionWorker` (retention_worker.py) keeps the disk from filling,
`ThermalGovernor` (thermal.py) steps the streams down when the board runs hot. This facade builds
them, runs them under the daemon's supervisor, and answers the daemon and the web.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import psutil

from edged.config import AudioConfig, MediaConfig, StorageConfig
from edged.devices.board import Board
from edged.devices.manager import DeviceManager
from edged.media.live import LiveHub
from edged.media.recorder import Segment, SegmentIdentity, recover, take_boot
from edged.media.retention_worker import RetentionWorker, UploadLedger, unqueued_segments
from edged.media.stream_plan import PATTERN_STREAM
from edged.media.stream_supervisor import StreamEntry, StreamSupervisor
from edged.media.thermal import ThermalGovernor, ThermalPolicy, ThermalReading, read_thermal
from edged.metrics import StreamMetrics
from edged.supervise import Supervisor

logger = logging.getLogger(__name__)

__all__ = ["PATTERN_STREAM", "MediaManager"]

TASKS = ("media-hotplug", "media-retention", "media-thermal")


def disk_free(path: Path) -> int:
    """Free bytes on the file system of `path` (blocking)."""
    return psutil.disk_usage(str(path)).free


class MediaManager:
    """Starts, stops and supervises the streams; `on_segment` queues recordings for upload.

    `identity` is read when each segment closes (a reload may change the event); `ledger` is the
    upload journal, asked from threads which recordings are uploaded or queued. `free_bytes` and
    `thermal_sensors` are read in threads (tests set them: the disk and the sensors)."""

    def __init__(
        self,
        media: MediaConfig,
        storage: StorageConfig,
        board: Board,
        metrics: StreamMetrics,
        data_dir: Path,
        identity: Callable[[], SegmentIdentity],
        on_segment: Callable[[Segment], Coroutine[Any, Any, Any]],
        ledger: UploadLedger,
        *,
        free_bytes: Callable[[], int] | None = None,
        thermal_sensors: Callable[[], ThermalReading] = read_thermal,
        gop_cache: bool = True,
        audio: AudioConfig | None = None,
    ) -> None:
        self.spool = data_dir / "spool"
        self._data_dir = data_dir
        self._identity = identity
        self._on_segment = on_segment
        self._ledger = ledger
        self._handoffs: set[Any] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: Supervisor | None = None
        self._own_supervisor = False
        self._streams = StreamSupervisor(
            media,
            board,
            metrics,
            self.spool,
            identity,
            self._segment_closed,
            gop_cache=gop_cache,
            audio=audio,
        )
        self.retention = RetentionWorker(
            self.spool,
            storage,
            ledger,
            metrics,
            self._streams,
            free_bytes or functools.partial(disk_free, data_dir),
        )
        limits = board.profile.soft_limit_celsius, board.profile.hard_limit_celsius
        self.thermal = ThermalGovernor(
            ThermalPolicy(*limits), metrics, self._streams, read=thermal_sensors
        )

    # -- what the daemon and the web use -------------------------------------------------------

    @property
    def streams(self) -> Mapping[str, StreamEntry]:
        return self._streams.streams

    @property
    def recording(self) -> bool:
        """False while the disk is full and nothing more may be deleted."""
        return self._streams.recording

    @property
    def boot(self) -> int:
        """This daemon start's number, part of every segment name."""
        return self._streams.boot

    def hub(self, name: str) -> LiveHub | None:
        return self._streams.hub(name)

    def request_keyframe(self, name: str) -> None:
        self._streams.request_keyframe(name)

    def status(self) -> list[dict[str, Any]]:
        return self._streams.status()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self, devices: DeviceManager | None, supervisor: Supervisor | None = None
    ) -> None:
        if supervisor is None:
            supervisor, self._own_supervisor = Supervisor(None), True
        self._supervisor = supervisor
        self._loop = asyncio.get_running_loop()
        boot = await asyncio.to_thread(self._open_spool)
        logger.info("start %d of this box: segment names carry it", boot)
        await self._hand_over_spool()
        await self._streams.start(devices, boot)
        if devices is not None:
            supervisor.spawn("media-hotplug", functools.partial(self._streams.follow, devices))
        supervisor.spawn("media-retention", self.retention.run)
        supervisor.spawn("media-thermal", self.thermal.run)

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            for name in TASKS:
                await supervisor.cancel(name)
            if self._own_supervisor:
                await supervisor.stop()
        await self._streams.stop()
        # Segments closed just now are handed to the upload queue before the uploader stops.
        await asyncio.gather(
            *(asyncio.wrap_future(f) for f in self._handoffs), return_exceptions=True
        )

    def _open_spool(self) -> int:
        """Create the spool and take this start's number (blocking)."""
        self.spool.mkdir(parents=True, exist_ok=True)
        return take_boot(self._data_dir, self.spool)

    async def _hand_over_spool(self) -> None:
        """Crash recovery: finish the segments a crash left, and queue every closed segment the
        upload journal has never seen."""
        for segment in await asyncio.to_thread(recover, self.spool, self._identity()):
            await self._on_segment(segment)
        for segment in await asyncio.to_thread(unqueued_segments, self.spool, self._ledger):
            logger.info("queueing %s for upload (closed while edged stopped)", segment.path)
            await self._on_segment(segment)

    def _segment_closed(self, segment: Segment) -> None:
        """Called in a recorder thread: hand the segment to the event loop's upload queue."""
        if self._loop is not None and not self._loop.is_closed():
            future: Any = asyncio.run_coroutine_threadsafe(self._on_segment(segment), self._loop)
            self._handoffs.add(future)
            future.add_done_callback(self._handoffs.discard)

"""Every restream destination of the box, fed from the running streams without a second encode.

Each running stream with destinations gets one tap among its pipeline's outputs: the fan-out
hands it the encoder's H.264 packets and the stream's AAC (on the event loop), which it offers
to each destination's bounded feed and always takes, so a slow or dead platform never holds or
counts against capture, encode, recording or the live views; a destination's own drops are
counted under stage `restream`. A stream restarted (a failure, a thermal step, a replug) has a
new pipeline: `follow` moves the tap to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edged.config import RestreamConfig
from edged.errors import StartupError
from edged.media.packets import EncodedPacket
from edged.metrics import RestreamMetrics, StreamMetrics
from edged.paths import read_private_file
from edged.restream.destination import Destination
from edged.restream.record import StateRecord
from edged.restream.session import Geometry
from edged.supervise import Supervisor

logger = logging.getLogger(__name__)

FOLLOW_SECONDS = 0.25  # how soon a restarted stream's new pipeline is tapped
STAGE = "restream"  # edged_frames_dropped_total{stage}


class Pipeline(Protocol):
    """What a tap needs of a running stream's pipeline (StreamPipeline is one)."""

    def add_output(self, output: Any) -> None: ...

    def remove_output(self, output: Any) -> None: ...

    @property
    def has_sound(self) -> bool: ...


@dataclass(frozen=True)
class Running:
    """A running stream as the restreamer sees it: its pipeline and picture size."""

    pipeline: Pipeline
    geometry: Geometry


class Tap:
    """One stream's output towards its destinations (pipeline.Output and AudioOutput): takes
    every packet, never blocks."""

    def __init__(self, stream: str, destinations: Sequence[Destination]) -> None:
        self.name = f"restream-{stream}"
        self._destinations = tuple(destinations)
        self.closed = False  # set by the pipeline's stop (from a thread)

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        for destination in self._destinations:
            destination.feed.offer_video(packet, extradata)
        return True

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool:
        for destination in self._destinations:
            destination.feed.offer_audio(packet, extradata)
        return True

    def end_audio(self) -> None:
        for destination in self._destinations:
            destination.feed.expects_audio = False

    def close(self) -> None:
        self.closed = True


def read_keys(configs: Sequence[RestreamConfig]) -> list[str]:
    """Each destination's stream key from its key_file (mode 0600; "" without a file).
    Blocking; StartupError naming the file when one is unreadable, readable by others or
    empty (edged would publish to the bare app without a word)."""
    return [read_key(config) if config.key_file else "" for config in configs]


def read_key(config: RestreamConfig) -> str:
    path = Path(config.key_file).expanduser()
    what = f"restream {config.name} key file"
    key = read_private_file(path, what)
    if not key:
        raise StartupError(f"{what} {path} is empty: write the stream key in it")
    return key


class Restreamer:
    """`start(supervisor)` runs the destinations and the follower; `stop()`; the web's
    `status()` and `set_enabled()` on the loop."""

    def __init__(
        self,
        configs: Sequence[RestreamConfig],
        keys: Sequence[str],
        metrics: RestreamMetrics,
        stream_metrics: StreamMetrics,
        running: Callable[[], Mapping[str, Running]],
        data_dir: Path | None = None,
    ) -> None:
        self._running = running
        self._record = StateRecord(data_dir, self.status) if data_dir is not None else None
        save = self._record.save if self._record is not None else lambda: None
        self.destinations: dict[str, Destination] = {}
        for config, key in zip(configs, keys, strict=True):
            dropped = stream_metrics.dropped.labels(config.stream, STAGE)
            self.destinations[config.name] = Destination(
                config, key, metrics, dropped.inc, on_change=save
            )
        self._by_stream: dict[str, list[Destination]] = {}
        for destination in self.destinations.values():
            self._by_stream.setdefault(destination.stream, []).append(destination)
        self._taps: dict[str, tuple[Pipeline, Tap]] = {}
        self._supervisor: Supervisor | None = None

    def task_names(self) -> list[str]:
        return ["restream-follow", *(f"restream-{name}" for name in self.destinations)]

    async def start(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self.follow_once()
        supervisor.spawn("restream-follow", self.follow)
        for name, destination in self.destinations.items():
            supervisor.spawn(f"restream-{name}", destination.run)
            logger.info(
                "restream %s: stream %s to %s (%s)",
                name,
                destination.stream,
                destination.masked_url,
                "on" if destination.enabled else "off",
            )

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:  # all at once: each stop waits for its sender to end
            await asyncio.gather(*(supervisor.cancel(name) for name in self.task_names()))
        for pipeline, tap in self._taps.values():
            pipeline.remove_output(tap)
        self._taps.clear()
        if self._record is not None:  # doctor: no daemon, no state
            await asyncio.to_thread(self._record.forget)

    async def follow(self) -> None:
        """The supervised task that keeps a tap on each running stream's current pipeline."""
        while True:
            self.follow_once()
            await asyncio.sleep(FOLLOW_SECONDS)

    def follow_once(self) -> None:
        running = self._running()
        for stream, destinations in self._by_stream.items():
            current = running.get(stream)
            tapped = self._taps.get(stream)
            if tapped is not None and (current is None or current.pipeline is not tapped[0]):
                tapped[0].remove_output(tapped[1])
                del self._taps[stream]
                tapped = None
            if current is None:
                for destination in destinations:
                    destination.geometry = None
                continue
            if tapped is None:
                self._tap(stream, current, destinations)

    def _tap(self, stream: str, current: Running, destinations: Sequence[Destination]) -> None:
        tap = Tap(stream, destinations)
        for destination in destinations:
            destination.feed.new_source()
            destination.feed.expects_audio = current.pipeline.has_sound
            destination.geometry = current.geometry
        current.pipeline.add_output(tap)
        self._taps[stream] = (current.pipeline, tap)
        logger.debug("restream: tapped stream %s for %d destinations", stream, len(destinations))

    # -- what the web asks ----------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [destination.status() for destination in self.destinations.values()]

    def by_stream(self, stream: str) -> list[dict[str, Any]]:
        """The destinations of `stream`, for its entry in /api/v1/streams."""
        return [destination.status() for destination in self._by_stream.get(stream, [])]

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any] | None:
        """Switch a destination on or off; its status after, or None when there is none."""
        destination = self.destinations.get(name)
        if destination is None:
            return None
        destination.set_enabled(enabled)
        return destination.status()

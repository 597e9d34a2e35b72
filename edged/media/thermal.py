"""The thermal governor: step streams down when the board runs hot, back up when it cools.

The policy is pure (readings and time in, level out), and so is what a level means for the
encoder; a thin reader gets the readings in a thread, and the governor hands each new level to
the streams on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from edged.media.encoders import EncoderSettings
from edged.metrics import StreamMetrics

logger = logging.getLogger(__name__)

MAX_LEVEL = 3  # 1: half the frame rate, 2: half the resolution too, 3: half the bitrate too
HYSTERESIS_CELSIUS = 5.0
STEP_DOWN_SECONDS = 10.0  # hot for this long before each step down
STEP_UP_SECONDS = 60.0  # cool for this long before each step back up
THERMAL_SECONDS = 5.0  # between readings


def stepped_down(settings: EncoderSettings, level: int) -> EncoderSettings:
    """Settings at a thermal level: 2 halves the resolution, 3 the bitrate too (1 is fps)."""
    if level >= 2:
        settings = dataclasses.replace(
            settings, width=settings.width // 4 * 2, height=settings.height // 4 * 2
        )
    if level >= 3:
        settings = dataclasses.replace(settings, bitrate=settings.bitrate // 2)
    return settings


def decimation(level: int) -> int:
    """Encode one frame in N: level 1 and above halve the frame rate."""
    return 2 if level >= 1 else 1


@dataclass
class ThermalPolicy:
    soft_limit: float
    hard_limit: float
    level: int = 0
    _since: float | None = None  # when the current condition (hot / cool) began

    def update(self, celsius: float | None, throttled: bool, now: float) -> int:
        """The level after a reading at `now` (seconds); None means no sensor: level 0."""
        if celsius is None and not throttled:
            self.level, self._since = 0, None
            return 0
        hot = throttled or (celsius is not None and celsius >= self.soft_limit)
        cool = (
            not throttled and celsius is not None and celsius < self.soft_limit - HYSTERESIS_CELSIUS
        )
        if celsius is not None and celsius >= self.hard_limit:
            self.level, self._since = MAX_LEVEL, now
            return self.level
        if hot and self.level < MAX_LEVEL:
            return self._step(now, STEP_DOWN_SECONDS, +1)
        if cool and self.level > 0:
            return self._step(now, STEP_UP_SECONDS, -1)
        if not hot and not cool:
            self._since = None  # inside the hysteresis band: hold
        return self.level

    def _step(self, now: float, wait: float, direction: int) -> int:
        if self._since is None:
            self._since = now
        elif now - self._since >= wait:
            self.level += direction
            self._since = now
        return self.level


def read_temperatures(root: Path = Path("/")) -> dict[str, float]:
    """Sensor name -> °C from psutil, else from /sys/class/thermal."""
    readings: dict[str, float] = {}
    try:
        sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except OSError:
        sensors = {}
    for chip, entries in sensors.items():
        for index, entry in enumerate(entries):
            readings[f"{chip}_{entry.label or index}".replace(" ", "_")] = float(entry.current)
    if readings:
        return readings
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        try:
            value = int((zone / "temp").read_text().strip()) / 1000
            kind = (zone / "type").read_text().strip() or zone.name
        except (OSError, ValueError):
            continue
        readings[kind] = value
    return readings


def read_pi_throttled(root: Path = Path("/")) -> bool | None:
    """Whether the Pi firmware throttles now (bit 2 of get_throttled); None when not a Pi."""
    path = root / "sys/devices/platform/soc/soc:firmware/get_throttled"
    try:
        value = int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return None
    return bool(value & 0x4)


@dataclass(frozen=True)
class ThermalReading:
    celsius: dict[str, float]  # sensor -> °C
    throttled: bool | None  # the Pi firmware throttles; None when not a Pi

    @property
    def hottest(self) -> float | None:
        return max(self.celsius.values()) if self.celsius else None


def read_thermal() -> ThermalReading:
    """The sensors and the firmware's throttling flag (blocking: run in a thread)."""
    return ThermalReading(read_temperatures(), read_pi_throttled())


class Throttleable(Protocol):
    """What the governor steps down: the streams."""

    async def set_thermal_level(self, level: int) -> None: ...


class ThermalGovernor:
    """Reads the sensors every `THERMAL_SECONDS` in a thread; on the loop, updates the policy
    and, when the level changes, hands it to the streams."""

    def __init__(
        self,
        policy: ThermalPolicy,
        metrics: StreamMetrics,
        streams: Throttleable,
        *,
        read: Callable[[], ThermalReading] = read_thermal,
    ) -> None:
        self.policy = policy
        self._metrics = metrics
        metrics.temperature_limit.labels("soft").set(policy.soft_limit)
        metrics.temperature_limit.labels("hard").set(policy.hard_limit)
        self._streams = streams
        self._read = read

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(THERMAL_SECONDS)

    async def check(self) -> int:
        """One reading and its consequence; the level after it."""
        reading = await asyncio.to_thread(self._read)
        for sensor, value in reading.celsius.items():
            self._metrics.temperature.labels(sensor).set(value)
        before = self.policy.level
        level = self.policy.update(reading.hottest, bool(reading.throttled), time.monotonic())
        if level != before:
            logger.warning(
                "thermal: %s °C, throttled %s: level %d -> %d",
                reading.hottest,
                reading.throttled,
                before,
                level,
            )
            await self._streams.set_thermal_level(level)
        return level

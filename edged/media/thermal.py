"""The thermal governor: step streams down when the board runs hot, back up when it cools.

The policy is pure (readings and time in, level out); a thin reader gets the readings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

MAX_LEVEL = 3  # 1: half the frame rate, 2: half the resolution too, 3: half the bitrate too
HYSTERESIS_CELSIUS = 5.0
STEP_DOWN_SECONDS = 10.0  # hot for this long before each step down
STEP_UP_SECONDS = 60.0  # cool for this long before each step back up


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

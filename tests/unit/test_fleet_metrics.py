"""What the fleet's alerts compare a box with (#19): its board's temperature limits, its disk
floor and the cameras it should stream, as exported; `[node] expected_cameras` in the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged import config
from edged.config import ConfigError
from edged.media.thermal import ThermalGovernor, ThermalPolicy, ThermalReading
from edged.metrics import Metrics


class Streams:
    async def set_thermal_level(self, level: int) -> None:
        return None


def test_the_governor_exports_the_boards_limits(tmp_path: Path) -> None:
    metrics = Metrics(version="0", node="n", event="e", data_dir=tmp_path)
    ThermalGovernor(
        ThermalPolicy(75.0, 85.0), metrics.streams, Streams(), read=lambda: ThermalReading({}, None)
    )
    limit = "edged_board_temperature_limit_celsius"
    sample = metrics.registry.get_sample_value
    assert (sample(limit, {"kind": "soft"}), sample(limit, {"kind": "hard"})) == (75.0, 85.0)


def test_the_disk_floor_and_the_cameras(tmp_path: Path) -> None:
    metrics = Metrics(version="0", node="n", event="e", data_dir=tmp_path)
    present = [0]
    metrics.box.set_facts(min_free_bytes=2 << 30, expected_cameras=2, present=lambda: present[0])
    sample = metrics.registry.get_sample_value
    assert sample("edged_disk_min_free_bytes") == 2 << 30
    assert (sample("edged_cameras_expected"), sample("edged_cameras_present")) == (2, 0)
    present[0] = 2  # read when scraped
    assert sample("edged_cameras_present") == 2


def test_expected_cameras_is_a_small_count() -> None:
    assert config.from_mapping({}).node.expected_cameras == 0
    assert config.from_mapping({"node": {"expected_cameras": 3}}).node.expected_cameras == 3
    for value in (-1, 65, "two"):
        with pytest.raises(ConfigError, match=r"node\.expected_cameras"):
            config.from_mapping({"node": {"expected_cameras": value}})

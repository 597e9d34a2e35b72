"""Shared fixtures: real daemons on loopback, cleaned up even when a test fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support import DaemonProcess, loopback_config, write_config

# Two cores shared with real servers and encoders: time limits per example would only add noise.
settings.register_profile("edged", deadline=None)
settings.load_profile("edged")

StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """Start `edged run` on loopback with an OS-assigned port; killed at teardown if alive."""
    started: list[DaemonProcess] = []

    def start(
        settings: Mapping[str, Mapping[str, object]] | None = None,
        *,
        name: str = "box",
        env: dict[str, str] | None = None,
        wait: bool = True,
        wrapper: tuple[str, ...] = (),
        command: tuple[str, ...] = (),
    ) -> DaemonProcess:
        config = write_config(tmp_path / f"{name}.toml", loopback_config(name, settings or {}))
        data_dir = tmp_path / f"{name}-data"
        daemon = DaemonProcess(
            ["--config", str(config), "--data-dir", str(data_dir)],
            env=env,
            data_dir=data_dir,
            config_file=config,
            wrapper=wrapper,
            command=command,
        )
        started.append(daemon)
        if wait:
            daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.kill()

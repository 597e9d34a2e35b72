"""The daemon's start-up announcement looks up the guests' link (psutil, a UDP socket) in a
thread, not on the event loop (review of #16, finding 10)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edged import daemon as daemon_module
from edged.guest.address import InterfaceAddress
from tests.integration.test_daemon_lifecycle import quiet_daemon

pytestmark = pytest.mark.integration


async def test_the_guests_link_at_start_is_looked_up_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real lookup, watched: each call says whether it ran on the loop's thread."""
    on_loop: list[bool] = []
    real = daemon_module.interface_addresses

    def watched() -> list[InterfaceAddress]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_loop.append(False)
        else:
            on_loop.append(True)
        return real()

    monkeypatch.setattr(daemon_module, "interface_addresses", watched)
    daemon = quiet_daemon(tmp_path / "data", 0)
    serving = asyncio.create_task(daemon.serve())
    try:
        async with asyncio.timeout(60):
            await daemon.started.wait()
        assert daemon.http is not None
        assert on_loop == [False]
    finally:
        daemon.request_stop()
        async with asyncio.timeout(60):
            assert await serving

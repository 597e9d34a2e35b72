"""The desk truncates again a WAL that a reader kept after a deletion (review 16b, finding 8):
the deleted guest's old bytes leave the box once the reader ends, not at the next day's prune."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import GuestConfig
from edged.guest import desk as desk_module
from edged.guest.desk import GUESTS_DIR, GuestDesk
from edged.guest.signups import Signup
from edged.metrics import GuestMetrics
from edged.supervise import Supervisor
from tests.support import eventually_in_thread
from tests.unit.test_guest_signups import KEY, reader_holding_a_snapshot, traces


async def test_a_wal_kept_by_a_reader_is_truncated_once_the_reader_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk_module, "WAL_RETRY_SECONDS", 0.2)
    desk = await asyncio.to_thread(
        lambda: GuestDesk(
            tmp_path,
            GuestConfig(),
            event=lambda: "gala",
            signups=GuestMetrics(CollectorRegistry()).signups,
        )
    )
    supervisor = Supervisor(None)
    desk.start(supervisor)
    try:
        await desk.sign_up(Signup("ada@x.org", "", "", KEY))
        folder = tmp_path / GUESTS_DIR
        reader = await asyncio.to_thread(reader_holding_a_snapshot, folder)
        try:
            removed = await desk.delete("ada@x.org")
            assert removed.wal_kept
            assert await asyncio.to_thread(traces, folder, b"ada@x.org")  # not yet overwritten
        finally:
            await asyncio.to_thread(reader.close)
        await eventually_in_thread(
            lambda: traces(folder, b"ada@x.org") == [], 10.0, "the address out of the WAL"
        )
    finally:
        await supervisor.stop()
        await desk.close()

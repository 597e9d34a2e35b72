"""When the uplink of a class dies, the others go on (#20 review, finding 1): the uploader does
not go offline, and probes the upstream by a usable uplink, not by the kernel's route alone.

A real Uploader and UplinkPool, with the interfaces it finds given (its Discovery seam): the
kernel's route (the default store) and `up0`'s store lead to a closed port (the venue's internet
is down though eth0 keeps its carrier); `up1`, metered, leads to moto."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import UplinkConfig
from edged.metrics import UploadMetrics
from edged.upload.journal import Journal
from edged.upload.links import Discovery, UplinkPool
from edged.upload.s3 import S3Store
from edged.upload.state import FileState
from edged.upload.uplinks import InterfaceFacts, Uplink
from edged.upload.uploader import Uploader, UploaderSettings
from tests.integration.test_uplink_failover import closed_port
from tests.integration.upload_support import BUCKET, MiB, finish, make_store, moto, write_random
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoProcess
from tests.support import eventually

pytestmark = pytest.mark.integration
__all__ = ["moto"]  # fixtures


def venue_pool(moto: MotoProcess) -> UplinkPool:
    dead = S3Store(
        endpoint=f"127.0.0.1:{closed_port()}",
        secure=False,
        region="us-east-1",
        bucket=BUCKET,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    live = make_store(moto)

    def store_by(uplink: Uplink) -> S3Store:
        return dead if uplink.interface == "up0" else live

    facts = [
        InterfaceFacts("up0", ("127.0.0.10",), up=True),
        InterfaceFacts("up1", ("127.0.0.11",), up=True),
    ]
    return UplinkPool(
        [UplinkConfig(match="up0"), UplinkConfig(match="up1", metered=True)],
        dead,
        ("127.0.0.1", moto.port),
        store_factory=store_by,
        discovery=Discovery(
            facts=lambda: facts,
            route=lambda host, port: "127.0.0.10",
            reaches=lambda source, host, port, interface: True,  # carrier, and a TCP connect
        ),
    )


@pytest.fixture
async def uploader(tmp_path: Path, moto: MotoProcess) -> AsyncIterator[Uploader]:
    pool = venue_pool(moto)
    journal = await asyncio.to_thread(Journal, tmp_path / "journal.sqlite3")
    made = Uploader(
        journal,
        pool.store_for(pool.uplinks[0]),  # the kernel's route: the default store, dead
        UploaderSettings(part_size=5 * MiB, parallel_parts=2, bandwidth_limit=0),
        UploadMetrics(CollectorRegistry()),
        pool=pool,
    )
    yield made
    await made.stop()
    await asyncio.to_thread(journal.close)


async def test_a_recordings_link_dead_the_clips_go_by_the_metered_one(
    tmp_path: Path, uploader: Uploader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edged.upload")
    take, clip = tmp_path / "take.mp4", tmp_path / "clip.mp4"
    await asyncio.to_thread(write_random, take, MiB)
    await asyncio.to_thread(write_random, clip, MiB)
    recording = await uploader.enqueue(take, "gala/take.mp4", kind="recording")
    await uploader.start()
    # Same at start: the kernel's route and up0 fail the probe, up1 answers it.
    await eventually(lambda: uploader.online, 30, "online by up1")

    def up0_failures() -> int:
        return sum("uplink up0 dropped" in record.getMessage() for record in caplog.records)

    # up0 back on trial (its connect passes): the recording tried by it, and failed again.
    await eventually(lambda: up0_failures() >= 2, 30, "the recording tried by up0")
    assert uploader.online  # up1 still carries clips
    queued = await uploader.enqueue(clip, "gala/clip.mp4", kind="clip")
    await finish(uploader, queued, 30)
    assert (await asyncio.to_thread(uploader.journal.require, queued)).state is FileState.DONE
    left = await asyncio.to_thread(uploader.journal.require, recording)
    assert left.state in (FileState.QUEUED, FileState.UPLOADING)
    online_at = next(
        i for i, r in enumerate(caplog.records) if "reachable: uploads resume" in r.getMessage()
    )
    offline = [
        r.getMessage()
        for r in caplog.records[online_at:]
        if "upstream unavailable" in r.getMessage()
    ]
    assert offline == []

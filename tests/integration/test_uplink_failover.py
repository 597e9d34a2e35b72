"""A file's small requests and whole PUT go by its fastest usable uplink; one that cannot reach
the upstream is dropped (pool.failed) and the next one carries them (#20). The pool is the real
UplinkPool, with the interfaces it finds given (its Discovery seam) and each uplink's store a real
S3Store: the one of `up0` leads to a closed port, the one of `up1` to moto."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import UplinkConfig
from edged.metrics import UploadMetrics
from edged.upload.classes import UploadClass
from edged.upload.journal import Journal
from edged.upload.links import Discovery, UplinkPool
from edged.upload.policy import TokenBucket
from edged.upload.s3 import S3Store
from edged.upload.state import FileState, UploadEvent
from edged.upload.transfer import FileTransfer
from edged.upload.uplinks import InterfaceFacts, Uplink
from tests.integration.upload_support import BUCKET, MiB, make_store, moto, write_random
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoProcess

pytestmark = pytest.mark.integration
__all__ = ["moto"]  # fixtures


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def two_uplinks(moto: MotoProcess) -> UplinkPool:
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
        [UplinkConfig(match="up*")],
        live,
        ("127.0.0.1", moto.port),
        store_factory=store_by,
        discovery=Discovery(
            facts=lambda: facts,
            route=lambda host, port: "127.0.0.10",
            reaches=lambda source, host, port, interface: True,  # both looked fine
        ),
    )


async def test_a_whole_put_goes_by_the_next_uplink_when_the_first_is_dead(
    tmp_path: Path, moto: MotoProcess
) -> None:
    pool = two_uplinks(moto)
    await pool.refresh()
    assert [uplink.interface for uplink in pool.usable(UploadClass.CLIP)] == ["up0", "up1"]
    path = tmp_path / "clip.mp4"
    sha256 = await asyncio.to_thread(write_random, path, MiB)
    journal = await asyncio.to_thread(Journal, tmp_path / "journal.sqlite3")
    try:
        file_id = await asyncio.to_thread(
            lambda: journal.enqueue(
                path=str(path),
                key="gala/clip.mp4",
                size=MiB,
                mtime_ns=path.stat().st_mtime_ns,
                sha256=sha256,
                priority=1,
                kind="clip",
                metadata={},
                now=time.time(),
            )
        )
        await asyncio.to_thread(journal.apply, file_id, UploadEvent.START)
        transfer = FileTransfer(
            journal,
            make_store(moto),
            UploadMetrics(CollectorRegistry()),
            TokenBucket(0, time.monotonic()),
            part_size=5 * MiB,
            parallel_parts=2,
            pool=pool,
        )
        record = await asyncio.to_thread(journal.require, file_id)
        assert await transfer.send(record) is FileState.COMPLETING
        assert await transfer.complete(record) is FileState.VERIFYING
        await transfer.verify(record)
        assert (await asyncio.to_thread(journal.require, file_id)).state is FileState.DONE
    finally:
        await asyncio.to_thread(journal.close)
    assert [uplink.interface for uplink in pool.usable(UploadClass.CLIP)] == ["up1"]

"""Priorities against a real S3 server (moto in a child process): a multipart upload stops at a
part boundary when asked to yield, keeps its parts, and resumes from its journal sending none
again; a higher class queued while a recording is in flight goes first."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.metrics import UploadMetrics
from edged.upload.journal import Journal
from edged.upload.policy import TokenBucket
from edged.upload.state import FileState, UploadEvent
from edged.upload.transfer import FileTransfer
from tests.integration.upload_support import MiB, make_store, moto, write_random
from tests.s3server import MotoProcess

pytestmark = pytest.mark.integration
__all__ = ["moto"]  # fixtures


async def test_a_multipart_upload_yields_at_a_part_boundary_and_resumes_sending_none_again(
    tmp_path: Path, moto: MotoProcess
) -> None:
    path = tmp_path / "a.mp4"
    sha256 = await asyncio.to_thread(write_random, path, 12 * MiB)  # parts: 5, 5, 2 MiB
    journal = await asyncio.to_thread(Journal, tmp_path / "journal.sqlite3")
    try:
        file_id = await asyncio.to_thread(
            lambda: journal.enqueue(
                path=str(path),
                key="gala/a.mp4",
                size=12 * MiB,
                mtime_ns=path.stat().st_mtime_ns,
                sha256=sha256,
                priority=3,
                kind="recording",
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
            parallel_parts=1,
        )
        asked: list[int] = []

        def after_the_first_part() -> bool:
            asked.append(1)
            return len(asked) > 1

        record = await asyncio.to_thread(journal.require, file_id)
        assert await transfer.send(record, after_the_first_part) is FileState.UPLOADING
        assert [part.number for part in await asyncio.to_thread(journal.parts, file_id)] == [1]
        assert (await asyncio.to_thread(journal.require, file_id)).state is FileState.UPLOADING
        assert await asyncio.to_thread(moto.total_part_puts, "a.mp4") == 1

        record = await asyncio.to_thread(journal.require, file_id)
        assert await transfer.send(record) is FileState.COMPLETING
        assert await transfer.complete(record) is FileState.VERIFYING
        await transfer.verify(record)
        assert (await asyncio.to_thread(journal.require, file_id)).state is FileState.DONE
        assert await asyncio.to_thread(moto.total_part_puts, "a.mp4") == 3  # none sent twice
    finally:
        await asyncio.to_thread(journal.close)

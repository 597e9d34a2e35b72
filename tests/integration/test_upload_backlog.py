"""A weekend's backlog in the journal (moto in a child process): the uploader's look at the
queue while a multipart upload goes (does a file of a higher class wait?) sorts it in a thread,
never on the event loop (the slow-callback guard fails the test otherwise)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from edged.upload.state import FileState
from tests.integration.upload_support import (
    MiB,
    UploaderFactory,
    finish,
    moto,
    uploaders,
    write_random,
)

pytestmark = pytest.mark.integration
__all__ = ["moto", "uploaders"]  # fixtures

BACKLOG = 20_000  # clips waiting to be retried in an hour, each with a publish time to read


def add_backlog(journal: Path, count: int, retry_at: float) -> None:
    """`count` clips queued, waiting for their retry (one transaction: test set-up)."""
    metadata = json.dumps({"publish_at": "2026-11-30T18:00:00"})
    rows = [
        (
            f"/gone/clip-{i}.mp4",
            f"gala/clip-{i}.mp4",
            1,
            1,
            "0" * 64,
            1,
            "clip",
            time.time(),
            FileState.QUEUED.value,
            retry_at,
            metadata,
        )
        for i in range(count)
    ]
    with sqlite3.connect(journal) as db:
        db.executemany(
            "INSERT INTO files (path, key, size, mtime_ns, sha256, priority, kind, created,"
            " state, next_attempt, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()


async def test_the_queue_watch_sorts_a_large_backlog_off_the_loop(
    tmp_path: Path, uploaders: UploaderFactory
) -> None:
    """Finding 10: pick_next and next_due over 20,000 pending rows (a weekend offline) held the
    loop about 0.1 s each time the queue was looked at."""
    uploader = await uploaders(part_size=5 * MiB, parallel_parts=1, bandwidth_limit=2 * MiB)
    path = tmp_path / "take.mp4"
    await asyncio.to_thread(write_random, path, 6 * MiB)  # two parts: the queue is watched
    take = await uploader.enqueue(path, "gala/take.mp4", kind="recording")
    journal = tmp_path / "journal-0.sqlite3"
    await asyncio.to_thread(add_backlog, journal, BACKLOG, time.time() + 3600)
    await uploader.start()
    await finish(uploader, take)
    assert (await asyncio.to_thread(uploader.journal.require, take)).state is FileState.DONE

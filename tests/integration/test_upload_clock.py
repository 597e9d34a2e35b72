"""Issue 21 on the uploader: an object this box would overwrite with other bytes (item 1), an
upstream that refuses the request time (item 3), and a clock step that must not prune the event
log (item 4). Real S3 servers on loopback; moto's wrapper checks the request time on demand
(tests/s3server.py `max_skew_seconds`, set in moto's child process by `MotoProcess.configure`),
since moto itself does not."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edged.clock import ClockSample
from edged.upload.state import FileState
from edged.upload.uploader import DAY
from tests.integration.upload_support import (
    BUCKET,
    MiB,
    UploaderFactory,
    any_s3,
    any_uploaders,
    finish,
    minio_client,
    moto,
    object_sha256,
    uploaders,
    write_random,
)
from tests.s3compat import S3Endpoint
from tests.s3server import MotoProcess
from tests.support import eventually, eventually_in_thread

pytestmark = pytest.mark.integration
__all__ = ["any_s3", "any_uploaders", "moto", "uploaders"]  # fixtures


def put_file(server: S3Endpoint, key: str, path: Path, sha256: str) -> None:
    """Another writer's object at `key`: the file's bytes, with their sha256 as metadata."""
    minio_client(server).fput_object(BUCKET, key, str(path), metadata={"sha256": sha256})


@pytest.mark.parametrize("size", [1 * MiB, 12 * MiB], ids=["single-put", "multipart"])
async def test_a_key_holding_other_bytes_is_never_replaced(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory, size: int
) -> None:
    """The box booted twice to the same saved time: the second recording must not overwrite."""
    key = "gala/box/cam/2019-12-31/segment.mp4"
    earlier = tmp_path / "earlier.mp4"
    earlier_sha = await asyncio.to_thread(write_random, earlier, size)
    await asyncio.to_thread(put_file, any_s3, key, earlier, earlier_sha)
    source = tmp_path / "segment.mp4"
    await asyncio.to_thread(write_random, source, size)
    uploader = await any_uploaders(part_size=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.FAILED
    assert record.last_error == f"upstream already holds {key} with other bytes; not replaced"
    assert await asyncio.to_thread(object_sha256, any_s3, key) == earlier_sha
    kinds = [event.kind for event in uploader.journal.events(file_id=file_id)]
    assert "part_done" not in kinds
    assert "upload_created" not in kinds


@pytest.mark.parametrize("size", [1 * MiB, 12 * MiB], ids=["single-put", "multipart"])
async def test_a_key_holding_the_same_bytes_is_done_without_sending(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory, size: int
) -> None:
    key = "gala/box/cam/2019-12-31/again.mp4"
    source = tmp_path / "again.mp4"
    sha = await asyncio.to_thread(write_random, source, size)
    await asyncio.to_thread(put_file, any_s3, key, source, sha)
    uploader = await any_uploaders(part_size=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    events = uploader.journal.events(file_id=file_id)
    assert "part_done" not in [event.kind for event in events]
    assert any("already upstream with the same bytes" in event.detail for event in events)
    assert await asyncio.to_thread(object_sha256, any_s3, key) == sha


async def test_a_refused_request_time_waits_says_why_and_never_fails(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    """The server's clock is two days ahead of this box's: every request is refused with AWS's
    RequestTimeTooSkewed. The file waits, queued, with the server's message; then it goes."""
    await asyncio.to_thread(moto.configure, max_skew_seconds=900, clock_offset_seconds=2 * DAY)
    source = tmp_path / "a.mp4"
    sha = await asyncio.to_thread(write_random, source, 1 * MiB)
    uploader = await uploaders()
    file_id = await uploader.enqueue(source, "e/n/s/d/a.mp4")
    await uploader.start()
    await eventually_in_thread(lambda: "TooSkewed" in uploader.journal.require(file_id).last_error)

    record = await asyncio.to_thread(uploader.journal.require, file_id)
    assert record.state is FileState.QUEUED
    assert "The difference between the request time and the current time is too large" in (
        record.last_error
    )
    assert "upstream refused the request time" in record.last_error
    assert not uploader.online

    await asyncio.to_thread(moto.configure, clock_offset_seconds=0.0)  # NTP reached the box
    uploader.wake()
    await finish(uploader, file_id)
    assert uploader.journal.require(file_id).state is FileState.DONE
    assert await asyncio.to_thread(object_sha256, moto, "e/n/s/d/a.mp4") == sha
    assert await asyncio.to_thread(lambda: moto.skew_refusals) >= 1


async def test_a_refused_request_time_mid_upload_keeps_the_file(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    """The clock goes wrong after the probe: the PUT's refusal is a wait, not a failure."""
    source = tmp_path / "a.mp4"
    await asyncio.to_thread(write_random, source, 1 * MiB)
    uploader = await uploaders()
    await uploader.start()
    await eventually(lambda: uploader.online)
    await asyncio.to_thread(moto.configure, max_skew_seconds=900, clock_offset_seconds=2 * DAY)
    file_id = await uploader.enqueue(source, "e/n/s/d/b.mp4")
    await eventually_in_thread(lambda: "TooSkewed" in uploader.journal.require(file_id).last_error)
    record = await asyncio.to_thread(uploader.journal.require, file_id)
    assert record.state in (FileState.QUEUED, FileState.UPLOADING)
    assert "upstream refused the request time" in record.last_error
    await asyncio.to_thread(moto.configure, clock_offset_seconds=0.0)
    uploader.wake()
    await finish(uploader, file_id)
    assert uploader.journal.require(file_id).state is FileState.DONE


async def test_a_clock_step_forward_prunes_no_event(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    """Events written minutes ago, then NTP steps the clock 40 days forward: none is pruned
    (a prune runs on every pass here), while an event really older than 30 days goes."""
    offset = [0.0]
    uploader = await uploaders()
    uploader._settings = __import__("dataclasses").replace(
        uploader._settings, prune_interval_seconds=0.0
    )
    uploader.use_clock(lambda: ClockSample(time.time() + offset[0], time.monotonic()))
    old = time.time() - 31 * DAY

    def log_an_old_event() -> None:  # an event logged 31 days ago, before any step
        with uploader.journal._transaction() as db:
            db.execute("INSERT INTO events (at, kind, detail) VALUES (?, 'queued', 'old')", (old,))

    await asyncio.to_thread(log_an_old_event)
    source = tmp_path / "a.mp4"
    await asyncio.to_thread(write_random, source, 1 * MiB)
    await uploader.start()
    first = await uploader.enqueue(source, "e/n/s/d/a.mp4")
    await finish(uploader, first)
    written = [e for e in uploader.journal.events(limit=1000) if e.detail != "old"]
    assert len(written) >= 4
    assert "old" not in [e.detail for e in uploader.journal.events(limit=1000)]

    offset[0] = 40 * DAY  # the wall clock steps; monotonic time does not
    second = tmp_path / "b.mp4"
    await asyncio.to_thread(write_random, second, 1 * MiB)
    next_id = await uploader.enqueue(second, "e/n/s/d/b.mp4")
    await finish(uploader, next_id)
    third = tmp_path / "c.mp4"
    await asyncio.to_thread(write_random, third, 1 * MiB)
    await finish(uploader, await uploader.enqueue(third, "e/n/s/d/c.mp4"))

    kept = uploader.journal.events(limit=1000)
    for event in written:
        assert event in kept


async def test_a_key_taken_during_a_multipart_upload_is_not_completed_over(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory
) -> None:
    """Another writer puts other bytes at the key while the parts go: no completion over it."""
    key = "gala/box/cam/2019-12-31/raced.mp4"
    source = tmp_path / "raced.mp4"
    await asyncio.to_thread(write_random, source, 12 * MiB)
    other = tmp_path / "other.mp4"
    other_sha = await asyncio.to_thread(write_random, other, 1 * MiB)
    uploader = await any_uploaders(part_size=5 * MiB, parallel_parts=1, bandwidth_limit=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await eventually_in_thread(lambda: len(uploader.journal.parts(file_id)) >= 1)
    await asyncio.to_thread(put_file, any_s3, key, other, other_sha)
    await finish(uploader, file_id)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.FAILED
    assert record.last_error == f"upstream already holds {key} with other bytes; not replaced"
    assert await asyncio.to_thread(object_sha256, any_s3, key) == other_sha
    kinds = [event.kind for event in uploader.journal.events(file_id=file_id)]
    assert "completed" not in kinds

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
from edged.upload.classes import UploadClass
from edged.upload.journal import EventRecord, Journal
from edged.upload.policy import EVERY_CLASS, TokenBucket
from edged.upload.state import FileState, UploadEvent
from edged.upload.transfer import FileTransfer
from edged.upload.uploader import Uploader
from tests.integration.upload_support import (
    MiB,
    UploaderFactory,
    finish,
    make_store,
    moto,
    object_sha256,
    uploaders,
    write_random,
)
from tests.s3server import MotoProcess
from tests.support import eventually_in_thread

pytestmark = pytest.mark.integration
__all__ = ["moto", "uploaders"]  # fixtures

PART = 5 * MiB
RECORDING_PARTS = 8


async def slow_uploader(uploaders: UploaderFactory) -> Uploader:
    """Parts of 5 MiB at 5 MiB/s with one sender: the recording takes about 7 s, a part a second,
    time enough to queue a clip between two of its parts once the first is journaled."""
    return await uploaders(part_size=PART, parallel_parts=1, bandwidth_limit=5 * MiB)


async def journaled_parts(uploader: Uploader, file_id: int) -> int:
    return len(await asyncio.to_thread(uploader.journal.parts, file_id))


async def history(uploader: Uploader) -> list[EventRecord]:
    """The journal's events, oldest first."""
    events = await asyncio.to_thread(lambda: uploader.journal.events(limit=10_000))
    return events[::-1]


def index_of(events: list[EventRecord], file_id: int, kind: str) -> int:
    return next(
        i for i, event in enumerate(events) if (event.file_id, event.kind) == (file_id, kind)
    )


async def recording_in_flight(uploader: Uploader, tmp_path: Path) -> tuple[int, str]:
    """A recording of RECORDING_PARTS parts queued and started: its first part journaled."""
    path = tmp_path / "rec.mp4"
    sha256 = await asyncio.to_thread(write_random, path, RECORDING_PARTS * PART)
    await uploader.start()
    recording = await uploader.enqueue(path, "gala/rec.mp4", kind="recording")
    await eventually_in_thread(
        lambda: len(uploader.journal.parts(recording)) >= 1, 60, "the recording's first part"
    )
    return recording, sha256


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


async def test_a_clip_queued_during_a_recording_goes_first_and_the_recording_resends_nothing(
    tmp_path: Path, uploaders: UploaderFactory, moto: MotoProcess
) -> None:
    uploader = await slow_uploader(uploaders)
    recording, sha256 = await recording_in_flight(uploader, tmp_path)
    clip_path = tmp_path / "clip.mp4"
    clip_sha256 = await asyncio.to_thread(write_random, clip_path, MiB)
    clip = await uploader.enqueue(clip_path, "gala/clip.mp4", kind="clip")
    await finish(uploader, clip)
    assert (await asyncio.to_thread(uploader.journal.require, clip)).state is FileState.DONE
    # The clip was verified while the recording waited, UPLOADING, with some of its parts.
    waiting = await asyncio.to_thread(uploader.journal.require, recording)
    assert waiting.state is FileState.UPLOADING
    assert 1 <= await journaled_parts(uploader, recording) < RECORDING_PARTS
    await finish(uploader, recording)
    done = await asyncio.to_thread(uploader.journal.require, recording)
    assert done.state is FileState.DONE
    assert done.upload_id == waiting.upload_id  # resumed, not started over
    events = await history(uploader)
    assert index_of(events, clip, "verified") < index_of(events, recording, "parts_sent")
    assert [e.kind for e in events if e.file_id == recording].count("upload_created") == 1
    assert await asyncio.to_thread(moto.total_part_puts, "rec.mp4") == RECORDING_PARTS
    assert await asyncio.to_thread(object_sha256, moto, "gala/rec.mp4") == sha256
    assert await asyncio.to_thread(object_sha256, moto, "gala/clip.mp4") == clip_sha256


async def test_a_sidecar_waiting_for_the_recording_in_flight_does_not_stop_it(
    tmp_path: Path, uploaders: UploaderFactory, moto: MotoProcess
) -> None:
    uploader = await slow_uploader(uploaders)
    recording, _ = await recording_in_flight(uploader, tmp_path)
    sidecar_path = tmp_path / "rec.json"
    sidecar_path.write_text("{}")
    sidecar = await uploader.enqueue(
        sidecar_path, "gala/rec.json", kind="sidecar", after_id=recording
    )
    await finish(uploader, sidecar)
    events = await history(uploader)
    assert index_of(events, recording, "verified") < index_of(events, sidecar, "start")
    assert [e.kind for e in events if e.file_id == recording].count("part_done") == RECORDING_PARTS
    assert await asyncio.to_thread(moto.total_part_puts, "rec.mp4") == RECORDING_PARTS


async def test_a_recording_waits_while_no_uplink_carries_recordings(
    tmp_path: Path, uploaders: UploaderFactory, moto: MotoProcess
) -> None:
    """Only a metered link up (it carries guest data and clips): the recording in flight stops
    at a part boundary, a clip still goes; the recording resumes when its class is carried."""
    uploader = await slow_uploader(uploaders)
    carried = {"now": EVERY_CLASS}
    uploader.use_carried_classes(lambda: carried["now"])
    recording, _ = await recording_in_flight(uploader, tmp_path)
    carried["now"] = frozenset({UploadClass.GUEST, UploadClass.CLIP})
    uploader.classes_changed()
    clip_path = tmp_path / "clip.mp4"
    await asyncio.to_thread(write_random, clip_path, MiB)
    clip = await uploader.enqueue(clip_path, "gala/clip.mp4", kind="clip")
    await finish(uploader, clip)
    await uploader.wait_idle()  # nothing it may send now
    sent = await journaled_parts(uploader, recording)
    assert sent < RECORDING_PARTS
    assert (await asyncio.to_thread(uploader.journal.require, recording)).state is (
        FileState.UPLOADING
    )
    carried["now"] = EVERY_CLASS
    uploader.classes_changed()
    await finish(uploader, recording)
    assert (await asyncio.to_thread(uploader.journal.require, recording)).state is FileState.DONE
    assert await asyncio.to_thread(moto.total_part_puts, "rec.mp4") == RECORDING_PARTS

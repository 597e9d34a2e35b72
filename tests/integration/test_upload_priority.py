"""Priorities against a real S3 server (moto in a child process): a multipart upload stops at a
part boundary when asked to yield, keeps its parts, and resumes from its journal sending none
again; a higher class queued while a recording is in flight goes first."""

from __future__ import annotations

import asyncio
import json
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
from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.integration.test_upload_api import post_json
from tests.integration.upload_support import (
    MiB,
    UploaderFactory,
    finish,
    make_store,
    moto,
    object_sha256,
    s3,
    uploaders,
    upstream_settings,
    write_random,
)
from tests.s3server import MotoProcess, S3Server
from tests.support import eventually_in_thread, run_edged

pytestmark = pytest.mark.integration
__all__ = ["moto", "s3", "uploaders"]  # fixtures

PART = 5 * MiB  # S3's smallest
# A part a second: the first is journaled at once (the bucket starts full), the clip queued then
# stops the recording after its second, and two are left to resume with.
RECORDING_PARTS = 4
RETRY_RECORDING_PARTS = 6  # the clip's retry time (2.5 s) falls well inside the recording


async def slow_uploader(uploaders: UploaderFactory) -> Uploader:
    """Parts of 5 MiB at 5 MiB/s with one sender: the recording takes about 3 s, a part a second,
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


async def recording_in_flight(
    uploader: Uploader, tmp_path: Path, parts: int = RECORDING_PARTS
) -> tuple[int, str]:
    """A recording of `parts` parts queued and started: its first part journaled."""
    path = tmp_path / "rec.mp4"
    sha256 = await asyncio.to_thread(write_random, path, parts * PART)
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


def test_the_api_and_the_cli_show_each_files_class_and_position(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    """Files queued through the API in every kind it takes, the upstream away (the queue
    stays): GET /api/v1/uploads and `edged uploads` list them in the order they will go."""
    settings = upstream_settings(tmp_path, s3)
    s3.stop()  # nothing leaves: the order is what there is to see
    daemon = start_daemon({"mdns": {"enabled": False}, "upstream": settings})
    assert daemon.data_dir is not None
    token = (daemon.data_dir / "admin.token").read_text().strip()
    outbox = daemon.data_dir / "outbox"
    outbox.mkdir(exist_ok=True)
    url = daemon.url + "/api/v1/uploads"
    queued = {}
    for name, kind in (
        ("day.mp4", "recording"),
        ("day.json", "sidecar"),
        ("event.json", "manifest"),
        ("teaser.mp4", "clip"),
        ("signups.csv", "guest"),
        ("notes.txt", "file"),
    ):
        (outbox / name).write_bytes(name.encode())
        status, body = post_json(url, {"path": f"outbox/{name}", "kind": kind}, token)
        assert status == 202, body
        queued[name] = body["id"]
    status, body = post_json(url, {"path": "outbox/day.mp4", "kind": "movie"}, token)
    assert status == 400 and "guest" in str(body["error"])
    _, raw = http(url, token=token)
    shown = [(row["class"], row["position"], row["key"]) for row in json.loads(raw)["files"]]
    assert [(cls, position) for cls, position, _ in shown] == [
        ("guest", 1),
        ("clip", 2),
        ("manifest", 3),
        ("manifest", 4),
        ("recording", 5),
        ("recording", 6),
    ]
    assert [Path(key).name for *_, key in shown] == [
        "signups.csv",
        "teaser.mp4",
        "day.json",
        "event.json",
        "day.mp4",
        "notes.txt",
    ]
    assert daemon.stop() == 0
    listed = run_edged("uploads", "--data-dir", str(daemon.data_dir))
    lines = [line.split() for line in listed.stdout.splitlines() if line.lstrip().startswith("#")]
    assert [(line[0], line[2]) for line in lines] == [
        ("#1", "guest"),
        ("#2", "clip"),
        ("#3", "manifest"),
        ("#4", "manifest"),
        ("#5", "recording"),
        ("#6", "recording"),
    ]


async def test_a_clip_whose_retry_time_comes_during_a_recording_goes_first(
    tmp_path: Path, uploaders: UploaderFactory, moto: MotoProcess
) -> None:
    """A clip backing off after a failed attempt when the recording starts: at its retry time
    (nothing new queued, no one wakes the uploader) it stops the recording at a part boundary."""
    uploader = await slow_uploader(uploaders)
    clip_path = tmp_path / "clip.mp4"
    clip_sha256 = await asyncio.to_thread(write_random, clip_path, MiB)

    def clip_backing_off() -> int:
        clip = uploader.journal.enqueue(
            path=str(clip_path),
            key="gala/clip.mp4",
            size=MiB,
            mtime_ns=clip_path.stat().st_mtime_ns,
            sha256=clip_sha256,
            priority=1,
            kind="clip",
            metadata={},
            now=time.time(),
        )
        uploader.journal.apply(clip, UploadEvent.START)
        uploader.journal.apply(
            clip, UploadEvent.RETRYABLE_ERROR, detail="503", retry_at=time.time() + 2.5
        )
        return clip

    clip = await asyncio.to_thread(clip_backing_off)
    # Due 2.5 s on, at the boundary after the recording's third part, with three more to go.
    recording, _ = await recording_in_flight(uploader, tmp_path, RETRY_RECORDING_PARTS)
    await finish(uploader, clip)
    waiting = await asyncio.to_thread(uploader.journal.require, recording)
    assert waiting.state is FileState.UPLOADING
    await finish(uploader, recording)
    events = await history(uploader)
    assert index_of(events, recording, "part_done") < index_of(events, clip, "verified")
    assert index_of(events, clip, "verified") < index_of(events, recording, "parts_sent")
    assert await asyncio.to_thread(moto.total_part_puts, "rec.mp4") == RETRY_RECORDING_PARTS

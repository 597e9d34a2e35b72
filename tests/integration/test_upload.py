"""The uploader against real S3 servers on loopback: parts, verification, outages, lost uploads.

A test whose subject is the S3 exchange runs on both servers through `any_s3` / `any_uploaders`:
moto's, and rclone's `serve s3`, whose multipart ETag, error bodies and restart behaviour differ
(tests/s3compat.py). These stay on moto alone:
- test_changed_and_deleted_sources_are_refused: the refusal happens before any request, and
  "nothing was sent" is measured with moto's request tally (`total_part_puts`);
- test_stale_uploads_of_this_box_are_aborted: rclone does not list unfinished multipart uploads
  (ListMultipartUploads answers none) and forgets them on restart, so there is nothing to find;
- test_sts_short_lived_credentials: moto's STS (rclone has no AssumeRole);
- test_full_journal_pauses_uploads_and_says_so: its subject is the journal, not the server.
moto runs in a child process (upload_support.py `moto`): in this one its threads would hold the
GIL through whole part copies and keep the test's loop from running past the slow-callback bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
from pathlib import Path

import pytest

from edged.s3bucket import SHA256_HEADER, ObjectFacts
from edged.upload import uploader as uploader_module
from edged.upload.journal import JournalError
from edged.upload.policy import multipart_etag
from edged.upload.state import FileState
from edged.upload.uploader import PROBE_MAX_SECONDS, PROBE_MIN_SECONDS
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
    whole_md5,
    write_random,
)
from tests.s3compat import S3Endpoint
from tests.s3server import SECRET_KEY, MotoProcess
from tests.support import eventually, eventually_in_thread

pytestmark = pytest.mark.integration
__all__ = ["any_s3", "any_uploaders", "moto", "uploaders"]  # fixtures
SHORT_PROBE_SECONDS = PROBE_MIN_SECONDS / 4


def expected_etag(path: Path, part_size: int) -> str:
    md5s = []
    with path.open("rb") as handle:
        while chunk := handle.read(part_size):
            md5s.append(hashlib.md5(chunk).hexdigest())
    return multipart_etag(md5s)


async def test_64_mib_file_uploads_in_parts_and_verifies(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory
) -> None:
    source = tmp_path / "segment.mp4"
    sha = await asyncio.to_thread(write_random, source, 64 * MiB)
    key = "gala/box/cam1/2026-11-26/segment.mp4"
    uploader = await any_uploaders(part_size=16 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id)

    record = await asyncio.to_thread(uploader.journal.require, file_id)
    assert record.state is FileState.DONE, record.last_error
    assert len(await asyncio.to_thread(uploader.journal.parts, file_id)) == 4
    multipart = await asyncio.to_thread(expected_etag, source, 16 * MiB)
    assert multipart.endswith("-4")
    assert record.etag == multipart  # CompleteMultipartUpload's answer, on both servers
    facts = await asyncio.to_thread(minio_client(any_s3).stat_object, BUCKET, key)
    assert facts.etag in (multipart, await asyncio.to_thread(whole_md5, source))  # moto, rclone
    assert facts.metadata is not None
    assert facts.metadata[SHA256_HEADER] == sha
    assert await asyncio.to_thread(object_sha256, any_s3, key) == sha
    if isinstance(any_s3, MotoProcess):  # moto's request tally: no part went twice
        assert await asyncio.to_thread(any_s3.total_part_puts, key) == 4
    events = await asyncio.to_thread(lambda: uploader.journal.events(file_id=file_id))
    kinds = [event.kind for event in events]
    assert kinds[0] == "verified" and kinds.count("part_done") == 4
    assert "upload_lost" not in kinds
    assert uploader.online


async def test_small_file_goes_in_one_put_and_sidecar_follows(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory
) -> None:
    segment = tmp_path / "0001.mp4"
    sidecar = tmp_path / "0001.json"
    await asyncio.to_thread(write_random, segment, 1 * MiB)
    sidecar.write_text('{"sha256": "..."}')
    uploader = await any_uploaders()
    segment_id = await uploader.enqueue(segment, "e/n/s/d/0001.mp4")
    sidecar_id = await uploader.enqueue(
        sidecar, "e/n/s/d/0001.json", kind="clip", after_id=segment_id
    )
    await uploader.start()
    await finish(uploader, sidecar_id)
    first, second = uploader.journal.require(segment_id), uploader.journal.require(sidecar_id)
    assert first.state is second.state is FileState.DONE
    assert first.done_at is not None and second.done_at is not None
    assert first.done_at <= second.done_at
    facts = await asyncio.to_thread(minio_client(any_s3).stat_object, BUCKET, "e/n/s/d/0001.mp4")
    assert facts.etag == await asyncio.to_thread(whole_md5, segment)


async def test_outage_waits_without_busy_loop_then_completes(
    tmp_path: Path,
    any_s3: S3Endpoint,
    any_uploaders: UploaderFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto comes back knowing the upload; rclone comes back without it (the file starts over).
    The probe schedule starts at a quarter of PROBE_MIN_SECONDS (0.25, 0.5, 1, 2 s): the same
    doubling, the waits and the wait for the server to come back each a quarter as long."""
    monkeypatch.setattr(uploader_module, "PROBE_MIN_SECONDS", SHORT_PROBE_SECONDS)
    source = tmp_path / "long.mp4"
    sha = await asyncio.to_thread(write_random, source, 30 * MiB)
    uploader = await any_uploaders(parallel_parts=1, bandwidth_limit=10 * MiB)
    probes = []
    real_probe = uploader.store.probe

    def counting_probe() -> None:
        probes.append(time.monotonic())
        real_probe()

    uploader.store.probe = counting_probe  # type: ignore[method-assign]
    waits: list[tuple[int, float]] = []  # (probes made, seconds the uploader waits next)
    real_sleep = uploader._sleep

    async def recording_sleep(seconds: float, event: asyncio.Event | None = None) -> None:
        if not uploader.online:  # the probe schedule's waits (not an idle one before the file)
            waits.append((len(probes), seconds))
        await real_sleep(seconds, event)

    uploader._sleep = recording_sleep  # type: ignore[method-assign]
    reconnects: list[int] = []
    uploader.on_reconnect.append(lambda: reconnects.append(1))
    await uploader.start()
    file_id = await uploader.enqueue(source, "gala/box/cam/day/long.mp4")
    await eventually_in_thread(lambda: len(uploader.journal.parts(file_id)) >= 2)
    await asyncio.to_thread(any_s3.stop)
    await eventually(lambda: not uploader.online)
    assert any_uploaders.metric(uploader, "edged_upstream_up") == 0
    before = len(probes)
    await eventually(lambda: len(probes) >= before + 3)
    # Each failed probe is followed by one wait, twice as long as the last: no busy loop.
    offline = [(made, seconds) for made, seconds in waits if before <= made < before + 3]
    assert [made for made, _ in offline] == list(range(before, before + 3))[-len(offline) :]
    assert len(offline) >= 2, waits
    seconds = [wait for _, wait in offline]
    assert seconds[0] >= SHORT_PROBE_SECONDS
    assert seconds[1:] == [min(2 * wait, PROBE_MAX_SECONDS) for wait in seconds[:-1]], waits
    assert (await asyncio.to_thread(uploader.journal.require, file_id)).state is FileState.UPLOADING
    await asyncio.to_thread(any_s3.start)  # same port, same objects
    await finish(uploader, file_id)
    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    assert any_uploaders.metric(uploader, "edged_upstream_up") == 1
    assert len(reconnects) == 2  # the first contact and the return after the outage
    assert await asyncio.to_thread(object_sha256, any_s3, "gala/box/cam/day/long.mp4") == sha


async def test_no_such_upload_restarts_the_file(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory
) -> None:
    source = tmp_path / "lost.mp4"
    # Three parts of 5 MiB at 5 MiB/s: the upload is aborted after the first, two to go.
    sha = await asyncio.to_thread(write_random, source, 15 * MiB)
    key = "gala/box/cam/day/lost.mp4"
    uploader = await any_uploaders(parallel_parts=1, bandwidth_limit=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await eventually_in_thread(lambda: len(uploader.journal.parts(file_id)) >= 1)
    lost_id = (await asyncio.to_thread(uploader.journal.require, file_id)).upload_id
    await asyncio.to_thread(minio_client(any_s3)._abort_multipart_upload, BUCKET, key, lost_id)
    await finish(uploader, file_id)
    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    assert record.upload_id != lost_id
    assert "upload_lost" in [event.kind for event in uploader.journal.events(file_id=file_id)]
    assert await asyncio.to_thread(object_sha256, any_s3, key) == sha


async def test_other_sha256_metadata_fails_verification_and_is_never_replaced(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory
) -> None:
    """The object carries the bytes sent but says another sha256: not verified, and since the
    key now holds another sha256 it is not sent again over it (issue 21 item 1): failed."""
    source = tmp_path / "a.mp4"
    sha = await asyncio.to_thread(write_random, source, 1 * MiB)
    key = "e/n/s/d/a.mp4"
    uploader = await any_uploaders()
    real_stat = uploader.store.stat
    stats: list[str] = []

    def stat_after_a_rewrite(key: str) -> ObjectFacts | None:
        stats.append(key)
        if len(stats) == 2:  # once, between the PUT and its verification
            data = source.read_bytes()
            minio_client(any_s3).put_object(
                BUCKET, key, io.BytesIO(data), len(data), metadata={"sha256": "cd" * 32}
            )
        return real_stat(key)

    uploader.store.stat = stat_after_a_rewrite  # type: ignore[method-assign]
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.FAILED
    assert record.last_error == f"upstream already holds {key} with other bytes; not replaced"
    lost = [e for e in uploader.journal.events(file_id=file_id) if e.kind == "upload_lost"]
    assert len(lost) == 1
    assert f"sha256 metadata {'cd' * 32!r} != {sha}" in lost[0].detail
    facts = await asyncio.to_thread(minio_client(any_s3).stat_object, BUCKET, key)
    assert facts.metadata is not None
    assert facts.metadata[SHA256_HEADER] == "cd" * 32


async def test_wrong_credentials_keep_the_queue(
    tmp_path: Path, any_uploaders: UploaderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "a.mp4"
    await asyncio.to_thread(write_random, source, 1 * MiB)
    uploader = await any_uploaders(access_key="revokedkey")
    probes = []
    real_probe = uploader.store.probe

    def counting_probe() -> None:
        probes.append(1)
        real_probe()

    uploader.store.probe = counting_probe  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, "edged")
    await uploader.start()
    file_id = await uploader.enqueue(source, "e/n/s/d/a.mp4")
    await eventually(lambda: "upstream refused the credentials" in caplog.text)
    assert "check [upstream] access_key, secret_key_file" in caplog.text
    assert SECRET_KEY not in caplog.text
    assert uploader.journal.require(file_id).state is FileState.QUEUED
    seen = len(probes)
    uploader.wake()  # e.g. an operator fixed the keys: it tries again at once
    await eventually(lambda: len(probes) > seen)
    assert any_uploaders.metric(uploader, "edged_upstream_up") == 0


async def test_changed_and_deleted_sources_are_refused(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    changed, deleted = tmp_path / "changed.mp4", tmp_path / "deleted.mp4"
    await asyncio.to_thread(write_random, changed, 1 * MiB)
    await asyncio.to_thread(write_random, deleted, 1 * MiB)
    uploader = await uploaders()
    changed_id = await uploader.enqueue(changed, "e/n/s/d/changed.mp4")
    deleted_id = await uploader.enqueue(deleted, "e/n/s/d/deleted.mp4")
    with changed.open("ab") as handle:
        handle.write(b"more")
    deleted.unlink()
    await uploader.start()
    await finish(uploader, changed_id)
    await finish(uploader, deleted_id)
    refused = uploader.journal.require(changed_id)
    gone = uploader.journal.require(deleted_id)
    assert refused.state is gone.state is FileState.FAILED
    assert "changed since it was queued" in refused.last_error
    assert "was deleted before it was uploaded" in gone.last_error
    assert await asyncio.to_thread(moto.total_part_puts, "changed.mp4") == 0
    # Once the operator restores the file, a retry ships it.
    deleted.write_bytes(b"")
    assert (await uploader.retry(deleted_id)) is FileState.QUEUED


async def test_stale_uploads_of_this_box_are_aborted(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    uploader = await uploaders(stale_prefix="gala/box/")
    create = uploader.store.create_upload
    stale = await asyncio.to_thread(create, "gala/box/cam/day/abandoned.mp4", "0" * 64)
    other = await asyncio.to_thread(create, "gala/other-box/cam/day/theirs.mp4", "0" * 64)
    await uploader.start()
    await eventually_in_thread(lambda: not uploader.store.incomplete_uploads("gala/box/"))
    remaining = await asyncio.to_thread(uploader.store.incomplete_uploads, "gala/")
    assert ("gala/other-box/cam/day/theirs.mp4", other) in remaining
    assert stale not in [upload_id for _, upload_id in remaining]


async def test_sts_short_lived_credentials(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    source = tmp_path / "sts.mp4"
    sha = await asyncio.to_thread(write_random, source, 6 * MiB)
    uploader = await uploaders(sts_role_arn="arn:aws:iam::123456789012:role/edged-uploader")
    await uploader.start()
    file_id = await uploader.enqueue(source, "gala/box/cam/day/sts.mp4")
    await finish(uploader, file_id)
    assert uploader.journal.require(file_id).state is FileState.DONE
    assert await asyncio.to_thread(object_sha256, moto, "gala/box/cam/day/sts.mp4") == sha
    temporary = uploader.store._client._provider.retrieve()  # type: ignore[union-attr]
    assert temporary.access_key.startswith("ASIA")
    assert temporary.session_token


async def test_full_journal_pauses_uploads_and_says_so(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "a.mp4"
    await asyncio.to_thread(write_random, source, 1 * MiB)
    uploader = await uploaders(journal_pages=12)
    await uploader.enqueue(source, "e/n/s/d/a.mp4")
    with pytest.raises(JournalError, match="database or disk is full"):  # noqa: PT012
        for index in range(10_000):
            await uploader.enqueue(source, f"e/n/s/d/filler-{index:05d}-" + "x" * 300)
    caplog.set_level(logging.ERROR, "edged")
    await uploader.start()
    await eventually(lambda: "upload journal cannot be written" in caplog.text)
    assert "recording goes on; free disk space in the data dir" in caplog.text
    assert uploader.working

"""The uploader against a second S3-compatible server whose multipart ETag is not moto's.

rclone's `serve s3` (tests/s3compat.py) answers CompleteMultipartUpload with md5-of-part-md5s-N
but HEAD with the plain MD5 of the whole object. The S3 API calls the ETag opaque: a file must
verify by what the object is, and must not be sent again and again (issue 12, item 7).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
from pathlib import Path

import pytest

from edged.s3bucket import SHA256_HEADER, ObjectFacts
from edged.upload.policy import multipart_etag
from edged.upload.state import FileState
from tests.integration.upload_support import (
    BUCKET,
    MiB,
    UploaderFactory,
    any_s3,
    compat_uploaders,
    finish,
    make_store,
    minio_client,
    object_sha256,
    s3_compat,
    whole_md5,
    write_random,
)
from tests.s3compat import RcloneS3Server, S3Endpoint
from tests.support import eventually_in_thread

pytestmark = pytest.mark.integration
__all__ = ["any_s3", "compat_uploaders", "s3_compat"]  # fixtures

# Well under the per-test timeout: a file that never verifies fails here, with its journal row.
VERIFY_LIMIT = 30.0


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_second_server_gives_another_multipart_etag(s3_compat: RcloneS3Server) -> None:
    """The premise of this file: if a new rclone changes it, these tests prove nothing."""
    store = make_store(s3_compat)
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB
    parts = [data[offset : offset + 5 * MiB] for offset in range(0, len(data), 5 * MiB)]
    upload_id = store.create_upload("gala/box/cam/day/premise.mp4", "0" * 64)
    etags = [
        (number, store.upload_part("gala/box/cam/day/premise.mp4", upload_id, number, part))
        for number, part in enumerate(parts, start=1)
    ]
    assert [etag for _, etag in etags] == [md5_hex(part) for part in parts]  # parts: their md5
    completed = store.complete("gala/box/cam/day/premise.mp4", upload_id, etags)
    facts = store.stat("gala/box/cam/day/premise.mp4")

    assert completed == multipart_etag([md5_hex(part) for part in parts])
    assert facts is not None
    assert facts.etag == md5_hex(data)  # moto answers md5-of-md5s-3 here too
    assert facts.size == len(data)
    assert facts.sha256 == "0" * 64


async def test_single_put_file_verifies(
    tmp_path: Path, s3_compat: RcloneS3Server, compat_uploaders: UploaderFactory
) -> None:
    source = tmp_path / "0001.mp4"
    sha = await asyncio.to_thread(write_random, source, 1 * MiB)
    key = "gala/box/cam1/2026-11-26/0001.mp4"
    uploader = await compat_uploaders()
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id, VERIFY_LIMIT)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    facts = await asyncio.to_thread(minio_client(s3_compat).stat_object, BUCKET, key)
    assert facts.etag == await asyncio.to_thread(whole_md5, source)
    assert facts.metadata is not None
    assert facts.metadata[SHA256_HEADER] == sha
    assert await asyncio.to_thread(object_sha256, s3_compat, key) == sha


async def test_multipart_file_verifies_once(
    tmp_path: Path, s3_compat: RcloneS3Server, compat_uploaders: UploaderFactory
) -> None:
    source = tmp_path / "segment.mp4"
    sha = await asyncio.to_thread(write_random, source, 12 * MiB)
    key = "gala/box/cam1/2026-11-26/segment.mp4"
    uploader = await compat_uploaders(part_size=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id, VERIFY_LIMIT)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    assert len(uploader.journal.parts(file_id)) == 3
    assert await asyncio.to_thread(object_sha256, s3_compat, key) == sha
    facts = await asyncio.to_thread(minio_client(s3_compat).stat_object, BUCKET, key)
    assert facts.metadata is not None
    assert facts.metadata[SHA256_HEADER] == sha
    kinds = [event.kind for event in uploader.journal.events(file_id=file_id)]
    assert "upload_lost" not in kinds, "a completed upload was started over"
    assert kinds[0] == "verified"
    assert kinds.count("part_done") == 3


async def test_restart_mid_multipart_starts_the_file_over(
    tmp_path: Path, s3_compat: RcloneS3Server, compat_uploaders: UploaderFactory
) -> None:
    """rclone forgets the upload on restart and says NoSuchUpload as text/xml: the file must
    start over, not retry the forgotten upload id for ever."""
    source = tmp_path / "segment.mp4"
    sha = await asyncio.to_thread(write_random, source, 12 * MiB)
    key = "gala/box/cam1/2026-11-26/restart.mp4"
    uploader = await compat_uploaders(part_size=5 * MiB, parallel_parts=1, bandwidth_limit=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await eventually_in_thread(lambda: len(uploader.journal.parts(file_id)) >= 1)
    forgotten = (await asyncio.to_thread(uploader.journal.require, file_id)).upload_id
    await asyncio.to_thread(s3_compat.stop)
    await asyncio.to_thread(s3_compat.start)
    await finish(uploader, file_id, VERIFY_LIMIT)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    assert record.upload_id != forgotten
    lost = [e for e in uploader.journal.events(file_id=file_id) if e.kind == "upload_lost"]
    assert len(lost) == 1
    assert "no longer knows this upload" in lost[0].detail
    assert await asyncio.to_thread(object_sha256, s3_compat, key) == sha


async def test_metadata_lost_in_a_restart_verifies_by_the_etag(
    tmp_path: Path,
    s3_compat: RcloneS3Server,
    compat_uploaders: UploaderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Completed, then rclone restarts before the HEAD: the object has no x-amz-meta-sha256 any
    more, but its size and whole-file MD5 are those of the bytes sent, whose sha256 was checked."""
    source = tmp_path / "segment.mp4"
    sha = await asyncio.to_thread(write_random, source, 12 * MiB)
    key = "gala/box/cam1/2026-11-26/forgotten-metadata.mp4"
    uploader = await compat_uploaders(part_size=5 * MiB)
    real_stat = uploader.store.stat
    restarts: list[str] = []
    stats: list[str] = []

    def stat_after_a_restart(key: str) -> ObjectFacts | None:
        stats.append(key)
        # Once, between completion and verification: the HEADs before the create and before the
        # completion (is the key free?) come first.
        if len(stats) == 3:
            restarts.append(key)
            s3_compat.stop()
            s3_compat.start()
        return real_stat(key)

    uploader.store.stat = stat_after_a_restart  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, "edged")
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id, VERIFY_LIMIT)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    assert restarts == [key]
    kinds = [event.kind for event in uploader.journal.events(file_id=file_id)]
    assert "upload_lost" not in kinds, "a verified object was sent again"
    assert kinds.count("part_done") == 3
    assert f"{key} has no sha256 metadata upstream" in caplog.text
    facts = await asyncio.to_thread(minio_client(s3_compat).stat_object, BUCKET, key)
    assert not (facts.metadata or {}).get(SHA256_HEADER)  # the premise: rclone forgot it
    assert facts.etag == await asyncio.to_thread(whole_md5, source)
    assert await asyncio.to_thread(object_sha256, s3_compat, key) == sha


def test_stop_and_start_keep_the_objects(any_s3: S3Endpoint) -> None:
    """The outage both servers give the tests: same port, the stored objects still there."""
    client = minio_client(any_s3)
    client.put_object(BUCKET, "gala/box/kept.bin", io.BytesIO(b"kept" * 1000), 4000)
    endpoint = any_s3.endpoint
    any_s3.stop()
    any_s3.start()
    assert any_s3.endpoint == endpoint
    response = client.get_object(BUCKET, "gala/box/kept.bin")
    try:
        assert response.read() == b"kept" * 1000
    finally:
        response.close()
        response.release_conn()


def test_moto_serves_from_a_child_process(any_s3: S3Endpoint) -> None:
    """No moto server thread in the tests' process: copying parts it would hold this process's
    GIL and keep an upload test's event loop from running past the slow-callback bound."""
    serving = [thread.name for thread in threading.enumerate() if "serve_forever" in thread.name]
    assert serving == []

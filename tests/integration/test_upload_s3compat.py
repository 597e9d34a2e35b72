"""The uploader against a second S3-compatible server whose multipart ETag is not moto's.

rclone's `serve s3` (tests/s3compat.py) answers CompleteMultipartUpload with md5-of-part-md5s-N
but HEAD with the plain MD5 of the whole object. The S3 API calls the ETag opaque: a file must
verify by what the object is, and must not be sent again and again (issue 12, item 7).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from edged.upload.policy import multipart_etag
from edged.upload.s3 import SHA256_HEADER
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
    write_random,
)
from tests.s3compat import RcloneS3Server, S3Endpoint

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
    sha = write_random(source, 1 * MiB)
    key = "gala/box/cam1/2026-11-26/0001.mp4"
    uploader = compat_uploaders()
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id, VERIFY_LIMIT)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    facts = minio_client(s3_compat).stat_object(BUCKET, key)
    assert facts.etag == md5_hex(source.read_bytes())
    assert facts.metadata is not None
    assert facts.metadata[SHA256_HEADER] == sha
    assert object_sha256(s3_compat, key) == sha


async def test_multipart_file_verifies_once(
    tmp_path: Path, s3_compat: RcloneS3Server, compat_uploaders: UploaderFactory
) -> None:
    source = tmp_path / "segment.mp4"
    sha = write_random(source, 12 * MiB)
    key = "gala/box/cam1/2026-11-26/segment.mp4"
    uploader = compat_uploaders(part_size=5 * MiB)
    await uploader.start()
    file_id = await uploader.enqueue(source, key)
    await finish(uploader, file_id, VERIFY_LIMIT)

    record = uploader.journal.require(file_id)
    assert record.state is FileState.DONE, record.last_error
    assert len(uploader.journal.parts(file_id)) == 3
    assert object_sha256(s3_compat, key) == sha
    facts = minio_client(s3_compat).stat_object(BUCKET, key)
    assert facts.metadata is not None
    assert facts.metadata[SHA256_HEADER] == sha
    kinds = [event.kind for event in uploader.journal.events(file_id=file_id)]
    assert "upload_lost" not in kinds, "a completed upload was started over"
    assert kinds[0] == "verified"
    assert kinds.count("part_done") == 3


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

"""Fixtures for the uploader tests: a real S3 server, a bucket, files with known content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from minio import Minio
from prometheus_client import CollectorRegistry

from edged.metrics import UploadMetrics
from edged.upload.journal import Journal
from edged.upload.s3 import S3Store
from edged.upload.uploader import Uploader, UploaderSettings
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET = "edged"
MiB = 1024 * 1024


def write_random(path: Path, size: int) -> str:
    """A file of `size` random bytes; its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            handle.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def minio_client(server: S3Server) -> Minio:
    return Minio(
        server.endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region="us-east-1",
    )


def object_sha256(server: S3Server, key: str) -> str:
    response = minio_client(server).get_object(BUCKET, key)
    try:
        return hashlib.sha256(response.read()).hexdigest()
    finally:
        response.close()
        response.release_conn()


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    client = minio_client(server)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    yield server
    server.stop()


def upstream_settings(directory: Path, server: S3Server) -> dict[str, object]:
    """The [upstream] table of a daemon config for `server`, its secret file written 0600."""
    secret = directory / "secret"
    secret.write_text(SECRET_KEY)
    secret.chmod(0o600)
    return {
        "endpoint": server.endpoint,
        "secure": False,
        "bucket": BUCKET,
        "access_key": ACCESS_KEY,
        "secret_key_file": str(secret),
    }


def make_store(server: S3Server, access_key: str = ACCESS_KEY, sts_role_arn: str = "") -> S3Store:
    return S3Store(
        endpoint=server.endpoint,
        secure=False,
        region="us-east-1",
        bucket=BUCKET,
        access_key=access_key,
        secret_key=SECRET_KEY,
        sts_role_arn=sts_role_arn,
        policy_prefix="gala/",
        connections=4,
        read_timeout=10,
    )


class UploaderFactory:
    def __init__(self, tmp_path: Path, server: S3Server) -> None:
        self.tmp_path = tmp_path
        self.server = server
        self.made: list[Uploader] = []

    def __call__(
        self,
        *,
        part_size: int = 5 * MiB,
        parallel_parts: int = 2,
        bandwidth_limit: int = 0,
        access_key: str = ACCESS_KEY,
        stale_prefix: str = "",
        sts_role_arn: str = "",
        journal_pages: int | None = None,
    ) -> Uploader:
        uploader = Uploader(
            Journal(self.tmp_path / f"journal-{len(self.made)}.sqlite3", max_pages=journal_pages),
            make_store(self.server, access_key, sts_role_arn),
            UploaderSettings(
                part_size=part_size,
                parallel_parts=parallel_parts,
                bandwidth_limit=bandwidth_limit,
                stale_prefix=stale_prefix,
            ),
            UploadMetrics(CollectorRegistry()),
        )
        self.made.append(uploader)
        return uploader


@pytest.fixture
async def uploaders(tmp_path: Path, s3: S3Server) -> AsyncIterator[UploaderFactory]:
    factory = UploaderFactory(tmp_path, s3)
    yield factory
    for uploader in factory.made:
        await uploader.stop()
        uploader.journal.close()

"""Fixtures for the uploader tests: real S3 servers, a bucket, files with known content.

`moto` is moto's server in a child process (tests/s3server.py MotoProcess: its threads copying
parts never take this process's GIL from the test's event loop; its fault hooks and tallies are
asked of the child); `s3` is moto's server in this process, for tests without an event loop of
their own or whose hook must run here; `s3_compat` is rclone's `serve s3`, whose multipart ETag
format differs (tests/s3compat.py); `any_s3` runs a test against `moto` and `s3_compat` in turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import urllib3
from minio import Minio
from prometheus_client import CollectorRegistry

from edged.metrics import UploadMetrics
from edged.upload.journal import Journal
from edged.upload.s3 import S3Store
from edged.upload.state import FileState
from edged.upload.uploader import Uploader, UploaderSettings
from tests.s3compat import RcloneS3Server, S3Endpoint
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoProcess, S3Server
from tests.support import eventually_in_thread

BUCKET = "edged"
MiB = 1024 * 1024
S3_SERVERS = ("moto", "rclone")  # the params of `any_s3`
AnyServer = TypeVar("AnyServer", bound=S3Endpoint)


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


def whole_md5(path: Path) -> str:
    """The MD5 of the file's bytes (a single PUT's ETag)."""
    return hashlib.md5(path.read_bytes()).hexdigest()


async def finish(uploader: Uploader, file_id: int, limit: float = 120.0) -> None:
    """Until the file is done or failed."""
    # In a thread: the journal's lock is held by the uploader's threads through each fsync.
    await eventually_in_thread(
        lambda: uploader.journal.require(file_id).state in (FileState.DONE, FileState.FAILED),
        limit,
        f"upload {file_id} done or failed",
    )


def minio_client(server: S3Endpoint) -> Minio:
    return Minio(
        server.endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region="us-east-1",
    )


def object_sha256(server: S3Endpoint, key: str) -> str:
    response = minio_client(server).get_object(BUCKET, key)
    try:
        return hashlib.sha256(response.read()).hexdigest()
    finally:
        response.close()
        response.release_conn()


def forget_moto_state(server: S3Endpoint) -> None:
    """moto keeps its buckets in this process, across servers: each test starts from none."""
    response = urllib3.request("POST", f"http://{server.endpoint}/moto-api/reset", timeout=10)
    if response.status != 200:
        raise RuntimeError(f"moto reset answered {response.status}: {response.data[:200]!r}")


def serve_with_bucket(server: AnyServer) -> Iterator[AnyServer]:
    """Start `server`, create the bucket, hand it over, stop it (end a MotoProcess's child)."""
    server.start()
    try:
        if isinstance(server, S3Server):
            forget_moto_state(server)
        client = minio_client(server)
        if not client.bucket_exists(BUCKET):
            client.make_bucket(BUCKET)
        yield server
    finally:
        if isinstance(server, MotoProcess):
            server.close()
        else:
            server.stop()


@pytest.fixture
def s3() -> Iterator[S3Server]:
    yield from serve_with_bucket(S3Server())


def reset_with_bucket(server: MotoProcess) -> MotoProcess:
    """The session's moto child as a new one: serving, no hook set, no tally, only the bucket."""
    server.reset()
    forget_moto_state(server)
    minio_client(server).make_bucket(BUCKET)
    return server


@pytest.fixture
def moto(moto_child: MotoProcess) -> MotoProcess:
    """moto's server in a child process: the session's one (tests/integration/conftest.py),
    reset for this test."""
    return reset_with_bucket(moto_child)


@pytest.fixture
def s3_compat(tmp_path: Path) -> Iterator[RcloneS3Server]:
    yield from serve_with_bucket(RcloneS3Server(tmp_path / "rclone-s3"))


@pytest.fixture(params=S3_SERVERS)
def any_s3(
    request: pytest.FixtureRequest, tmp_path: Path, moto_child: MotoProcess
) -> Iterator[S3Endpoint]:
    """moto's server (the session's child, reset), then rclone's: the same test against both
    multipart ETag formats."""
    if request.param == "moto":
        yield reset_with_bucket(moto_child)
    else:
        yield from serve_with_bucket(RcloneS3Server(tmp_path / "rclone-s3"))


def upstream_settings(directory: Path, server: S3Endpoint) -> dict[str, object]:
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


def make_store(server: S3Endpoint, access_key: str = ACCESS_KEY, sts_role_arn: str = "") -> S3Store:
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
    def __init__(self, tmp_path: Path, server: S3Endpoint) -> None:
        self.tmp_path = tmp_path
        self.server = server
        self.made: list[Uploader] = []
        self.registries: dict[Uploader, CollectorRegistry] = {}

    async def __call__(
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
        """A new uploader; its journal is made in a thread (SQLite's fsyncs held the loop)."""
        path = self.tmp_path / f"journal-{len(self.made)}.sqlite3"
        journal = await asyncio.to_thread(Journal, path, max_pages=journal_pages)
        registry = CollectorRegistry()
        uploader = Uploader(
            journal,
            make_store(self.server, access_key, sts_role_arn),
            UploaderSettings(
                part_size=part_size,
                parallel_parts=parallel_parts,
                bandwidth_limit=bandwidth_limit,
                stale_prefix=stale_prefix,
            ),
            UploadMetrics(registry),
        )
        self.made.append(uploader)
        self.registries[uploader] = registry
        return uploader

    def metric(self, uploader: Uploader, name: str, **labels: str) -> float | None:
        """A sample of `uploader`'s metrics, as Prometheus would scrape it."""
        return self.registries[uploader].get_sample_value(name, labels)

    async def close(self) -> None:
        """Stop every uploader made and close its journal."""
        for uploader in self.made:
            await uploader.stop()
            await asyncio.to_thread(uploader.journal.close)


@pytest.fixture
async def uploaders(tmp_path: Path, moto: MotoProcess) -> AsyncIterator[UploaderFactory]:
    """Uploaders whose upstream is `moto`."""
    factory = UploaderFactory(tmp_path, moto)
    yield factory
    await factory.close()


@pytest.fixture
async def compat_uploaders(
    tmp_path: Path, s3_compat: RcloneS3Server
) -> AsyncIterator[UploaderFactory]:
    """Uploaders whose upstream is `s3_compat`."""
    factory = UploaderFactory(tmp_path, s3_compat)
    yield factory
    await factory.close()


@pytest.fixture
async def any_uploaders(tmp_path: Path, any_s3: S3Endpoint) -> AsyncIterator[UploaderFactory]:
    """Uploaders whose upstream is `any_s3` (each of the two servers in turn)."""
    factory = UploaderFactory(tmp_path, any_s3)
    yield factory
    await factory.close()

"""The uploader under faults found by trying it (issue 12): bit rot, a broken row, odd ETags, an
outage with new files arriving. Each failed on the code before its fix.

Bit rot is refused on both servers (`any_s3`: moto's and rclone's `serve s3`). The others stay on
moto: a folder become a file and a broken row are the worker's and the supervisor's business and
never reach the server; the ETag formats are injected with moto's `head_etag` hook (rclone's own
whole-MD5 ETag is tested in test_upload_s3compat.py); the probe schedule runs with the server
stopped and its port taken by a refuser.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from edged.supervise import Supervisor
from edged.upload.state import FileState
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
from tests.s3server import MotoProcess
from tests.support import eventually

pytestmark = pytest.mark.integration
__all__ = ["any_s3", "any_uploaders", "moto", "uploaders"]  # fixtures


def flip_bytes_in_place(path: Path, offset: int, count: int) -> None:
    """Change bytes without changing size or mtime: what a failing SD card does."""
    facts = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        old = handle.read(count)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in old))
    os.utime(path, ns=(facts.st_atime_ns, facts.st_mtime_ns))


def object_exists(server: S3Endpoint, key: str) -> bool:
    return any(o.object_name == key for o in minio_client(server).list_objects(BUCKET, key))


@pytest.mark.parametrize("size", [12 * MiB, 3 * MiB], ids=["multipart", "single-put"])
async def test_bytes_changed_in_place_are_refused_not_verified(
    tmp_path: Path, any_s3: S3Endpoint, any_uploaders: UploaderFactory, size: int
) -> None:
    source = tmp_path / "a.mp4"
    await asyncio.to_thread(write_random, source, size)
    uploader = await any_uploaders(part_size=5 * MiB)
    # queued during an outage, changed on the card before the link comes back
    await asyncio.to_thread(any_s3.stop)
    file_id = await uploader.enqueue(source, "e/n/s/d/a.mp4")
    flip_bytes_in_place(source, size - 7 * MiB // 2 if size > 5 * MiB else 1000, 64)
    await asyncio.to_thread(any_s3.start)
    await uploader.start()
    await finish(uploader, file_id)
    row = uploader.journal.require(file_id)
    assert row.state is FileState.FAILED
    assert "bit rot" in row.last_error
    assert not await asyncio.to_thread(object_exists, any_s3, "e/n/s/d/a.mp4")


async def test_a_file_whose_folder_became_a_file_fails_alone(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    broken, good = folder / "a.mp4", tmp_path / "b.mp4"
    await asyncio.to_thread(write_random, broken, 1 * MiB)
    good_sha = await asyncio.to_thread(write_random, good, 1 * MiB)
    uploader = await uploaders()
    broken_id = await uploader.enqueue(broken, "e/n/s/d/a.mp4")
    good_id = await uploader.enqueue(good, "e/n/s/d/b.mp4")
    shutil.rmtree(folder)
    folder.write_text("not a folder any more")
    await uploader.start()
    await finish(uploader, broken_id)
    await finish(uploader, good_id)
    assert uploader.journal.require(broken_id).state is FileState.FAILED
    assert "cannot be read" in uploader.journal.require(broken_id).last_error
    assert uploader.journal.require(good_id).state is FileState.DONE
    assert await asyncio.to_thread(object_sha256, moto, "e/n/s/d/b.mp4") == good_sha


async def test_a_row_that_breaks_the_worker_is_set_aside_and_counted(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import CollectorRegistry, Counter

    good = tmp_path / "b.mp4"
    good_sha = await asyncio.to_thread(write_random, good, 1 * MiB)
    uploader = await uploaders()
    # A damaged journal row: a path no system call accepts (ValueError, not an OSError).
    bad_id = await asyncio.to_thread(
        uploader.journal.enqueue,
        path=str(tmp_path / "bad\x00.mp4"),
        key="e/n/s/d/bad.mp4",
        size=1,
        mtime_ns=0,
        sha256="0" * 64,
        priority=0,
        kind="file",
        metadata={},
        now=0.0,
    )
    good_id = await uploader.enqueue(good, "e/n/s/d/b.mp4")
    registry = CollectorRegistry()
    restarts = Counter("edged_task_restarts", "test", ["task"], registry=registry)
    supervisor = Supervisor(restarts, minimum=0.05)
    caplog.set_level(logging.ERROR, "edged")
    await uploader.start(supervisor)
    try:
        await finish(uploader, good_id)
        bad = uploader.journal.require(bad_id)
        assert bad.state is FileState.FAILED
        assert "broke the upload worker 3 times: ValueError" in bad.last_error
        assert uploader.journal.require(good_id).state is FileState.DONE
        assert await asyncio.to_thread(object_sha256, moto, "e/n/s/d/b.mp4") == good_sha
        assert registry.get_sample_value("edged_task_restarts_total", {"task": "uploader"}) == 3
        assert uploader.working
        assert caplog.text.count("Traceback") == 1  # the first of the streak, then one line each
    finally:
        await uploader.stop()
        await supervisor.stop()


@pytest.mark.parametrize("style", ["whole-md5", "opaque"])
async def test_etag_formats_verify_or_fail_bounded(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory, style: str
) -> None:
    source = tmp_path / "a.mp4"
    sha = await asyncio.to_thread(write_random, source, 12 * MiB)
    md5 = await asyncio.to_thread(whole_md5, source)
    # A server that gives a multipart object the MD5 of its bytes, or an ETag of neither kind.
    etag = f'"{md5}"' if style == "whole-md5" else '"0badc0de-7"'
    await asyncio.to_thread(moto.configure, head_etag=etag)
    uploader = await uploaders(part_size=5 * MiB)
    file_id = await uploader.enqueue(source, "e/n/s/d/a.mp4")
    await uploader.start()
    await finish(uploader, file_id, limit=300)
    row = uploader.journal.require(file_id)
    puts = await asyncio.to_thread(moto.total_part_puts, "/a.mp4")
    if style == "whole-md5":
        assert row.state is FileState.DONE
        assert await asyncio.to_thread(object_sha256, moto, "e/n/s/d/a.mp4") == sha
        assert puts == 3
    else:
        assert row.state is FileState.FAILED
        assert "started over 5 times" in row.last_error
        assert puts == 5 * 3  # bounded: never a loop for ever


class CountingRefuser:
    """An upstream that accepts TCP connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        self._socket.close()
        self._thread.join(timeout=10)


async def test_new_files_during_an_outage_do_not_hurry_the_probe(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Offline, the uploader waits out its probe schedule: new files do not cut the wait short
    (before the fix every file probed at once); an operator's wake() does. Every wait is
    stretched to a day here, so a probe can only come from something cutting a wait short."""
    refuser = CountingRefuser()
    await asyncio.to_thread(moto.stop)
    moto.port = refuser.port  # the uploader's endpoint now answers with closed connections
    uploader = await uploaders()
    probes: list[int] = []
    real_probe = uploader.store.probe

    def counting_probe() -> None:
        probes.append(1)
        real_probe()

    uploader.store.probe = counting_probe  # type: ignore[method-assign]
    waits: list[float] = []
    real_sleep = uploader._sleep

    async def a_day_each(seconds: float, event: asyncio.Event | None = None) -> None:
        waits.append(seconds)
        await real_sleep(86400.0, event)

    uploader._sleep = a_day_each  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING)
    try:
        await uploader.start()
        await eventually(lambda: len(waits) == 1)  # probed once, refused, waiting for the next
        assert "upstream unavailable" in caplog.text
        for index in range(20):  # a segment closing every few seconds, squeezed together
            source = tmp_path / f"{index}.mp4"
            await asyncio.to_thread(write_random, source, 64 * 1024)
            await uploader.enqueue(source, f"e/n/s/d/{index}.mp4")
        urllib3_warnings = [r for r in caplog.records if r.name.startswith("urllib3")]
        assert len(urllib3_warnings) <= 1
        uploader.wake()  # the operator's request: one probe now
        await eventually(lambda: len(waits) >= 2)
        assert len(probes) == 2, "new files hurried the probe"
        assert len(waits) == 2
    finally:
        await uploader.stop()
        await asyncio.to_thread(refuser.close)

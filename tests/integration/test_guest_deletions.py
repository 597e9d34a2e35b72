"""A guest deleted at their request (review of #16, finding 2), with a real uploader and S3
server (moto): one never sent leaves no trace on the box and nothing goes upstream about them;
one already sent gets a deletion note upstream, which then leaves the box too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import GuestConfig
from edged.guest.desk import GUESTS_DIR, GuestDesk
from edged.guest.signups import Signup
from edged.metrics import GuestMetrics
from edged.supervise import Supervisor
from edged.upload.naming import ObjectNaming
from edged.upload.uploader import Uploader
from tests.integration.upload_support import BUCKET, UploaderFactory, minio_client
from tests.integration.upload_support import moto as moto  # the fixture
from tests.integration.upload_support import uploaders as uploaders  # the fixture
from tests.s3server import MotoProcess
from tests.support import eventually_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ADA = Signup("ada@example.org", "Ada Lovelace", "", "a" * 24)
BOB = Signup("bob@example.org", "", "", "b" * 24)


def make_desk(data_dir: Path, uploader: Uploader) -> GuestDesk:
    """The desk as the daemon makes it (blocking: SQLite, the secret)."""
    return GuestDesk(
        data_dir,
        GuestConfig(),
        event=lambda: "gala",
        signups=GuestMetrics(CollectorRegistry()).signups,
        uploader=uploader,
        naming=lambda: ObjectNaming(prefix="", event="gala", node="box"),
    )


@pytest.fixture
async def desk(
    tmp_path: Path, moto: MotoProcess, uploaders: UploaderFactory
) -> AsyncIterator[GuestDesk]:
    uploader = await uploaders()
    await uploader.start()
    desk = await asyncio.to_thread(make_desk, tmp_path, uploader)
    try:
        yield desk
    finally:
        await desk.close()


def bucket_rows(server: MotoProcess) -> list[dict[str, object]]:
    """Every line of every guest batch in the bucket (blocking)."""
    client = minio_client(server)
    rows = []
    for item in client.list_objects(BUCKET, recursive=True):
        response = client.get_object(BUCKET, str(item.object_name))
        try:
            rows += [json.loads(line) for line in response.read().decode().splitlines()]
        finally:
            response.close()
            response.release_conn()
    return rows


def traces(directory: Path, *data: bytes) -> list[str]:
    """The files under the guests' folder (database, -wal, -shm, batches) holding any of `data`
    (blocking)."""
    return [
        path.name
        for path in sorted((directory / GUESTS_DIR).rglob("*"))
        if path.is_file() and any(item in path.read_bytes() for item in data)
    ]


def deletion_notes(desk: GuestDesk) -> int:
    """The deletion notes kept on the box (blocking)."""
    return int(desk.book._query("SELECT count(*) FROM deletions")[0][0])


async def test_a_guest_deleted_before_being_sent_leaves_no_trace_here_or_upstream(
    tmp_path: Path, moto: MotoProcess, desk: GuestDesk
) -> None:
    supervisor = Supervisor(None)
    try:
        await desk.sign_up(ADA)  # the sync not started yet: Ada's row is in no batch
        assert (await desk.delete(ADA.email)).rows == 1
        assert await asyncio.to_thread(deletion_notes, desk) == 0
        assert await asyncio.to_thread(traces, tmp_path, b"ada@example.org", b"Lovelace") == []
        desk.start(supervisor)
        await desk.sign_up(BOB)
        await eventually_in_thread(
            lambda: any(row["email"] == BOB.email for row in bucket_rows(moto)),
            60,
            "Bob's sign-up in the bucket",
        )
        rows = await asyncio.to_thread(bucket_rows, moto)
        assert [(row["type"], row["email"]) for row in rows] == [("signup", BOB.email)]
    finally:
        await supervisor.stop()


async def test_a_sent_guests_deletion_note_goes_upstream_then_leaves_the_box(
    tmp_path: Path, moto: MotoProcess, desk: GuestDesk
) -> None:
    supervisor = Supervisor(None)
    desk.start(supervisor)
    batches = tmp_path / GUESTS_DIR / "batches"
    try:
        await desk.sign_up(ADA)
        await eventually_in_thread(
            lambda: bucket_rows(moto) and not any(batches.iterdir()),
            60,
            "Ada's sign-up in the bucket, its batch file gone",
        )
        assert (await desk.delete(ADA.email)).rows == 1
        await eventually_in_thread(
            lambda: any(row["type"] == "deletion" for row in bucket_rows(moto)),
            60,
            "the deletion note in the bucket",
        )
        await eventually_in_thread(  # the note's batch verified: mark_removed drops it
            lambda: deletion_notes(desk) == 0,
            60,
            "no deletion note left on the box",
        )
        assert await asyncio.to_thread(traces, tmp_path, b"ada@example.org", b"Lovelace") == []
        rows = await asyncio.to_thread(bucket_rows, moto)
        assert sorted((row["type"], row["email"]) for row in rows) == [
            ("deletion", ADA.email),
            ("signup", ADA.email),
        ]
    finally:
        await supervisor.stop()

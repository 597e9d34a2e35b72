"""The SQLite journal: ordering, idempotence, state changes, a full disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.upload.journal import SCHEMA, Journal, JournalError, PartRecord
from edged.upload.policy import queue_order
from edged.upload.state import FileState, InvalidTransition, UploadEvent


def add(
    journal: Journal,
    key: str,
    *,
    kind: str = "recording",
    now: float = 0.0,
    after_id: int | None = None,
) -> int:
    return journal.enqueue(
        path=f"/spool/{key}",
        key=key,
        size=10,
        mtime_ns=1,
        sha256="ab",
        priority=0,
        kind=kind,
        metadata={},
        now=now,
        after_id=after_id,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal(tmp_path / "j.sqlite3")
    yield opened
    opened.close()


def test_pragmas(journal: Journal) -> None:
    assert journal._query("PRAGMA journal_mode")[0][0] == "wal"
    assert journal._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_enqueue_is_idempotent_while_pending(journal: Journal) -> None:
    first = add(journal, "a")
    assert add(journal, "a") == first
    assert journal.find_pending("a") is not None


def test_order_class_then_age(journal: Journal) -> None:
    old = add(journal, "old", now=1)
    new = add(journal, "new", now=2)
    clip = add(journal, "clip", kind="clip", now=3)
    assert journal.next_ready(10).id == clip  # type: ignore[union-attr]
    journal.apply(clip, UploadEvent.FATAL_ERROR, detail="x")
    assert journal.next_ready(10).id == old  # type: ignore[union-attr]
    assert journal.next_ready(10, newest_first=True).id == new  # type: ignore[union-attr]


def test_sidecar_waits_for_its_segment(journal: Journal) -> None:
    segment = add(journal, "seg", now=2)
    sidecar = add(journal, "seg.json", kind="sidecar", now=1, after_id=segment)
    assert journal.next_ready(10).id == segment  # type: ignore[union-attr]
    for event in (
        UploadEvent.START,
        UploadEvent.PARTS_SENT,
        UploadEvent.COMPLETED,
        UploadEvent.VERIFIED,
    ):
        journal.apply(segment, event)
    assert journal.next_ready(10).id == sidecar  # type: ignore[union-attr]
    assert journal.is_done("/spool/seg")


def test_retry_time_is_respected(journal: Journal) -> None:
    file_id = add(journal, "a")
    journal.apply(file_id, UploadEvent.START)
    journal.apply(file_id, UploadEvent.RETRYABLE_ERROR, detail="503", retry_at=50.0)
    assert journal.next_ready(49.0) is None
    assert journal.next_attempt_time() == 50.0
    record = journal.next_ready(50.0)
    assert record is not None
    assert record.state is FileState.UPLOADING
    assert record.attempts == 1
    assert record.last_error == "503"


def test_upload_lost_forgets_the_upload(journal: Journal) -> None:
    file_id = add(journal, "a")
    journal.apply(file_id, UploadEvent.START)
    journal.set_upload_id(file_id, "u1", 5)
    journal.record_part(file_id, PartRecord(1, 5, "m", "e"))
    journal.apply(file_id, UploadEvent.UPLOAD_LOST, detail="NoSuchUpload")
    record = journal.require(file_id)
    assert (record.state, record.upload_id) == (FileState.QUEUED, "")
    assert journal.parts(file_id) == []
    assert [e.kind for e in journal.events(file_id=file_id)][:2] == ["upload_lost", "part_done"]


def test_invalid_event_changes_nothing(journal: Journal) -> None:
    file_id = add(journal, "a")
    with pytest.raises(InvalidTransition):
        journal.apply(file_id, UploadEvent.VERIFIED)
    assert journal.require(file_id).state is FileState.QUEUED


def test_events_are_pruned(journal: Journal) -> None:
    add(journal, "a")
    assert journal.prune_events(before=0.0) == 0
    assert journal.prune_events(before=10**12) == 1
    assert journal.events() == []


def test_full_journal_raises_a_clear_error(tmp_path: Path) -> None:
    small = Journal(tmp_path / "small.sqlite3", max_pages=12)
    try:
        added = 0
        with pytest.raises(JournalError, match="database or disk is full"):  # noqa: PT012
            while added < 10_000:
                add(small, f"file-{added:05d}-" + "x" * 200)
                added += 1
        assert added > 0
        assert small.find_pending("file-00000-" + "x" * 200) is not None
    finally:
        small.close()


def test_a_journal_written_before_classes_goes_by_class(tmp_path: Path) -> None:
    """Rows queued by the uploader before #20 (priority 0 clip, 10 recording and sidecar, 20 any
    other file) are ordered by their kind's class; their priority numbers are not read."""
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    rows = [  # id, key, priority, kind, created, state, after_id
        (1, "a.mp4", 10, "recording", 1.0, "uploading", None),
        (2, "a.json", 10, "sidecar", 2.0, "queued", 1),
        (3, "b.mp4", 10, "recording", 3.0, "queued", None),
        (4, "notes.txt", 20, "file", 0.5, "queued", None),
        (5, "c.mp4", 0, "clip", 4.0, "queued", None),
    ]
    old.executemany(
        "INSERT INTO files (id, path, key, size, mtime_ns, sha256, priority, kind, created, state,"
        " after_id) VALUES (?, '/spool/' || ?2, ?2, 10, 1, 'ab', ?, ?, ?, ?, ?)",
        rows,
    )
    old.execute("INSERT INTO parts VALUES (1, 1, 5, 'm', 'e')")
    old.commit()
    old.close()
    journal = Journal(path)
    try:
        files, blocked = journal.queue()
        assert blocked == {2}
        order = [record.id for record in queue_order(files, blocked=blocked)]
        assert order == [5, 4, 1, 2, 3]  # the clip; then, oldest first, the other file
        assert journal.next_ready(10).id == 5  # type: ignore[union-attr]
        journal.apply(5, UploadEvent.START)
        journal.apply(5, UploadEvent.FATAL_ERROR, detail="x")
        assert journal.next_ready(10).id == 4  # type: ignore[union-attr]
        assert journal.require(1).state is FileState.UPLOADING
        assert journal.parts(1) == [PartRecord(1, 5, "m", "e")]
    finally:
        journal.close()

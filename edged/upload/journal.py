"""The upload journal: SQLite (WAL, synchronous=FULL) in the data dir, the source of truth.

Blocking: the scheduler calls it through `asyncio.to_thread`. One connection, guarded by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.errors import EdgedError
from edged.sqlite import immediate_transaction
from edged.upload.classes import UploadClass
from edged.upload.policy import EVERY_CLASS, next_due, pick_next
from edged.upload.state import PENDING, FileState, UploadEvent, next_state

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    priority INTEGER NOT NULL,  -- informational: the order reads kind and metadata (policy.py)
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    upload_id TEXT NOT NULL DEFAULT '',
    part_size INTEGER NOT NULL DEFAULT 0,
    etag TEXT NOT NULL DEFAULT '',
    after_id INTEGER REFERENCES files(id),
    metadata TEXT NOT NULL DEFAULT '{}',
    done_at REAL
);
CREATE INDEX IF NOT EXISTS files_state ON files(state, next_attempt);
CREATE TABLE IF NOT EXISTS parts (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (file_id, number)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    file_id INTEGER,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
"""


class JournalError(EdgedError):
    """The journal cannot be written (disk full, file damaged); uploads wait, footage stays."""


@dataclass(frozen=True)
class PartRecord:
    number: int
    size: int
    md5: str
    etag: str


@dataclass(frozen=True)
class FileRecord:
    id: int
    path: str
    key: str
    size: int
    mtime_ns: int
    sha256: str
    priority: int
    kind: str
    created: float
    state: FileState
    attempts: int
    next_attempt: float
    last_error: str
    upload_id: str
    part_size: int
    etag: str
    after_id: int | None
    metadata: dict[str, str] = field(default_factory=dict)
    done_at: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> FileRecord:
        values = dict(row)
        values["state"] = FileState(values["state"])
        values["metadata"] = json.loads(values["metadata"])
        return cls(**values)


@dataclass(frozen=True)
class EventRecord:
    at: float
    file_id: int | None
    kind: str
    detail: str


_PENDING = tuple(state.value for state in PENDING)
# Built from the enum, never from input; the states go in as parameters all the same.
_IN_PENDING = f"state IN ({','.join('?' * len(_PENDING))})"
ERROR_EVENTS = frozenset(
    {UploadEvent.RETRYABLE_ERROR, UploadEvent.UPLOAD_LOST, UploadEvent.FATAL_ERROR}
)


class Journal:
    """Files to upload, their acknowledged parts, and the event log."""

    def __init__(self, path: Path, *, max_pages: int | None = None) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if max_pages is not None:  # tests: a journal that fills up like a full disk
                self._db.execute(f"PRAGMA max_page_count={int(max_pages)}")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as error:
            raise JournalError(f"upload journal {path} cannot be opened: {error}") from error
        self._lock = threading.Lock()
        last = self._query("SELECT COALESCE(MAX(id), 0) AS n FROM events")
        self.last_event_id = int(last[0]["n"])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with immediate_transaction(self._db, self._lock) as db:
                yield db
        except sqlite3.Error as error:
            raise JournalError(f"upload journal {self.path}: {error}") from error

    def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise JournalError(f"upload journal {self.path}: {error}") from error

    def _log(
        self, db: sqlite3.Connection, file_id: int | None, kind: str, detail: str = ""
    ) -> None:
        cursor = db.execute(
            "INSERT INTO events (at, file_id, kind, detail) VALUES (?, ?, ?, ?)",
            (time.time(), file_id, kind, detail),
        )
        # Read without the lock by the clock watch: an int, and only ever larger.
        self.last_event_id = max(self.last_event_id, int(cursor.lastrowid or 0))

    def enqueue(
        self,
        *,
        path: str,
        key: str,
        size: int,
        mtime_ns: int,
        sha256: str,
        priority: int,
        kind: str,
        metadata: dict[str, str],
        now: float,
        after_id: int | None = None,
    ) -> int:
        """Add a file; a file already pending under the same key keeps its row (idempotent)."""
        with self._transaction() as db:
            existing = db.execute(
                "SELECT id FROM files WHERE key = ? AND " + _IN_PENDING,
                (key, *_PENDING),
            ).fetchone()
            if existing:
                return int(existing["id"])
            cursor = db.execute(
                "INSERT INTO files (path, key, size, mtime_ns, sha256, priority, kind, created,"
                " state, after_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    key,
                    size,
                    mtime_ns,
                    sha256,
                    priority,
                    kind,
                    now,
                    FileState.QUEUED.value,
                    after_id,
                    json.dumps(metadata, sort_keys=True),
                ),
            )
            file_id = int(cursor.lastrowid or 0)
            self._log(db, file_id, "queued", f"{key} ({size} bytes)")
            return file_id

    def find_pending(self, key: str) -> FileRecord | None:
        """The pending file queued under `key`, if any."""
        rows = self._query("SELECT * FROM files WHERE key = ? AND " + _IN_PENDING, (key, *_PENDING))
        return FileRecord.from_row(rows[0]) if rows else None

    def get(self, file_id: int) -> FileRecord | None:
        rows = self._query("SELECT * FROM files WHERE id = ?", (file_id,))
        return FileRecord.from_row(rows[0]) if rows else None

    def require(self, file_id: int) -> FileRecord:
        record = self.get(file_id)
        if record is None:
            raise JournalError(f"upload {file_id} is not in the journal")
        return record

    def queue(self) -> tuple[list[FileRecord], frozenset[int]]:
        """The pending files, and the ids of those waiting for a predecessor not yet done."""
        rows = self._query("SELECT * FROM files WHERE " + _IN_PENDING, _PENDING)
        blocked = self._query(
            "SELECT f.id FROM files f WHERE f." + _IN_PENDING + " AND f.after_id IS NOT NULL"
            " AND (SELECT state FROM files WHERE id = f.after_id) IS NOT 'done'",
            _PENDING,
        )
        return [FileRecord.from_row(row) for row in rows], frozenset(row["id"] for row in blocked)

    def next_ready(
        self,
        now: float,
        *,
        newest_first: bool = False,
        classes: frozenset[UploadClass] = EVERY_CLASS,
    ) -> FileRecord | None:
        """The pending file to work on next (policy.pick_next): its class may go now, it is due,
        its predecessor is done."""
        files, blocked = self.queue()
        return pick_next(files, now, newest_first=newest_first, blocked=blocked, classes=classes)

    def next_attempt_time(self, classes: frozenset[UploadClass] = EVERY_CLASS) -> float | None:
        """When the earliest pending file that may go becomes due; None when none may."""
        files, blocked = self.queue()
        return next_due(files, blocked=blocked, classes=classes)

    def apply(
        self,
        file_id: int,
        event: UploadEvent,
        *,
        detail: str = "",
        retry_at: float = 0.0,
        etag: str = "",
    ) -> FileState:
        """Move a file through the state machine and log the event; returns the new state."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT state, attempts FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            if row is None:
                raise JournalError(f"upload {file_id} is not in the journal")
            new = next_state(FileState(row["state"]), event)
            attempts = row["attempts"]
            if event in (UploadEvent.RETRYABLE_ERROR, UploadEvent.UPLOAD_LOST):
                attempts += 1
            if event is UploadEvent.RETRY:
                attempts = 0
            db.execute(
                "UPDATE files SET state = ?, attempts = ?, next_attempt = ?, last_error = ?,"
                " etag = CASE WHEN ? = '' THEN etag ELSE ? END,"
                " done_at = CASE WHEN ? = 'done' THEN ? ELSE done_at END WHERE id = ?",
                (
                    new.value,
                    attempts,
                    retry_at,
                    detail if event in ERROR_EVENTS else "",
                    etag,
                    etag,
                    new.value,
                    time.time(),
                    file_id,
                ),
            )
            if event is UploadEvent.UPLOAD_LOST:
                db.execute("UPDATE files SET upload_id = '', etag = '' WHERE id = ?", (file_id,))
                db.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
            self._log(db, file_id, event.value, detail)
            return new

    def set_upload_id(self, file_id: int, upload_id: str, part_size: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET upload_id = ?, part_size = ? WHERE id = ?",
                (upload_id, part_size, file_id),
            )
            db.execute("DELETE FROM parts WHERE file_id = ?", (file_id,))
            self._log(db, file_id, "upload_created", upload_id)

    def record_part(self, file_id: int, part: PartRecord) -> None:
        """Record a part as done; call only after the server acknowledged it."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts (file_id, number, size, md5, etag)"
                " VALUES (?, ?, ?, ?, ?)",
                (file_id, part.number, part.size, part.md5, part.etag),
            )
            self._log(db, file_id, "part_done", f"part {part.number} ({part.size} bytes)")

    def parts(self, file_id: int) -> list[PartRecord]:
        rows = self._query(
            "SELECT number, size, md5, etag FROM parts WHERE file_id = ? ORDER BY number",
            (file_id,),
        )
        return [PartRecord(**dict(row)) for row in rows]

    def finished(self, *, limit: int = 200) -> list[FileRecord]:
        """The most recently finished files (done or failed), latest first."""
        rows = self._query(
            "SELECT * FROM files WHERE NOT " + _IN_PENDING + " ORDER BY id DESC LIMIT ?",
            (*_PENDING, limit),
        )
        return [FileRecord.from_row(row) for row in rows]

    def pending_totals(self) -> tuple[int, int, float | None]:
        """Number and bytes of pending files, and when the oldest was queued."""
        rows = self._query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, MIN(created) AS oldest"
            " FROM files WHERE " + _IN_PENDING,
            _PENDING,
        )
        row = rows[0]
        return int(row["n"]), int(row["bytes"]), row["oldest"]

    def active_upload_ids(self) -> set[str]:
        rows = self._query(
            "SELECT upload_id FROM files WHERE upload_id != '' AND " + _IN_PENDING,
            _PENDING,
        )
        return {row["upload_id"] for row in rows}

    def knows(self, path: str) -> bool:
        """Whether a file at `path` was ever queued (in any state)."""
        return bool(self._query("SELECT 1 FROM files WHERE path = ? LIMIT 1", (path,)))

    def is_done(self, path: str) -> bool:
        """Whether a file at `path` has been uploaded and verified (retention asks this)."""
        rows = self._query("SELECT 1 FROM files WHERE path = ? AND state = 'done' LIMIT 1", (path,))
        return bool(rows)

    def log(self, file_id: int | None, kind: str, detail: str = "") -> None:
        with self._transaction() as db:
            self._log(db, file_id, kind, detail)

    def events(self, *, limit: int = 50, file_id: int | None = None) -> list[EventRecord]:
        """The most recent events, newest first."""
        if file_id is None:
            rows = self._query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                "SELECT * FROM events WHERE file_id = ? ORDER BY id DESC LIMIT ?",
                (file_id, limit),
            )
        return [EventRecord(row["at"], row["file_id"], row["kind"], row["detail"]) for row in rows]

    def pending_keys(self) -> list[str]:
        """The object keys of the files still to upload."""
        return [
            row["key"]
            for row in self._query(f"SELECT key FROM files WHERE {_IN_PENDING}", _PENDING)
        ]

    def count_events(self, file_id: int, kind: str) -> int:
        """How often `kind` happened to a file since an operator last asked to retry it."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM events WHERE file_id = ? AND kind = ? AND id > "
            "(SELECT COALESCE(MAX(id), 0) FROM events WHERE file_id = ? AND kind = 'retry')",
            (file_id, kind, file_id),
        )
        return int(rows[0]["n"])

    def prune_events(self, before: float) -> int:
        """Delete events older than `before`; the number deleted."""
        return self.prune_event_ranges([(0, None, before)])

    def prune_event_ranges(self, ranges: list[tuple[int, int | None, float]]) -> int:
        """Delete, per (above id, up to id or None, before), the events stored before `before`."""
        deleted = 0
        with self._transaction() as db:
            for low, high, before in ranges:
                deleted += db.execute(
                    "DELETE FROM events WHERE id > ? AND id <= ? AND at < ?",
                    (low, high if high is not None else 2**63 - 1, before),
                ).rowcount
        return deleted

    def note_waiting(self, reason: str) -> None:
        """Say why every pending file waits (the upstream refuses them all), keeping their state."""
        with self._transaction() as db:
            db.execute("UPDATE files SET last_error = ? WHERE " + _IN_PENDING, (reason, *_PENDING))

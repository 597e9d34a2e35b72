"""Guests' sign-ups, kept on the box: what a form may hold, and the SQLite book that holds it.

One row per normalized email per event; a form carries a random key so a double submit or a
retried request finds its first row instead of making a second (the key with another email is
refused: that form was used). Rows leave the box in batches: a batch file is written
(atomically) and its rows marked with its name in one transaction, so a crash before the commit
leaves an orphan file (removed at open) and unmarked rows (batched again), and a crash after it
leaves a batch to queue: never a row lost, never one in two batches.

A deleted guest leaves no trace in the database files (secure_delete, the WAL truncated). A row
in a batch not yet handed to the uploader is cut from that batch file (rewritten atomically, in
the same transaction): its address never leaves. A deletion note goes upstream only for a guest
whose row was handed to the uploader (its batch may still go up once, before the note), waits
for an upstream when none is configured, and is dropped once its own batch is verified. In a
batch, lines go in time order: a guest who signs up again after a deletion stays signed up.

Every method blocks (SQLite, files), except `is_member`: callers on the event loop go through a
thread.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edged.fileio import write_atomically
from edged.sqlite import immediate_transaction

MAX_EMAIL = 254
MAX_NAME = 100
MAX_FIELD = 1000  # any other field
REQUEST_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Local part and domain: no spaces, no control characters, one @, a dot in the domain.
EMAIL = re.compile(r"^[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+\.[^\s@\x00-\x1f\x7f]+$")
HONEYPOT = "website"  # a field people never see, so never fill
BATCH_ROWS = 500
DATABASE = "guests.db"
WAL_BUSY_MS = 100  # how long the truncation after a deletion waits for a reader
CSV_COLUMNS = ("id", "event", "email", "name", "campaign", "consent", "created_at", "synced")
DIR_MODE = 0o700
FILE_MODE = 0o600

SCHEMA = """
CREATE TABLE IF NOT EXISTS signups (
    id INTEGER PRIMARY KEY,
    signup_id TEXT NOT NULL UNIQUE,
    request_key TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    campaign TEXT NOT NULL,
    consent TEXT NOT NULL,
    created_at REAL NOT NULL,
    batch TEXT,
    UNIQUE (event, email)
);
CREATE INDEX IF NOT EXISTS signups_unbatched ON signups (batch) WHERE batch IS NULL;
CREATE TABLE IF NOT EXISTS deletions (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    email TEXT NOT NULL,
    deleted_at REAL NOT NULL,
    batch TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    name TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    created_at REAL NOT NULL,
    rows INTEGER NOT NULL,
    queued INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0
);
"""


class Refused(ValueError):
    """A form the box will not take; the message is short, safe to show, and holds no data."""


class FormReused(Refused):
    """A form's key already signed up another email (the back button, a second guest)."""

    def __init__(self) -> None:
        super().__init__("this form was already used; reload the page")


@dataclass(frozen=True)
class Signup:
    """A valid form: what a guest gave."""

    email: str
    name: str
    campaign: str
    request_key: str


@dataclass(frozen=True)
class Guest:
    signup_id: str
    event: str
    email: str
    name: str
    campaign: str
    consent: str
    created_at: float
    batch: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.signup_id,
            "event": self.event,
            "email": self.email,
            "name": self.name,
            "campaign": self.campaign,
            "consent": self.consent,
            "created_at": rfc3339(self.created_at),
            "synced": self.batch is not None,
        }


@dataclass(frozen=True)
class Removed:
    """What deleting a guest did: rows removed, and deletion notes kept for the upstream (rows
    already handed to the uploader)."""

    rows: int
    notes: int
    wal_kept: bool = False  # a reader kept the WAL (and the old bytes in it): truncated later


@dataclass(frozen=True)
class Batch:
    name: str
    event: str
    created_at: float
    rows: int
    path: Path


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def normalize_email(text: str) -> str:
    """The email as one guest is known by: trimmed and lower-cased; Refused when not one."""
    email = text.strip().lower()
    if not email:
        raise Refused("an email address is needed")
    if len(email) > MAX_EMAIL:
        raise Refused(f"an email address is at most {MAX_EMAIL} characters")
    if not EMAIL.match(email):
        raise Refused("that is not an email address")
    return email


def parse_signup(fields: Mapping[str, str], campaign: str) -> Signup:
    """The sign-up a posted form holds (`campaign`: the configured one its link named)."""
    if any(len(value) > MAX_FIELD for value in fields.values()):
        raise Refused("a field is too long")
    if fields.get(HONEYPOT, ""):
        raise Refused("refused")
    request_key = fields.get("key", "")
    if not REQUEST_KEY.match(request_key):
        raise Refused("the form is incomplete; reload the page")
    email = normalize_email(fields.get("email", ""))
    name = " ".join(fields.get("name", "").split())
    if len(name) > MAX_NAME:
        raise Refused(f"a name is at most {MAX_NAME} characters")
    if fields.get("consent") != "yes":
        raise Refused("tick the box to sign up")
    return Signup(email=email, name=name, campaign=campaign, request_key=request_key)


def csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(guests: list[Guest]) -> str:
    """The export as CSV: one row per sign-up; no cell a spreadsheet would run as a formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for guest in guests:
        row = guest.as_json()
        writer.writerow([csv_cell(str(row[column])) for column in CSV_COLUMNS])
    return out.getvalue()


def _guest(row: sqlite3.Row) -> Guest:
    return Guest(
        signup_id=row["signup_id"],
        event=row["event"],
        email=row["email"],
        name=row["name"],
        campaign=row["campaign"],
        consent=row["consent"],
        created_at=row["created_at"],
        batch=row["batch"],
    )


def _create_private(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    path.chmod(FILE_MODE)


class GuestBook:
    """The guests' SQLite (WAL, synchronous=FULL, 0600 in a 0700 folder) and its batch files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.batch_dir = directory / "batches"
        self._lock = threading.Lock()
        # The last truncation found a reader (deleted guests' old bytes still in the WAL): the
        # desk tries again.
        self.wal_kept = False
        for folder in (directory, self.batch_dir):
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            folder.chmod(DIR_MODE)
        path = directory / DATABASE
        _create_private(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted guest's bytes are overwritten
        self._db.executescript(SCHEMA)
        # Whose cookies still open the exclusive clips: a deleted guest's no more.
        self._members = {row[0] for row in self._query("SELECT signup_id FROM signups")}
        self._forget_orphans()

    @staticmethod
    def read(directory: Path) -> list[Guest]:
        """Every sign-up, read beside a running daemon (WAL lets a reader in); none yet: []."""
        path = directory / DATABASE
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            db.row_factory = sqlite3.Row
            return [_guest(row) for row in db.execute("SELECT * FROM signups ORDER BY id")]
        finally:
            db.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with immediate_transaction(self._db, self._lock) as db:
            yield db

    def _query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def is_member(self, signup_id: str) -> bool:
        """Whether a signup id is still in the book (memory only: safe on the event loop)."""
        return signup_id in self._members

    def sign_up(
        self, signup: Signup, *, event: str, consent: str, now: float
    ) -> tuple[Guest, bool]:
        """(the guest's row, whether it is new): a known request key with its email, or a known
        email, gives its row; FormReused when the key signed up another email."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM signups WHERE request_key = ?", (signup.request_key,)
            ).fetchone()
            if row is not None and row["email"] != signup.email:
                raise FormReused
            if row is None:
                row = db.execute(
                    "SELECT * FROM signups WHERE event = ? AND email = ?", (event, signup.email)
                ).fetchone()
            if row is not None:
                return _guest(row), False
            db.execute(
                "INSERT INTO signups (signup_id, request_key, event, email, name, campaign,"
                " consent, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    secrets.token_urlsafe(18),
                    signup.request_key,
                    event,
                    signup.email,
                    signup.name,
                    signup.campaign,
                    consent,
                    now,
                ),
            )
            row = db.execute(
                "SELECT * FROM signups WHERE request_key = ?", (signup.request_key,)
            ).fetchone()
        self._members.add(row["signup_id"])  # after COMMIT: a failed one adds no member
        return _guest(row), True

    def guests(self) -> list[Guest]:
        return [_guest(row) for row in self._query("SELECT * FROM signups ORDER BY id")]

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM signups")[0][0])

    def delete(self, email: str, *, now: float) -> Removed:
        """Remove every sign-up of `email`. A row in a batch not yet queued is cut from that
        batch's file; for a row already queued (or sent) a deletion note is kept, per event, to
        go upstream (it waits for one). The WAL is then truncated."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT signups.signup_id, signups.event, signups.batch, batches.queued"
                " FROM signups LEFT JOIN batches ON batches.name = signups.batch"
                " WHERE signups.email = ?",
                (email,),
            ).fetchall()
            db.execute("DELETE FROM signups WHERE email = ?", (email,))
            for batch in sorted({row["batch"] for row in rows if row["queued"] == 0}):
                self._cut_from_batch(db, batch, email)
            sent = sorted({row["event"] for row in rows if row["queued"] == 1})
            db.executemany(
                "INSERT INTO deletions (event, email, deleted_at) VALUES (?, ?, ?)",
                [(event, email, now) for event in sent],
            )
        self._members.difference_update(row["signup_id"] for row in rows)  # after COMMIT
        return Removed(len(rows), len(sent), wal_kept=not self.truncate_wal())

    def _cut_from_batch(self, db: sqlite3.Connection, batch: str, email: str) -> None:
        """Batch `batch` (not queued) without the sign-up line of `email`: its file rewritten
        (atomically), its row count set; a batch left empty goes (file and row)."""
        path = self.batch_path(batch)
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        kept = [line for line in lines if not _signup_of(line, email)]
        if kept:
            write_atomically(path, ("\n".join(kept) + "\n").encode(), FILE_MODE)
            db.execute("UPDATE batches SET rows = ? WHERE name = ?", (len(kept), batch))
        else:
            db.execute("DELETE FROM batches WHERE name = ?", (batch,))
            path.unlink(missing_ok=True)

    def truncate_wal(self) -> bool:
        """Checkpoint the WAL into the database and empty it (a deleted guest's old bytes go);
        False (and `wal_kept`) when a reader holds an older snapshot (`edged guests export`):
        the desk tries again later. Readers are waited for WAL_BUSY_MS at most, not the usual
        busy timeout: the book's lock is held meanwhile, and sign-ups wait for it (review 16b,
        finding 8)."""
        with self._lock:
            (previous,) = self._db.execute("PRAGMA busy_timeout").fetchone()
            self._db.execute(f"PRAGMA busy_timeout = {WAL_BUSY_MS}")
            try:
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(previous)}")
            self.wal_kept = busy != 0
        return not self.wal_kept

    def prune(self, before: float) -> int:
        """Sign-ups made before `before` removed, and deletion notes sent before then, about an
        event no batch ever left for (kept by earlier versions for guests never sent), or in a
        batch already verified upstream (kept by earlier versions); sign-ups removed."""
        with self._transaction() as db:
            gone = db.execute(
                "SELECT signup_id FROM signups WHERE created_at < ?", (before,)
            ).fetchall()
            db.execute("DELETE FROM signups WHERE created_at < ?", (before,))
            db.execute(
                "DELETE FROM deletions WHERE deleted_at < ? AND batch IS NOT NULL", (before,)
            )
            db.execute(
                "DELETE FROM deletions WHERE batch IS NULL"
                " AND event NOT IN (SELECT event FROM batches)"
            )
            # Notes of batches verified before mark_removed dropped them (earlier versions).
            db.execute(
                "DELETE FROM deletions WHERE batch IN (SELECT name FROM batches WHERE removed = 1)"
            )
        self._members.difference_update(row[0] for row in gone)  # after COMMIT
        self.truncate_wal()
        return len(gone)

    def cut_batch(self, now: float, limit: int = BATCH_ROWS) -> Batch | None:
        """Write the oldest rows not yet sent into a new batch file and mark them with it, in one
        transaction; None when every row is in a batch."""
        with self._transaction() as db:
            first = db.execute(
                "SELECT event FROM signups WHERE batch IS NULL UNION ALL "
                "SELECT event FROM deletions WHERE batch IS NULL LIMIT 1"
            ).fetchone()
            if first is None:
                return None
            event = first["event"]
            signups = db.execute(
                "SELECT * FROM signups WHERE batch IS NULL AND event = ? ORDER BY id LIMIT ?",
                (event, limit),
            ).fetchall()
            deletions = db.execute(
                "SELECT * FROM deletions WHERE batch IS NULL AND event = ? ORDER BY id LIMIT ?",
                (event, limit),
            ).fetchall()
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
            name = f"guests-{stamp}-{secrets.token_hex(4)}"
            lines = batch_lines(signups, deletions)
            path = self.batch_dir / f"{name}.jsonl"
            write_atomically(path, ("\n".join(lines) + "\n").encode(), FILE_MODE)
            db.executemany(
                "UPDATE signups SET batch = ? WHERE id = ?", [(name, r["id"]) for r in signups]
            )
            db.executemany(
                "UPDATE deletions SET batch = ? WHERE id = ?", [(name, r["id"]) for r in deletions]
            )
            db.execute(
                "INSERT INTO batches (name, event, created_at, rows) VALUES (?, ?, ?, ?)",
                (name, event, now, len(lines)),
            )
            return Batch(name, event, now, len(lines), path)

    def _batches(self, where: str) -> list[Batch]:
        rows = self._query(f"SELECT * FROM batches WHERE {where} ORDER BY created_at")  # noqa: S608
        return [
            Batch(r["name"], r["event"], r["created_at"], r["rows"], self.batch_path(r["name"]))
            for r in rows
        ]

    def batch_path(self, name: str) -> Path:
        return self.batch_dir / f"{name}.jsonl"

    def unqueued(self) -> list[Batch]:
        """Batches cut but not yet handed to the uploader."""
        return self._batches("queued = 0")

    def in_flight(self) -> list[Batch]:
        """Batches queued whose file is still on the box."""
        return self._batches("queued = 1 AND removed = 0")

    def mark_queued(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE batches SET queued = 1 WHERE name = ?", (name,))

    def mark_removed(self, name: str) -> None:
        """The batch is verified upstream: its file and its deletion notes (personal data) leave
        the box."""
        self.batch_path(name).unlink(missing_ok=True)
        with self._transaction() as db:
            db.execute("UPDATE batches SET removed = 1 WHERE name = ?", (name,))
            notes = db.execute("DELETE FROM deletions WHERE batch = ?", (name,)).rowcount
        if notes:
            self.truncate_wal()

    def _forget_orphans(self) -> None:
        """Batch files no committed batch names: a crash came between the file and the commit."""
        known = {row["name"] for row in self._query("SELECT name FROM batches")}
        for path in self.batch_dir.iterdir():
            if path.name.startswith(".") or path.stem not in known:
                path.unlink(missing_ok=True)


def _deletion(row: sqlite3.Row) -> dict[str, object]:
    return {
        "type": "deletion",
        "event": row["event"],
        "email": row["email"],
        "deleted_at": rfc3339(row["deleted_at"]),
    }


def _signup_of(line: str, email: str) -> bool:
    """Whether a batch line is the sign-up of `email`."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(record, dict) and record.get("type") == "signup" and record.get("email") == email
    )


def batch_lines(signups: list[sqlite3.Row], deletions: list[sqlite3.Row]) -> list[str]:
    """A batch's lines in time order, a deletion before a sign-up of the same moment: a guest
    deleted and then signed up again ends signed up wherever the lines are applied in order."""
    timed = [
        (r["created_at"], 1, json.dumps({"type": "signup", **_guest(r).as_json()})) for r in signups
    ]
    timed += [(r["deleted_at"], 0, json.dumps(_deletion(r))) for r in deletions]
    return [line for _, _, line in sorted(timed, key=lambda item: (item[0], item[1]))]

"""The clip job journal: SQLite (WAL, synchronous=FULL) in `<data dir>/clips/` (0700, the file
0600), so the queue survives restarts. Blocking: called through `asyncio.to_thread`. One
connection, guarded by a lock."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.clips.jobstate import PENDING, ClipRequest, JobEvent, JobState, next_state
from edged.errors import EdgedError
from edged.sqlite import immediate_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    variants TEXT NOT NULL,          -- JSON list
    mode TEXT NOT NULL DEFAULT 'fill',
    x_offset INTEGER,
    publish_at REAL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    running_seconds REAL NOT NULL DEFAULT 0,
    sources TEXT NOT NULL DEFAULT '[]',  -- JSON [[path, start, end, sha256], ...]
    outputs TEXT NOT NULL DEFAULT '[]',  -- JSON list of the clips (asset names) finished
    attempts INTEGER NOT NULL DEFAULT 0  -- times started (a crash or an error starts it again)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""

Source = tuple[str, float, float, str]  # path, start, end, sha256


class JobJournalError(EdgedError):
    """The job journal cannot be read or written (disk full, file damaged)."""


@dataclass(frozen=True)
class Job:
    id: int
    stream: str
    start: float
    end: float
    title: str
    variants: tuple[str, ...]
    mode: str
    x_offset: int | None
    publish_at: float | None
    state: JobState
    progress: float
    reason: str
    created: float
    started: float | None
    finished: float | None
    running_seconds: float
    sources: tuple[Source, ...]
    outputs: tuple[str, ...]
    attempts: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["state"] = JobState(values["state"])
        values["variants"] = tuple(json.loads(values["variants"]))
        values["sources"] = tuple(
            (str(p), float(s), float(e), str(h)) for p, s, e, h in json.loads(values["sources"])
        )
        values["outputs"] = tuple(json.loads(values["outputs"]))
        return cls(**values)


_PENDING = tuple(state.value for state in PENDING)


class JobJournal:
    """Clip jobs, their state, progress and outputs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(descriptor)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "attempts" not in columns:  # a journal from before attempts were counted
                self._db.execute("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
        except (sqlite3.Error, OSError) as error:
            raise JobJournalError(f"clip job journal {path} cannot be opened: {error}") from error
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with immediate_transaction(self._db, self._lock) as db:
                yield db
        except sqlite3.Error as error:
            raise JobJournalError(f"clip job journal: {error}") from error

    def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise JobJournalError(f"clip job journal: {error}") from error

    def add(self, request: ClipRequest, sources: Sequence[Source], now: float) -> Job:
        with self._transaction() as db:
            cursor = db.execute(
                'INSERT INTO jobs (stream, start, "end", title, variants, mode, x_offset, '
                "publish_at, state, created, sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.stream,
                    request.start,
                    request.end,
                    request.title,
                    json.dumps(list(request.variants)),
                    request.mode,
                    request.x_offset,
                    request.publish_at,
                    JobState.QUEUED.value,
                    now,
                    json.dumps([list(source) for source in sources]),
                ),
            )
            job_id = int(cursor.lastrowid or 0)
        return self.require(job_id)

    def get(self, job_id: int) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    def require(self, job_id: int) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobJournalError(f"clip job {job_id} is not in the journal")
        return job

    def recent(self, limit: int = 100) -> list[Job]:
        """The newest jobs first."""
        rows = self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [Job.from_row(row) for row in rows]

    def pending(self) -> list[Job]:
        """Jobs not done or failed, oldest first: the queue's order."""
        marks = ",".join("?" * len(_PENDING))
        rows = self._query(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", _PENDING)  # noqa: S608 - placeholders only
        return [Job.from_row(row) for row in rows]

    def counts(self) -> dict[JobState, int]:
        rows = self._query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        found = {JobState(row["state"]): int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in JobState}

    def apply(
        self,
        job_id: int,
        event: JobEvent,
        now: float,
        *,
        reason: str = "",
        running_seconds: float | None = None,
    ) -> Job:
        """The job after `event` (its state from the transition table; InvalidJobTransition)."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobJournalError(f"clip job {job_id} is not in the journal")
            job = Job.from_row(row)
            state = next_state(job.state, event)
            started = now if event is JobEvent.START and job.started is None else job.started
            finished = now if state in (JobState.DONE, JobState.FAILED) else None
            progress = 1.0 if state is JobState.DONE else job.progress
            if event is JobEvent.RESTART:
                progress = 0.0
            db.execute(
                "UPDATE jobs SET state = ?, reason = ?, started = ?, finished = ?, progress = ?, "
                "running_seconds = ?, attempts = ? WHERE id = ?",
                (
                    state.value,
                    reason,
                    started,
                    finished,
                    progress,
                    job.running_seconds if running_seconds is None else running_seconds,
                    job.attempts + (event is JobEvent.START),
                    job_id,
                ),
            )
        return self.require(job_id)

    def note_progress(self, job_id: int, progress: float, running_seconds: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET progress = ?, running_seconds = ? WHERE id = ?",
                (progress, running_seconds, job_id),
            )

    def set_sources(self, job_id: int, sources: Sequence[Source]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET sources = ? WHERE id = ?",
                (json.dumps([list(source) for source in sources]), job_id),
            )

    def add_output(self, job_id: int, name: str) -> Job:
        with self._transaction() as db:
            row = db.execute("SELECT outputs FROM jobs WHERE id = ?", (job_id,)).fetchone()
            outputs = [*json.loads(row["outputs"]), name] if row is not None else [name]
            db.execute(
                "UPDATE jobs SET outputs = ? WHERE id = ?",
                (json.dumps(list(dict.fromkeys(outputs))), job_id),
            )
        return self.require(job_id)

    def restart_interrupted(self, now: float) -> list[Job]:
        """Jobs the last daemon left running or paused go back to the queue, from the start."""
        interrupted = [
            job for job in self.pending() if job.state in (JobState.RUNNING, JobState.PAUSED)
        ]
        return [
            self.apply(job.id, JobEvent.RESTART, now, reason="restarted: edged stopped during it")
            for job in interrupted
        ]

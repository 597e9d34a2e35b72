"""What `edged uploads` and `GET /api/v1/uploads` show: the queue, progress, recent events."""

from __future__ import annotations

import time
from typing import Any

from edged.upload.classes import class_of
from edged.upload.journal import FileRecord, Journal
from edged.upload.policy import plan_parts, queue_order
from edged.upload.state import PENDING


def queue_positions(
    journal: Journal, *, limit: int, newest_first: bool
) -> list[tuple[FileRecord, int | None]]:
    """The pending files in the order the uploader takes them, each with its position (1 =
    next), then the latest finished ones (no position); at most `limit` in all."""
    pending, blocked = journal.queue()
    ordered = queue_order(pending, newest_first=newest_first, blocked=blocked)
    shown: list[tuple[FileRecord, int | None]] = [
        (record, position) for position, record in enumerate(ordered[:limit], start=1)
    ]
    if len(shown) < limit:
        shown.extend((record, None) for record in journal.finished(limit=limit - len(shown)))
    return shown


def upload_report(
    journal: Journal, *, limit: int = 100, events: int = 30, newest_first: bool = False
) -> dict[str, Any]:
    """A JSON-ready summary of the journal (blocking: call it in a thread). `newest_first` is
    the uploader's setting ([upload] newest_first), for the positions."""
    now = time.time()
    files, size, oldest = journal.pending_totals()
    rows = []
    for record, position in queue_positions(journal, limit=limit, newest_first=newest_first):
        parts = journal.parts(record.id)
        total = len(plan_parts(record.size, record.part_size)) if record.part_size else 1
        rows.append(
            {
                "id": record.id,
                "key": record.key,
                "path": record.path,
                "kind": record.kind,
                "class": class_of(record.kind).value,
                "position": position,
                "size": record.size,
                "state": record.state.value,
                "attempts": record.attempts,
                "last_error": record.last_error,
                "parts_done": len(parts),
                "parts_total": max(total, 1),
                "bytes_done": sum(part.size for part in parts),
                "next_attempt_in_seconds": max(round(record.next_attempt - now, 1), 0)
                if record.state in PENDING
                else None,
                "etag": record.etag,
                "queued_at": record.created,
                "done_at": record.done_at,
            }
        )
    return {
        "queue": {
            "files": files,
            "bytes": size,
            "oldest_pending_seconds": round(now - oldest, 1) if oldest else 0,
        },
        "files": rows,
        "events": [
            {"at": event.at, "file_id": event.file_id, "kind": event.kind, "detail": event.detail}
            for event in journal.events(limit=events)
        ],
    }


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"

"""`edged uploads` and `edged uploads push`: the queue for people, and a one-shot uploader."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from edged.config import Config, node_name
from edged.errors import EdgedError
from edged.metrics import UploadMetrics
from edged.upload.journal import Journal
from edged.upload.links import BUDGET_FILE as UPLINKS_FILE
from edged.upload.links import last_seen, uplink_line
from edged.upload.report import progress_bar, upload_report
from edged.upload.setup import JOURNAL_FILE, build_uploader, key_for
from edged.upload.state import FileState

logger = logging.getLogger(__name__)


class Unpushable(EdgedError, ValueError):
    """A file or option given to `edged uploads push` cannot be queued (a usage error)."""


@dataclass(frozen=True)
class PushPlan:
    """What `edged uploads push` will queue, decided before the journal is opened."""

    node: str
    files: tuple[tuple[Path, str], ...]  # (file, object key)


def plan(config: Config, files: Sequence[Path], *, stream: str) -> PushPlan:
    """Each file with its object key; `Unpushable` naming the first that has none (blocking)."""
    node = node_name(config, socket.gethostname())
    planned = []
    for path in files:
        try:
            planned.append((path, key_for(config, node, path, stream)))
        except ValueError as error:  # a stream or a file name the key layout refuses
            raise Unpushable(f"{path}: {error}") from None
        except OSError as error:
            raise Unpushable(f"cannot read {path}: {error.strerror}") from None
    return PushPlan(node, tuple(planned))


SYNC_OFF = "sync is off (no [upstream] endpoint configured): footage stays on this box"


def show(
    data_dir: Path,
    *,
    as_json: bool,
    terminal: bool,
    sync_on: bool = True,
    newest_first: bool = False,
) -> int:
    """Print the queue (each pending file's position and class), per-file progress and recent
    events from the journal."""
    path = data_dir / JOURNAL_FILE
    upstream = {"configured": sync_on}
    uplinks, seen_at = last_seen(data_dir / UPLINKS_FILE)  # as the daemon last saw them
    if not path.exists():
        empty = {"upstream": upstream, "queue": {"files": 0}, "files": [], "events": []}
        print(
            json.dumps({**empty, "uplinks": uplinks, "uplinks_seen_at": seen_at})
            if as_json
            else (SYNC_OFF if not sync_on else f"no uploads yet ({path.name} does not exist)")
        )
        if not as_json:
            print_uplinks(uplinks, seen_at)
        return 0
    journal = Journal(path)
    try:
        report = upload_report(journal, newest_first=newest_first)
    finally:
        journal.close()
    report["upstream"] = upstream
    report["uplinks"], report["uplinks_seen_at"] = uplinks, seen_at
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print_uplinks(uplinks, seen_at)
    if not sync_on:
        print(SYNC_OFF)
    queue = report["queue"]
    print(
        f"pending: {queue['files']} files, {queue['bytes']} bytes, "
        f"oldest {queue['oldest_pending_seconds']:.0f} s"
    )
    for row in report["files"]:
        progress = (
            progress_bar(row["parts_done"], row["parts_total"])
            if terminal
            else f"{row['parts_done']}/{row['parts_total']} parts"
        )
        error = f"  ({row['last_error']})" if row["last_error"] else ""
        position = "" if row["position"] is None else f"#{row['position']}"
        print(
            f"{position:>5} {row['id']:>5} {row['class']:9} {row['state']:10} {progress} "
            f"{row['key']}{error}"
        )
    if report["events"]:
        print("recent events:")
    for event in report["events"][:15]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["at"]))
        print(f"  {stamp} #{event['file_id']} {event['kind']} {event['detail']}")
    return 0


def print_uplinks(uplinks: list[dict[str, Any]], seen_at: float | None) -> None:
    """The uplinks as the daemon last saw them (nothing before a daemon with an upstream ran)."""
    if seen_at is None:
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seen_at))
    print(f"uplinks (as edged saw them at {stamp}):")
    for row in uplinks:
        print(f"  {uplink_line(row)}")


async def push(config: Config, data_dir: Path, planned: PushPlan, *, kind: str) -> int:
    """Queue the planned files and run the uploader until each is verified (0) or failed (1)."""
    uploader = build_uploader(config, data_dir, planned.node, UploadMetrics(CollectorRegistry()))
    if not uploader.configured:
        uploader.journal.close()
        print(f"edged: uploads push: {SYNC_OFF}", file=sys.stderr)
        return 1
    try:
        await uploader.start()
        ids = [await uploader.enqueue(path, key, kind=kind) for path, key in planned.files]
        while True:
            records = [await asyncio.to_thread(uploader.journal.require, i) for i in ids]
            if all(r.state in (FileState.DONE, FileState.FAILED) for r in records):
                break
            await asyncio.sleep(0.2)
        for record in records:
            print(
                f"{record.state.value}: {record.key}"
                + (f" ({record.last_error})" if record.last_error else "")
            )
        return 0 if all(r.state is FileState.DONE for r in records) else 1
    finally:
        await uploader.stop()
        uploader.journal.close()

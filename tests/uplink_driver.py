"""A small uploader for tests/netns.py's client namespace: the daemon's own pieces (the config,
setup.build_store and build_pool, the journal, FileTransfer with the pool) sending files one
after the other, each through its whole state machine (sent, completed, verified).

    ip netns exec NS python -m tests.uplink_driver CONFIG DATA_DIR KIND:PATH ...

Prints one JSON line when the pool has looked at the uplinks ({"uplinks": [...usable...]}),
then one a file: {"path", "kind", "state", "seconds", "part_size", "parts", "error", "usable"}
("seconds": from its enqueue, its sha256 taken before, to verified; "usable": the uplinks that
may carry its class after it, those dropped meanwhile left out).

    ip netns exec NS python -m tests.uplink_driver CONFIG DATA_DIR --queue

runs the uploader itself (setup.build_uploader, as `edged uploads push` does): each KIND:PATH
line on stdin is queued at once, and a line {"path", "kind", "state"} is printed as each file
ends (done or failed), in the order they end; it exits when stdin is closed and all have ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from edged.config import load
from edged.metrics import UplinkMetrics, UploadMetrics
from edged.s3bucket import UpstreamError
from edged.upload.classes import RANK, UploadClass, class_of
from edged.upload.journal import Journal
from edged.upload.links import UplinkPool
from edged.upload.policy import TokenBucket
from edged.upload.setup import build_pool, build_store, build_uploader
from edged.upload.state import FileState, UploadEvent
from edged.upload.transfer import FileTransfer
from edged.upload.uploader import Uploader


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def upload(
    journal: Journal, transfer: FileTransfer, pool: UplinkPool, kind: str, path: Path
) -> None:
    facts = await asyncio.to_thread(path.stat)
    file_id = journal.enqueue(
        path=str(path),
        key=f"gala/{path.name}",
        size=facts.st_size,
        mtime_ns=facts.st_mtime_ns,
        sha256=await asyncio.to_thread(sha256_of, path),
        priority=RANK[class_of(kind)],
        kind=kind,
        metadata={},
        now=time.time(),
    )
    journal.apply(file_id, UploadEvent.START)
    started = time.monotonic()
    error = ""
    try:
        record = journal.require(file_id)
        if await transfer.send(record) is FileState.COMPLETING:
            await transfer.complete(journal.require(file_id))
            await transfer.verify(journal.require(file_id))
    except UpstreamError as failure:
        error = str(failure)
    done = journal.require(file_id)
    say(
        path=str(path),
        kind=kind,
        state=done.state.value,
        seconds=time.monotonic() - started,
        part_size=done.part_size,
        parts=len(journal.parts(file_id)),
        error=error,
        usable=[uplink.interface for uplink in pool.usable(class_of(kind))],
    )


async def main(config_path: Path, data_dir: Path, files: list[str]) -> None:
    config = load(config_path)
    store = build_store(config, "box")
    assert store is not None
    pool: UplinkPool = build_pool(
        config, data_dir, "box", store, UplinkMetrics(CollectorRegistry())
    )
    await pool.refresh()
    say(uplinks={cls.value: [u.interface for u in pool.usable(cls)] for cls in UploadClass})
    journal = Journal(data_dir / "journal.sqlite3")
    transfer = FileTransfer(
        journal,
        store,
        UploadMetrics(CollectorRegistry()),
        TokenBucket(config.upload.bandwidth_limit, time.monotonic()),
        part_size=config.upload.part_size,
        parallel_parts=config.upload.parallel_parts,
        pool=pool,
    )
    try:
        for item in files:
            kind, _, path = item.partition(":")
            await upload(journal, transfer, pool, kind, Path(path))
    finally:
        journal.close()


async def queue_lines(uploader: Uploader, pending: dict[int, tuple[str, str]]) -> None:
    """Queue each KIND:PATH line of stdin until it closes."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        if line.strip():
            kind, _, path = line.strip().partition(":")
            key = f"gala/{Path(path).name}"
            pending[await uploader.enqueue(Path(path), key, kind=kind)] = (kind, path)


async def queue(config_path: Path, data_dir: Path) -> None:
    metrics = UploadMetrics(CollectorRegistry())
    uploader = build_uploader(load(config_path), data_dir, "box", metrics)
    await uploader.start()
    pending: dict[int, tuple[str, str]] = {}
    reader = asyncio.create_task(queue_lines(uploader, pending))
    try:
        while not reader.done() or pending:
            await asyncio.sleep(0.05)
            for file_id, (kind, path) in list(pending.items()):
                record = await asyncio.to_thread(uploader.journal.require, file_id)
                if record.state in (FileState.DONE, FileState.FAILED):
                    say(path=path, kind=kind, state=record.state.value, error=record.last_error)
                    del pending[file_id]
        await reader
    finally:
        await uploader.stop()
        uploader.journal.close()


if __name__ == "__main__":
    if sys.argv[3:] == ["--queue"]:
        asyncio.run(queue(Path(sys.argv[1]), Path(sys.argv[2])))
    else:
        asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))

"""The retention worker: keeps free disk above the minimum, and recording off while it cannot.

Every `RETENTION_SECONDS` a thread gathers the spool's facts (sizes, ages, which recordings are
uploaded, the free disk); `retention.plan` decides on the event loop; a thread deletes what the
plan lets go; and the decision to stop or resume recording is applied to the streams on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edged.config import StorageConfig
from edged.media.recorder import Segment, segment_from_sidecar
from edged.media.retention import RetentionPlan, SpoolFile, plan_keeping
from edged.metrics import StreamMetrics

logger = logging.getLogger(__name__)

RETENTION_SECONDS = 10.0


class UploadLedger(Protocol):
    """What the media side asks the upload journal (blocking: asked from worker threads)."""

    def is_done(self, path: str) -> bool:
        """Whether the recording at `path` is uploaded and verified: retention may delete it."""
        ...

    def knows(self, path: str) -> bool:
        """Whether the recording at `path` was ever queued for upload, in any state."""
        ...


class RecordingSwitch(Protocol):
    """What retention turns off when the disk is full: recording, on every stream."""

    @property
    def recording(self) -> bool: ...

    def set_recording(self, recording: bool) -> None: ...


@dataclass(frozen=True)
class SpoolFacts:
    files: tuple[SpoolFile, ...]
    free_bytes: int

    @property
    def spool_bytes(self) -> int:
        return sum(file.size for file in self.files)


def spool_files(spool: Path, ledger: UploadLedger) -> tuple[SpoolFile, ...]:
    """Every finished recording in the spool (blocking)."""
    files = []
    for path in spool.glob("*/*.mp4"):
        try:
            facts = path.stat()
        except FileNotFoundError:
            continue
        files.append(SpoolFile(str(path), facts.st_size, facts.st_mtime, ledger.is_done(str(path))))
    return tuple(files)


def delete_recordings(victims: Iterable[SpoolFile]) -> None:
    """Delete each recording and its sidecar (blocking)."""
    for victim in victims:
        for path in (Path(victim.path), Path(victim.path).with_suffix(".json")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        logger.info(
            "retention: deleted %s (%s, %d bytes)",
            victim.path,
            "uploaded" if victim.uploaded else "NOT uploaded",
            victim.size,
        )


def unqueued_segments(spool: Path, ledger: UploadLedger) -> list[Segment]:
    """Closed segments with a sidecar that the upload journal has never seen (blocking)."""
    found = []
    for sidecar in sorted(spool.glob("*/*.json")):
        video = sidecar.with_suffix(".mp4")
        if not video.exists() or ledger.knows(str(video)):
            continue
        try:
            found.append(segment_from_sidecar(sidecar))
        except (ValueError, KeyError, OSError) as error:
            logger.warning("spool: ignoring %s: %s", sidecar, error)
    return found


class RetentionWorker:
    """Applies `retention.plan` to the spool; `run()` is the supervised loop."""

    def __init__(
        self,
        spool: Path,
        storage: StorageConfig,
        ledger: UploadLedger,
        metrics: StreamMetrics,
        streams: RecordingSwitch,
        free_bytes: Callable[[], int],
    ) -> None:
        self._spool = spool
        self._storage = storage
        self._ledger = ledger
        self._metrics = metrics
        self._streams = streams
        self._free_bytes = free_bytes  # blocking: asked in the worker thread
        # Recordings a queued or running clip job cuts from: deleted only when recording would
        # stop otherwise (the job then fails saying so); asked on the loop.
        self.keep: Callable[[], Collection[str]] = frozenset

    async def run(self) -> None:
        while True:
            await self.apply()
            await asyncio.sleep(RETENTION_SECONDS)

    def gather(self) -> SpoolFacts:
        """The spool and the disk now (blocking: run in a thread)."""
        files = spool_files(self._spool, self._ledger)
        return SpoolFacts(files, self._free_bytes())

    async def apply(self) -> RetentionPlan:
        """One pass: facts in a thread, the plan and its consequences on the loop, the
        deletions in a thread."""
        facts = await asyncio.to_thread(self.gather)
        self._metrics.spool_bytes.set(facts.spool_bytes)
        kept = self.keep()
        decision = plan_keeping(
            facts.files,
            kept,
            facts.free_bytes,
            self._storage.min_free_bytes,
            delete_unuploaded=self._storage.delete_unuploaded,
        )
        if decision.delete:
            if taken := [file.path for file in decision.delete if file.path in kept]:
                logger.warning(
                    "retention: the disk is below its floor: deleting %d recording(s) queued clip "
                    "jobs need; those jobs will fail",
                    len(taken),
                )
            await asyncio.to_thread(delete_recordings, decision.delete)
        self._switch(not decision.stop_recording)
        return decision

    def _switch(self, recording: bool) -> None:
        if recording != self._streams.recording:
            if recording:
                logger.info("retention: free space is back; recording resumes")
            else:
                logger.error(
                    "retention: disk nearly full and nothing more may be deleted (footage not yet "
                    "uploaded is kept); recording stops, live view goes on. Free space or let "
                    "uploads finish"
                )
        self._streams.set_recording(recording)  # stopping closes each open segment

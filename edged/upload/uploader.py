"""The upload scheduler: takes files from the journal and brings them upstream, verified.

It resumes from the journal after a crash, waits without a busy loop while the upstream is away,
retries with backoff and jitter, and holds a bandwidth cap. Blocking work (minio, SQLite, file
reads) runs in threads. The transfer of one file (parts, resume, completion, verification) is
edged/upload/transfer.py's; this module is the queue worker around it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edged.clock import ClockSample, StepLedger, prune_ranges
from edged.fileio import file_sha256
from edged.metrics import UploadMetrics
from edged.s3bucket import (
    ClockSkewed,
    CredentialsRefused,
    UploadLost,
    UpstreamError,
    UpstreamUnreachable,
)
from edged.supervise import Supervisor, describe
from edged.upload.classes import RANK, UploadClass, class_of
from edged.upload.journal import FileRecord, Journal, JournalError
from edged.upload.links import CapSchedule, UplinkPool
from edged.upload.policy import (
    BACKOFF_CAP_SECONDS,
    EVERY_CLASS,
    MIN_PART_SIZE,
    TokenBucket,
    backoff_seconds,
    next_due,
    outranks,
    pick_next,
)
from edged.upload.s3 import S3Store
from edged.upload.source import SourceProblem, check_source
from edged.upload.state import FileState, InvalidTransition, UploadEvent
from edged.upload.transfer import FileTransfer, apply_event

logger = logging.getLogger(__name__)

PROBE_MIN_SECONDS = 1.0
PROBE_MAX_SECONDS = 30.0
JOURNAL_RETRY_SECONDS = 30.0
DAY = 86400.0
ROW_STRIKES = 3  # a file that breaks the worker this often is set aside as failed
MAX_UPLOADS_LOST = 5  # a file started over this often is failed: something is wrong upstream
OFFLINE_WARNING_SECONDS = 60.0  # one warning a minute at most while offline; the metric says more


@dataclass(frozen=True)
class UploaderSettings:
    part_size: int
    parallel_parts: int
    bandwidth_limit: int
    newest_first: bool = False
    event_retention_days: int = 30
    stale_prefix: str = ""  # unfinished uploads under it that the journal does not know go
    prune_interval_seconds: float = DAY  # of monotonic time between two prunes of the event log


def read_clock() -> ClockSample:
    return ClockSample(wall=time.time(), monotonic=time.monotonic())


def next_probe_delay(delay: float) -> float:
    """The wait after a failed probe that followed a wait of `delay`: doubled, capped."""
    return min(delay * 2, PROBE_MAX_SECONDS)


def offline_warning_due(was_online: bool, now: float, last_warning: float) -> bool:
    """Whether a failed contact is worth a warning: the link just went, or a minute passed."""
    return was_online or now - last_warning > OFFLINE_WARNING_SECONDS


def every_class() -> frozenset[UploadClass]:
    return EVERY_CLASS


def prune_due(last_prune: float | None, monotonic: float, interval: float) -> bool:
    """Whether the event log is pruned now (never yet, or `interval` since the last prune)."""
    return last_prune is None or monotonic - last_prune >= interval


class Uploader:
    """One per daemon; `start()` launches the worker, `stop()` ends it (idempotent)."""

    def __init__(
        self,
        journal: Journal,
        store: S3Store | None,
        settings: UploaderSettings,
        metrics: UploadMetrics,
        pool: UplinkPool | None = None,
        schedule: CapSchedule | None = None,
    ) -> None:
        self.journal = journal
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._bucket = TokenBucket(settings.bandwidth_limit, time.monotonic())
        self._wakeup = asyncio.Event()  # new work or an operator: look at the journal now
        self._probe_now = asyncio.Event()  # an operator: try the upstream now, not on schedule
        self._idle = asyncio.Event()
        self._supervisor: Supervisor | None = None
        self._own_supervisor = False
        self._strikes: Counter[int] = Counter()  # unexpected failures per file
        self._transfer = (
            FileTransfer(
                journal,
                store,
                metrics,
                self._bucket,
                part_size=settings.part_size,
                parallel_parts=settings.parallel_parts,
                pool=pool,
            )
            if store is not None
            else None
        )
        self._online = False
        self._stale_checked = False
        self._last_prune: float | None = None  # monotonic
        self._clock: Callable[[], ClockSample] = read_clock
        self._steps = StepLedger(self._clock(), journal.last_event_id)
        self._random = random.SystemRandom()
        self.on_reconnect: list[Callable[[], None]] = []  # e.g. the clip replicator looks again
        self._last_offline_log = 0.0
        # The classes some uplink carries now (the uplink pool's carried_classes); default: all.
        self._carried: Callable[[], frozenset[UploadClass]] = every_class
        self.pool = pool  # the uplinks ([upload] uplinks); None: the store's route alone
        self._schedule = schedule or CapSchedule(default=settings.bandwidth_limit)
        if pool is not None:
            self._carried = pool.carried_classes
        self._requeued = asyncio.Event()  # the queue changed: does a file outrank the one sent?
        self._yield_to: FileRecord | None = None  # outranks the file in flight: it stops for it

    # -- control -------------------------------------------------------------------------------

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Start the worker under `supervisor`; without an upstream there is no worker."""
        await self._refresh_gauges()
        self._metrics.upstream_up.set(0)
        self._metrics.configured.set(1 if self._store is not None else 0)
        if self._store is None:
            return
        if supervisor is None:
            supervisor, self._own_supervisor = Supervisor(None), True
        self._supervisor = supervisor
        supervisor.spawn("uploader", self._run)
        if self.pool is not None:
            supervisor.spawn("uplinks", self._keep_uplinks)

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await supervisor.cancel("uploader")
            await supervisor.cancel("uplinks")
            if self._own_supervisor:
                await supervisor.stop()

    async def _keep_uplinks(self) -> None:
        """The uplinks looked at once a minute; the cap set by its schedule."""
        if self.pool is not None:
            await self.pool.keep_current(self._schedule, self.set_bandwidth, self.classes_changed)

    def wake(self) -> None:
        """An operator's request: look at the journal, and try the upstream, now."""
        self._probe_now.set()
        self._new_work()

    def _new_work(self) -> None:
        """New work: look at the journal now, but keep to the upstream probe's schedule."""
        self._idle.clear()
        self._wakeup.set()
        self._requeued.set()

    def use_carried_classes(self, carried: Callable[[], frozenset[UploadClass]]) -> None:
        """Take only files of the classes `carried()` names (asked at each pick and each part);
        call classes_changed() when its answer grows."""
        self._carried = carried
        self._new_work()

    def classes_changed(self) -> None:
        """The classes carried changed (an uplink came or went): look at the queue again."""
        self._new_work()

    def use_clock(self, clock: Callable[[], ClockSample]) -> None:
        """Read the wall and monotonic clocks with `clock` (tests move the wall clock)."""
        self._clock = clock
        self._steps = StepLedger(clock(), self.journal.last_event_id)

    def observe_clock(self, sample: ClockSample | None = None) -> None:
        """Note a step of the wall clock against the event log (the clock watch calls this)."""
        jump = self._steps.observe(sample or self._clock(), self.journal.last_event_id)
        if jump is not None:
            logger.info(
                "upload event log: events logged before a %+.0f s step keep their age", jump.seconds
            )

    def set_stale_prefix(self, prefix: str) -> None:
        """Unfinished uploads to clean up are looked for under `prefix` (the event changed)."""
        if prefix != self._settings.stale_prefix:
            self._settings = dataclasses.replace(self._settings, stale_prefix=prefix)
            self._stale_checked = False

    def set_bandwidth(self, bytes_per_second: int) -> None:
        """Change the bandwidth cap at run time (0 = unlimited)."""
        self._bucket.set_rate(bytes_per_second, time.monotonic())
        logger.info("upload bandwidth cap set to %d bytes/s", bytes_per_second)

    async def wait_idle(self) -> None:
        """Until nothing is ready to upload (pending files may still wait for a retry time)."""
        await self._idle.wait()

    @property
    def working(self) -> bool:
        """Whether the worker runs (or waits to be restarted after a failure)."""
        return self._supervisor is not None and self._supervisor.alive("uploader")

    @property
    def online(self) -> bool:
        return self._online

    @property
    def newest_first(self) -> bool:
        """Whether recordings go newest first ([upload] newest_first): the queue's order."""
        return self._settings.newest_first

    @property
    def configured(self) -> bool:
        """Whether an upstream is configured (otherwise files only queue up)."""
        return self._store is not None

    @property
    def store(self) -> S3Store:
        if self._store is None:
            raise RuntimeError("no upstream configured: the upload worker does not run")
        return self._store

    async def enqueue(
        self,
        path: Path,
        key: str,
        *,
        kind: str = "recording",
        metadata: dict[str, str] | None = None,
        after_id: int | None = None,
        sha256: str | None = None,
    ) -> int:
        """Queue a file: its size, mtime and sha256 are taken now, and checked before sending.

        A file already pending under the same key keeps its row and its progress.
        """
        existing = await asyncio.to_thread(self.journal.find_pending, key)
        if existing is not None:
            self._new_work()
            return existing.id
        facts = await asyncio.to_thread(os.stat, path)
        if sha256 is None:  # the recorder hashes while it closes a segment; others are hashed here
            sha256 = await asyncio.to_thread(file_sha256, str(path))
        file_id = await asyncio.to_thread(
            lambda: self.journal.enqueue(
                path=str(path),
                key=key,
                size=facts.st_size,
                mtime_ns=facts.st_mtime_ns,
                sha256=str(sha256),
                priority=RANK[class_of(kind)],
                kind=kind,
                metadata=metadata or {},
                now=time.time(),
                after_id=after_id,
            )
        )
        logger.info("upload %d queued: %s -> %s", file_id, path, key)
        self._new_work()
        await self._refresh_gauges()
        return file_id

    async def retry(self, file_id: int) -> FileState:
        """Put a failed file back in the queue."""
        state = await asyncio.to_thread(
            self.journal.apply, file_id, UploadEvent.RETRY, detail="retry requested"
        )
        self.wake()
        return state

    # -- the worker ----------------------------------------------------------------------------

    async def _run(self) -> None:
        """The worker, run by the supervisor: anything unexpected ends it and it starts again."""
        while True:
            try:
                await self._step()
            except JournalError as error:
                logger.error(
                    "upload journal cannot be written (%s); uploads pause for %.0f s, "
                    "recording goes on; free disk space in the data dir",
                    error,
                    JOURNAL_RETRY_SECONDS,
                )
                await self._sleep(JOURNAL_RETRY_SECONDS)

    async def _step(self) -> None:
        if not self._online:
            await self._wait_for_upstream()
        await self._housekeeping()
        now = time.time()
        classes = self._carried()
        record = await asyncio.to_thread(
            lambda: self.journal.next_ready(
                now, newest_first=self._settings.newest_first, classes=classes
            )
        )
        if record is None:
            self._idle.set()
            next_at = await asyncio.to_thread(self.journal.next_attempt_time, classes)
            await self._refresh_gauges()
            await self._sleep(DAY if next_at is None else max(next_at - now, 0.05))
            return
        try:
            await self._process(record)
        except Exception as error:
            await self._strike(record, error)
            raise
        self._strikes.pop(record.id, None)
        await self._refresh_gauges()

    async def _strike(self, record: FileRecord, error: Exception) -> None:
        """An unexpected failure on one file: after ROW_STRIKES it is failed, the queue goes on."""
        self._strikes[record.id] += 1
        if self._strikes[record.id] < ROW_STRIKES:
            return
        reason = f"broke the upload worker {ROW_STRIKES} times: {describe(error)}"
        self._strikes.pop(record.id, None)
        try:
            await self._apply(record, UploadEvent.FATAL_ERROR, detail=reason)
        except (InvalidTransition, JournalError):
            return
        logger.error("upload %d failed and set aside: %s", record.id, reason)

    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        """Sleep until `seconds` pass or `event` is set (also while we were busy)."""
        event = self._wakeup if event is None else event
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()

    async def _wait_for_upstream(self) -> None:
        """Probe on schedule (new files do not hurry it); an operator's wake() does."""
        delay = PROBE_MIN_SECONDS
        self._probe_now.clear()
        while True:
            try:
                await self._probe()
            except CredentialsRefused as error:
                self._set_online(False, str(error))
                await self._sleep(BACKOFF_CAP_SECONDS, self._probe_now)
                continue
            except ClockSkewed as error:
                self._set_online(False, str(error))
                await self._note_waiting(str(error))
                await self._sleep(delay, self._probe_now)
                delay = next_probe_delay(delay)
                continue
            except UpstreamError as error:
                self._set_online(False, str(error))
                await self._sleep(delay, self._probe_now)
                delay = next_probe_delay(delay)
                continue
            self._set_online(True, "")
            return

    async def _probe(self) -> None:
        """Probe the upstream by a usable uplink (the kernel's route may be the link that is
        down while another carries); one that cannot reach it is dropped, the next probe goes
        by another. Unbound: by the store, the kernel's route."""
        pool = self.pool
        uplink = pool.probe_uplink() if pool is not None else None
        if pool is None or uplink is None:
            await asyncio.to_thread(self.store.probe)
            return
        try:
            await asyncio.to_thread(pool.store_for(uplink).probe)
        except UpstreamUnreachable as error:
            pool.failed(uplink, error)
            raise

    def _others_carry(self, record: FileRecord) -> bool:
        """Whether uplinks still carry other classes when `record`'s has none left: the
        uploader stays online for those (the pool looks again for this one)."""
        pool = self.pool
        if pool is None or not pool.bound:
            return False
        carried = pool.carried_classes()
        return bool(carried) and class_of(record.kind) not in carried

    def _set_online(self, online: bool, reason: str) -> None:
        self._metrics.upstream_up.set(1 if online else 0)
        if online and not self._online:
            logger.info("upstream %s reachable: uploads resume", self.store.endpoint)
            for callback in self.on_reconnect:
                callback()
        elif not online:
            now = time.monotonic()
            if offline_warning_due(self._online, now, self._last_offline_log):
                logger.warning("upstream unavailable, uploads wait: %s", reason)
                self._last_offline_log = now
        self._online = online

    async def _note_waiting(self, reason: str) -> None:
        """The upstream refuses every file for one reason: each pending row says so (at each
        probe, at most every PROBE_MAX_SECONDS once the probe has backed off)."""
        await asyncio.to_thread(self.journal.note_waiting, reason)

    async def _housekeeping(self) -> None:
        """Prune the event log on a monotonic schedule, by stored time, minus the clock's steps."""
        sample = self._clock()
        self.observe_clock(sample)
        if prune_due(self._last_prune, sample.monotonic, self._settings.prune_interval_seconds):
            before = sample.wall - self._settings.event_retention_days * DAY
            ranges = prune_ranges(self._steps.steps, before)
            pruned = await asyncio.to_thread(self.journal.prune_event_ranges, ranges)
            self._last_prune = sample.monotonic
            if pruned:
                logger.info(
                    "upload event log: pruned %d events older than %d days",
                    pruned,
                    self._settings.event_retention_days,
                )
        if not self._stale_checked and self._settings.stale_prefix:
            await self._abort_stale_uploads()
            self._stale_checked = True

    async def _abort_stale_uploads(self) -> None:
        try:
            found = await asyncio.to_thread(
                self.store.incomplete_uploads, self._settings.stale_prefix
            )
            known = await asyncio.to_thread(self.journal.active_upload_ids)
            for key, upload_id in found:
                if upload_id not in known:
                    await asyncio.to_thread(self.store.abort, key, upload_id)
                    await asyncio.to_thread(
                        self.journal.log, None, "stale_aborted", f"{key} upload {upload_id}"
                    )
                    logger.info("aborted stale multipart upload of %s (%s)", key, upload_id)
        except UpstreamError as error:
            logger.warning("could not clean stale multipart uploads: %s", error)

    async def _refresh_gauges(self) -> None:
        files, size, oldest = await asyncio.to_thread(self.journal.pending_totals)
        self._metrics.queue_files.set(files)
        self._metrics.queue_bytes.set(size)
        self._metrics.oldest_pending.set(0 if oldest is None else max(time.time() - oldest, 0))

    # -- one file ------------------------------------------------------------------------------

    async def _apply(self, record: FileRecord, event: UploadEvent, **kwargs: object) -> FileState:
        return await apply_event(self.journal, record, event, **kwargs)

    async def _process(self, record: FileRecord) -> None:
        transfer = self._transfer
        if transfer is None:
            raise RuntimeError("no upstream configured: the upload worker does not run")
        try:
            await asyncio.to_thread(check_source, record)
            state = record.state
            if state is FileState.QUEUED:
                state = await self._apply(record, UploadEvent.START, detail=record.key)
            if state is FileState.UPLOADING:
                state = await self._send(transfer, record)
            if state is FileState.COMPLETING:
                state = await transfer.complete(record)
            if state is FileState.VERIFYING:
                await transfer.verify(record)
        except SourceProblem as problem:  # KeyTaken too
            transfer.forget(record.id)
            logger.error("upload %d failed: %s", record.id, problem)
            await self._apply(record, UploadEvent.FATAL_ERROR, detail=str(problem))
        except UploadLost as error:
            transfer.forget(record.id)
            lost = await asyncio.to_thread(
                self.journal.count_events, record.id, UploadEvent.UPLOAD_LOST.value
            )
            if lost + 1 >= MAX_UPLOADS_LOST:
                reason = f"started over {lost + 1} times, last because {error}; not again"
                logger.error("upload %d failed: %s", record.id, reason)
                await self._apply(record, UploadEvent.FATAL_ERROR, detail=reason)
                return
            logger.warning("upload %d: %s; starting the file over", record.id, error)
            await self._apply(record, UploadEvent.UPLOAD_LOST, detail=str(error))
        except UpstreamUnreachable as error:
            if not self._others_carry(record):
                self._set_online(False, str(error))
            else:
                logger.info("upload %d waits for an uplink: %s", record.id, error)
        except ClockSkewed as error:
            self._set_online(False, str(error))  # the warning, once a minute
            await self._retry_later(record, error, quiet=True)
        except CredentialsRefused as error:
            self._set_online(False, str(error))
            await self._retry_later(record, error)
        except UpstreamError as error:
            await self._retry_later(record, error)

    async def _send(self, transfer: FileTransfer, record: FileRecord) -> FileState:
        """Send the file's bytes; a multipart upload stops at a part boundary (and stays
        UPLOADING, its parts journaled) when a file of a higher class may go, or its own class
        is no longer carried."""
        if record.size <= MIN_PART_SIZE:  # one part at most, whatever the part size: no boundary
            return await transfer.send(record)
        self._yield_to = None
        watcher = asyncio.create_task(self._watch_queue(record), name=f"upload {record.id} watch")
        try:
            state = await transfer.send(record, lambda: self._should_yield(record))
        finally:
            watcher.cancel()
            (outcome,) = await asyncio.gather(watcher, return_exceptions=True)
            if isinstance(outcome, Exception):
                logger.error("upload %d: the queue watch failed: %s", record.id, describe(outcome))
        if state is FileState.UPLOADING:
            logger.info(
                "upload %d (%s) stopped at a part boundary, its parts kept: %s",
                record.id,
                class_of(record.kind).value,
                f"upload {self._yield_to.id} ({class_of(self._yield_to.kind).value}) goes first"
                if self._yield_to is not None
                else "no uplink carries its class now",
            )
        return state

    def _should_yield(self, record: FileRecord) -> bool:
        return self._yield_to is not None or class_of(record.kind) not in self._carried()

    async def _watch_queue(self, current: FileRecord) -> None:
        """While `current` is sent: find a file of a higher class that may go (queued, retried,
        or due after its backoff); `current` then stops at its next part boundary."""
        higher_rank = RANK[class_of(current.kind)]
        while True:
            self._requeued.clear()
            now, classes = time.time(), self._carried()
            higher = frozenset(cls for cls in classes if RANK[cls] < higher_rank)
            try:  # in a thread: the whole queue is read and sorted (a weekend's backlog)
                first, due = await asyncio.to_thread(self._look_ahead, now, classes, higher)
            except JournalError:
                return  # the worker meets it too, and says so
            if outranks(first, current):
                self._yield_to = first
                return
            await self._sleep(DAY if due is None else max(due - now, 0.05), self._requeued)

    def _look_ahead(
        self, now: float, classes: frozenset[UploadClass], higher: frozenset[UploadClass]
    ) -> tuple[FileRecord | None, float | None]:
        """The file the queue would send now, and when the first file of a class in `higher`
        is due (blocking: reads the journal)."""
        files, blocked = self.journal.queue()
        first = pick_next(
            files, now, newest_first=self._settings.newest_first, blocked=blocked, classes=classes
        )
        return first, next_due(files, blocked=blocked, classes=higher)

    async def _retry_later(
        self, record: FileRecord, error: Exception, *, quiet: bool = False
    ) -> None:
        fresh = await asyncio.to_thread(self.journal.get, record.id)
        attempts = (fresh.attempts if fresh else record.attempts) + 1
        wait = backoff_seconds(attempts, self._random)
        logger.log(
            logging.DEBUG if quiet else logging.WARNING,
            "upload %d attempt %d failed (%s); next try in %.0f s",
            record.id,
            attempts,
            error,
            wait,
        )
        await self._apply(
            record, UploadEvent.RETRYABLE_ERROR, detail=str(error), retry_at=time.time() + wait
        )

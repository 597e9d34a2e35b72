"""The upload scheduler: takes files from the journal and brings them upstream, verified.

It resumes from the journal after a crash, waits without a busy loop while the upstream is away,
retries with backoff and jitter, and holds a bandwidth cap. Blocking work (minio, SQLite, file
reads) runs in threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
from edged.upload.journal import FileRecord, Journal, JournalError, PartRecord
from edged.upload.policy import (
    BACKOFF_CAP_SECONDS,
    PartSpan,
    TokenBucket,
    backoff_seconds,
    plan_parts,
)
from edged.upload.s3 import S3Store
from edged.upload.state import FileState, InvalidTransition, UploadEvent
from edged.upload.verify import etags_of_bytes, existing_object, verification_problems

logger = logging.getLogger(__name__)

PRIORITIES = {"clip": 0, "highlight": 0, "recording": 10, "sidecar": 10, "file": 20}
PROBE_MIN_SECONDS = 1.0
PROBE_MAX_SECONDS = 30.0
JOURNAL_RETRY_SECONDS = 30.0
DAY = 86400.0
ROW_STRIKES = 3  # a file that breaks the worker this often is set aside as failed
MAX_UPLOADS_LOST = 5  # a file started over this often is failed: something is wrong upstream


@dataclass(frozen=True)
class UploaderSettings:
    part_size: int
    parallel_parts: int
    bandwidth_limit: int
    newest_first: bool = False
    event_retention_days: int = 30
    stale_prefix: str = ""  # unfinished uploads under it that the journal does not know go
    prune_interval_seconds: float = DAY  # of monotonic time between two prunes of the event log


class SourceProblem(Exception):
    """The source file is gone or changed since it was queued: it cannot be uploaded as queued."""


class KeyTaken(SourceProblem):
    """The upstream holds the key with other bytes: never replaced."""


_FORWARD = {  # the way to done of a file found already upstream
    FileState.UPLOADING: UploadEvent.PARTS_SENT,
    FileState.COMPLETING: UploadEvent.COMPLETED,
    FileState.VERIFYING: UploadEvent.VERIFIED,
}


def read_clock() -> ClockSample:
    return ClockSample(wall=time.time(), monotonic=time.monotonic())


@dataclass
class Digest:
    """The sha256 and the MD5 of a whole file, fed its bytes in order (the bytes sent)."""

    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    md5: hashlib._Hash = field(default_factory=lambda: hashlib.md5())  # noqa: S324 - S3's ETag

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)


def _read_span(path: str, span: PartSpan, digest: Digest | None = None) -> tuple[bytes, str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(span.offset)
            data = handle.read(span.size)
    except OSError as error:
        raise SourceProblem(f"{path} cannot be read: {error.strerror}") from None
    if len(data) != span.size:
        raise SourceProblem(f"{path} is shorter than when it was queued")
    if digest is not None:
        digest.update(data)
    return data, hashlib.md5(data).hexdigest()  # noqa: S324 - S3's part checksum


def _read_as_sent(path: str, size: int, part_size: int) -> tuple[Digest, list[str]]:
    """Read a file part by part as it is sent: its digest and each part's md5 (blocking)."""
    digest = Digest()
    spans = plan_parts(size, part_size) or [PartSpan(1, 0, size)]
    return digest, [_read_span(path, span, digest)[1] for span in spans]


def _etags_of_file(path: str, size: int, part_size: int) -> set[str]:
    """The ETags an object of this file's bytes may carry (blocking)."""
    digest, part_md5s = _read_as_sent(path, size, part_size)
    return etags_of_bytes(digest.md5.hexdigest(), part_md5s, bool(plan_parts(size, part_size)))


def _check_source(record: FileRecord) -> None:
    try:
        facts = os.stat(record.path)
    except FileNotFoundError:
        raise SourceProblem(f"{record.path} was deleted before it was uploaded") from None
    except OSError as error:  # e.g. its folder was replaced by a file
        raise SourceProblem(f"{record.path} cannot be read: {error.strerror}") from None
    if facts.st_size != record.size or facts.st_mtime_ns != record.mtime_ns:
        raise SourceProblem(
            f"{record.path} changed since it was queued (size {record.size} -> {facts.st_size});"
            " refused: queue the new version again"
        )


class Uploader:
    """One per daemon; `start()` launches the worker, `stop()` ends it (idempotent)."""

    def __init__(
        self,
        journal: Journal,
        store: S3Store | None,
        settings: UploaderSettings,
        metrics: UploadMetrics,
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
        self._sent: dict[int, Digest] = {}  # file id -> the digest of the bytes sent
        self._online = False
        self._stale_checked = False
        self._last_prune: float | None = None  # monotonic
        self._clock: Callable[[], ClockSample] = read_clock
        self._steps = StepLedger(self._clock(), journal.last_event_id)
        self._random = random.SystemRandom()
        self.on_reconnect: list[Callable[[], None]] = []  # e.g. the clip replicator looks again
        self._last_offline_log = 0.0

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

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await supervisor.cancel("uploader")
            if self._own_supervisor:
                await supervisor.stop()

    def wake(self) -> None:
        """An operator's request: look at the journal, and try the upstream, now."""
        self._probe_now.set()
        self._new_work()

    def _new_work(self) -> None:
        """New work: look at the journal now, but keep to the upstream probe's schedule."""
        self._idle.clear()
        self._wakeup.set()

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
                priority=PRIORITIES.get(kind, PRIORITIES["file"]),
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
        record = await asyncio.to_thread(
            self.journal.next_ready, now, newest_first=self._settings.newest_first
        )
        if record is None:
            self._idle.set()
            next_at = await asyncio.to_thread(self.journal.next_attempt_time)
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
                await asyncio.to_thread(self.store.probe)
            except CredentialsRefused as error:
                self._set_online(False, str(error))
                await self._sleep(BACKOFF_CAP_SECONDS, self._probe_now)
                continue
            except ClockSkewed as error:
                self._set_online(False, str(error))
                await self._note_waiting(str(error))
                await self._sleep(delay, self._probe_now)
                delay = min(delay * 2, PROBE_MAX_SECONDS)
                continue
            except UpstreamError as error:
                self._set_online(False, str(error))
                await self._sleep(delay, self._probe_now)
                delay = min(delay * 2, PROBE_MAX_SECONDS)
                continue
            self._set_online(True, "")
            return

    def _set_online(self, online: bool, reason: str) -> None:
        self._metrics.upstream_up.set(1 if online else 0)
        if online and not self._online:
            logger.info("upstream %s reachable: uploads resume", self.store.endpoint)
            for callback in self.on_reconnect:
                callback()
        elif not online:
            now = time.monotonic()
            # One warning per minute at most; the metric says the rest.
            if self._online or now - self._last_offline_log > 60:
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
        due = self._last_prune is None or (
            sample.monotonic - self._last_prune >= self._settings.prune_interval_seconds
        )
        if due:
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
        return await asyncio.to_thread(
            lambda: self.journal.apply(record.id, event, **kwargs)  # type: ignore[arg-type]
        )

    async def _process(self, record: FileRecord) -> None:
        try:
            await asyncio.to_thread(_check_source, record)
            state = record.state
            if state is FileState.QUEUED:
                state = await self._apply(record, UploadEvent.START, detail=record.key)
            if state is FileState.UPLOADING:
                state = await self._send(record)
            if state is FileState.COMPLETING:
                state = await self._complete(record)
            if state is FileState.VERIFYING:
                await self._verify(record)
        except SourceProblem as problem:  # KeyTaken too
            self._sent.pop(record.id, None)
            logger.error("upload %d failed: %s", record.id, problem)
            await self._apply(record, UploadEvent.FATAL_ERROR, detail=str(problem))
        except UploadLost as error:
            self._sent.pop(record.id, None)
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
            self._set_online(False, str(error))
        except ClockSkewed as error:
            self._set_online(False, str(error))  # the warning, once a minute
            await self._retry_later(record, error, quiet=True)
        except CredentialsRefused as error:
            self._set_online(False, str(error))
            await self._retry_later(record, error)
        except UpstreamError as error:
            await self._retry_later(record, error)

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

    async def _send(self, record: FileRecord) -> FileState:
        part_size = record.part_size or self._settings.part_size
        spans = plan_parts(record.size, part_size)
        if (not spans or not record.upload_id) and await self._already_upstream(record):
            return FileState.DONE
        if not spans:
            digest = Digest()
            data, md5 = await asyncio.to_thread(
                _read_span, record.path, PartSpan(1, 0, record.size), digest
            )
            self._check_digest(record, digest)
            await self._throttle(len(data))
            etag = await asyncio.to_thread(
                self.store.put, record.key, data, record.sha256, _content_type(record.key)
            )
            self._metrics.bytes.inc(len(data))
            await asyncio.to_thread(
                self.journal.record_part, record.id, PartRecord(1, len(data), md5, etag)
            )
            self._sent[record.id] = digest
            return await self._apply(record, UploadEvent.PARTS_SENT)

        upload_id = record.upload_id
        if not upload_id:
            upload_id = await asyncio.to_thread(self.store.create_upload, record.key, record.sha256)
            await asyncio.to_thread(self.journal.set_upload_id, record.id, upload_id, part_size)
            done: dict[int, PartRecord] = {}
        else:
            done = {
                part.number: part for part in await asyncio.to_thread(self.journal.parts, record.id)
            }
            done = await self._cross_check(record, upload_id, done, spans)
        if done:
            logger.info(
                "upload %d resumes: %d of %d parts already acknowledged",
                record.id,
                len(done),
                len(spans),
            )
        digest = Digest()
        # One reader takes the parts in order (so the digest is of the bytes sent, in order);
        # `parallel_parts` senders take them from a queue of one.
        ready: asyncio.Queue[tuple[PartSpan, bytes, str] | None] = asyncio.Queue(1)
        senders = self._settings.parallel_parts
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_parts(record, spans, done, digest, ready, senders))
                for _ in range(senders):
                    group.create_task(self._send_parts(record, upload_id, ready))
        except ExceptionGroup as failures:
            raise _most_telling(failures) from None
        if digest.sha256.hexdigest() != record.sha256:
            await self._abort_quietly(record, upload_id)
        self._check_digest(record, digest)
        self._sent[record.id] = digest
        return await self._apply(record, UploadEvent.PARTS_SENT, detail=f"{len(spans)} parts")

    async def _already_upstream(self, record: FileRecord, upload_id: str = "") -> bool:
        """Before an object is written: True when the key holds these bytes (the file is done);
        KeyTaken when it holds other bytes; False when there is nothing there (or to keep)."""
        facts = await asyncio.to_thread(self.store.stat, record.key)
        etags: set[str] = set()
        if facts is not None:
            part_size = record.part_size or self._settings.part_size
            etags = await asyncio.to_thread(_etags_of_file, record.path, record.size, part_size)
        decision = existing_object(facts, record.size, record.sha256, etags)
        if decision == "send":
            return False
        if decision == "refuse":
            if upload_id:
                await self._abort_quietly(record, upload_id)
            raise KeyTaken(f"upstream already holds {record.key} with other bytes; not replaced")
        assert facts is not None  # noqa: S101 - "done" needs an object
        said = f"already upstream with the same bytes (etag {facts.etag}); nothing sent"
        state = (await asyncio.to_thread(self.journal.require, record.id)).state
        while state is not FileState.DONE:
            state = await self._apply(record, _FORWARD[state], detail=said, etag=facts.etag)
        self._sent.pop(record.id, None)
        self._metrics.last_success.set(time.time())
        logger.info("upload %d: %s %s", record.id, record.key, said)
        return True

    @staticmethod
    def _check_digest(record: FileRecord, digest: Digest) -> None:
        """The bytes read for sending must be the bytes hashed at enqueue (SD-card bit rot)."""
        sent = digest.sha256.hexdigest()
        if sent != record.sha256:
            raise SourceProblem(
                f"{record.path} now reads as sha256 {sent}, not the {record.sha256} it was "
                "queued with (changed on disk, or bit rot); not uploaded"
            )

    async def _abort_quietly(self, record: FileRecord, upload_id: str) -> None:
        try:
            await asyncio.to_thread(self.store.abort, record.key, upload_id)
        except UpstreamError as error:
            logger.warning("upload %d: could not abort %s: %s", record.id, upload_id, error)

    async def _read_parts(
        self,
        record: FileRecord,
        spans: list[PartSpan],
        done: dict[int, PartRecord],
        digest: Digest,
        ready: asyncio.Queue[tuple[PartSpan, bytes, str] | None],
        senders: int,
    ) -> None:
        for span in spans:
            data, md5 = await asyncio.to_thread(_read_span, record.path, span, digest)
            held = done.get(span.number)
            if held is None:
                await ready.put((span, data, md5))
            elif held.md5 != md5:
                raise SourceProblem(
                    f"{record.path} changed after part {span.number} was sent; not uploaded"
                )
        for _ in range(senders):
            await ready.put(None)

    async def _send_parts(
        self,
        record: FileRecord,
        upload_id: str,
        ready: asyncio.Queue[tuple[PartSpan, bytes, str] | None],
    ) -> None:
        while (item := await ready.get()) is not None:
            await self._send_part(record, upload_id, *item)

    async def _cross_check(
        self, record: FileRecord, upload_id: str, done: dict[int, PartRecord], spans: list[PartSpan]
    ) -> dict[int, PartRecord]:
        """Reconcile the journal with the parts the server holds; the journal stays the truth.

        A journal part the server lacks goes again. A part the server holds but the journal does
        not (acknowledged just as the process died) is adopted only when its ETag equals the md5
        of the same bytes read here now.
        """
        held = await asyncio.to_thread(self.store.list_parts, record.key, upload_id)
        missing = [number for number, part in done.items() if held.get(number) != part.etag]
        if missing:
            logger.warning(
                "upload %d: server lacks parts %s the journal holds; re-sending", record.id, missing
            )
        kept = {number: part for number, part in done.items() if number not in missing}
        for span in spans:
            if span.number in kept or span.number not in held:
                continue
            _, md5 = await asyncio.to_thread(_read_span, record.path, span)
            if held[span.number] == md5:
                part = PartRecord(span.number, span.size, md5, md5)
                await asyncio.to_thread(self.journal.record_part, record.id, part)
                kept[span.number] = part
        return kept

    async def _throttle(self, size: int) -> None:
        wait = self._bucket.reserve(size, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send_part(
        self, record: FileRecord, upload_id: str, span: PartSpan, data: bytes, md5: str
    ) -> None:
        await self._throttle(span.size)
        try:
            etag = await asyncio.to_thread(
                self.store.upload_part, record.key, upload_id, span.number, data
            )
        except UpstreamError:
            self._metrics.parts.labels("error").inc()
            raise
        if etag != md5:
            self._metrics.parts.labels("error").inc()
            raise UpstreamError(
                f"part {span.number} of {record.key}: server ETag {etag} is not its md5 {md5}"
            )
        await asyncio.to_thread(
            self.journal.record_part, record.id, PartRecord(span.number, span.size, md5, etag)
        )
        self._metrics.parts.labels("ok").inc()
        self._metrics.bytes.inc(span.size)

    async def _sent_digest(self, record: FileRecord, parts: list[PartRecord]) -> Digest:
        """The digest of the bytes sent: kept from sending, or (after a restart) read again,
        each part checked against the md5 the server acknowledged."""
        kept = self._sent.get(record.id)
        if kept is not None:
            return kept
        part_size = record.part_size or self._settings.part_size
        digest, md5s = await asyncio.to_thread(_read_as_sent, record.path, record.size, part_size)
        sent = {part.number: part.md5 for part in parts}
        for number, md5 in enumerate(md5s, start=1):
            if sent.get(number) != md5:
                raise SourceProblem(
                    f"{record.path} changed after part {number} was sent; not uploaded"
                )
        self._check_digest(record, digest)
        self._sent[record.id] = digest
        return digest

    async def _accepted(self, record: FileRecord) -> tuple[FileRecord, list[PartRecord], set[str]]:
        fresh = await asyncio.to_thread(self.journal.require, record.id)
        parts = await asyncio.to_thread(self.journal.parts, record.id)
        digest = await self._sent_digest(fresh, parts)
        multipart = bool(plan_parts(fresh.size, fresh.part_size or self._settings.part_size))
        accepted = etags_of_bytes(digest.md5.hexdigest(), [part.md5 for part in parts], multipart)
        return fresh, parts, accepted

    async def _complete(self, record: FileRecord) -> FileState:
        fresh, parts, accepted = await self._accepted(record)
        if not plan_parts(fresh.size, fresh.part_size or self._settings.part_size):
            return await self._apply(record, UploadEvent.COMPLETED, etag=parts[0].etag)
        if await self._already_upstream(fresh, fresh.upload_id):
            return FileState.DONE
        try:
            etag = await asyncio.to_thread(
                self.store.complete,
                record.key,
                fresh.upload_id,
                [(part.number, part.etag) for part in parts],
            )
        except UploadLost:
            # Completed just before a crash? Then the object is there with an ETag of its bytes.
            facts = await asyncio.to_thread(self.store.stat, record.key)
            if facts is None or facts.etag not in accepted:
                raise
            etag = facts.etag
        if etag not in accepted:
            raise UploadLost(
                f"completion ETag {etag} is none of {sorted(accepted)} (the bytes sent)"
            )
        return await self._apply(record, UploadEvent.COMPLETED, etag=etag)

    async def _verify(self, record: FileRecord) -> None:
        fresh, _, accepted = await self._accepted(record)
        facts = await asyncio.to_thread(self.store.stat, record.key)
        problems = verification_problems(facts, fresh.size, fresh.sha256, accepted)
        if problems:
            raise UploadLost("verification failed: " + "; ".join(problems))
        if facts is not None and not facts.sha256:
            logger.warning(
                "upload %d: %s has no sha256 metadata upstream (lost by the server?); verified "
                "by size and ETag %s of the bytes sent",
                record.id,
                record.key,
                facts.etag,
            )
        # The digest is of the bytes sent, in order, and equals the sha256 taken at enqueue;
        # an unchanged size and mtime say the file is still the one queued.
        await asyncio.to_thread(_check_source, fresh)
        await self._apply(record, UploadEvent.VERIFIED, detail=f"etag {facts and facts.etag}")
        self._sent.pop(record.id, None)
        self._metrics.last_success.set(time.time())
        logger.info(
            "upload %d verified: %s (%d bytes, etag %s)",
            record.id,
            record.key,
            record.size,
            facts and facts.etag,
        )


def _most_telling(failures: ExceptionGroup[Exception]) -> Exception:
    """The one error of several failed parts that decides what happens to the file."""
    errors = list(failures.exceptions)
    for kind in (SourceProblem, UploadLost, ClockSkewed, CredentialsRefused, UpstreamUnreachable):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]


def _content_type(key: str) -> str:
    if key.endswith(".mp4"):
        return "video/mp4"
    if key.endswith(".json"):
        return "application/json"
    return "application/octet-stream"

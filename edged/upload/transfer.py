"""The transfer of one file upstream: a single PUT or a multipart upload (resumed from the
journal's parts), its completion and its verification. Blocking work (minio, SQLite, file reads)
runs in threads; what an ETag proves is decided in edged/upload/verify.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from edged.metrics import UploadMetrics
from edged.s3bucket import (
    ClockSkewed,
    CredentialsRefused,
    UploadLost,
    UpstreamError,
    UpstreamUnreachable,
)
from edged.upload.classes import UploadClass, class_of
from edged.upload.dealer import Lane, Part, PartDealer
from edged.upload.journal import FileRecord, Journal, PartRecord
from edged.upload.policy import PartSpan, TokenBucket, plan_parts
from edged.upload.s3 import S3Store
from edged.upload.source import (
    Digest,
    KeyTaken,
    SourceProblem,
    check_digest,
    check_source,
    etags_of_file,
    first_changed_part,
    read_as_sent,
    read_span,
)
from edged.upload.spread import LinkShare, request_order, senders_per_uplink, spread_part_size
from edged.upload.state import FileState, UploadEvent
from edged.upload.uplinks import Uplink
from edged.upload.verify import etags_of_bytes, existing_object, verification_problems

logger = logging.getLogger(__name__)

FORWARD = {  # the way to done of a file found already upstream
    FileState.UPLOADING: UploadEvent.PARTS_SENT,
    FileState.COMPLETING: UploadEvent.COMPLETED,
    FileState.VERIFYING: UploadEvent.VERIFIED,
}

ShouldYield = Callable[[], bool]
T = TypeVar("T")


class Uplinks(Protocol):
    """What a transfer asks of the pool of uplinks (edged/upload/links.py UplinkPool)."""

    @property
    def bound(self) -> bool: ...  # connections bound to their uplink (else the kernel's route)
    def usable(self, cls: UploadClass) -> list[Uplink]: ...
    def store_for(self, uplink: Uplink) -> S3Store: ...
    def sent(self, uplink: Uplink, nbytes: int, seconds: float) -> None: ...
    def failed(self, uplink: Uplink, error: Exception) -> None: ...
    def throughput(self, uplink: Uplink) -> float: ...


def never_yield() -> bool:
    return False


async def apply_event(
    journal: Journal, record: FileRecord, event: UploadEvent, **kwargs: object
) -> FileState:
    """Apply `event` to the file's row (in a thread): its new state."""
    return await asyncio.to_thread(
        lambda: journal.apply(record.id, event, **kwargs)  # type: ignore[arg-type]
    )


class FileTransfer:
    """Brings one file's bytes upstream, completes and verifies them; the journal keeps the
    progress. Keeps the digest of the bytes sent per file until it is verified or forgotten."""

    def __init__(
        self,
        journal: Journal,
        store: S3Store,
        metrics: UploadMetrics,
        bucket: TokenBucket,
        *,
        part_size: int,
        parallel_parts: int,
        pool: Uplinks | None = None,
    ) -> None:
        self._journal = journal
        self._store = store
        self._pool = pool  # the uplinks; None: every request by `store`
        self._metrics = metrics
        self._bucket = bucket
        self._part_size = part_size
        self._parallel_parts = parallel_parts
        self._sent: dict[int, Digest] = {}  # file id -> the digest of the bytes sent

    def forget(self, file_id: int) -> None:
        """Drop what is kept of a file's bytes sent (it failed or starts over)."""
        self._sent.pop(file_id, None)

    async def _apply(self, record: FileRecord, event: UploadEvent, **kwargs: object) -> FileState:
        return await apply_event(self._journal, record, event, **kwargs)

    def _part_size_of(self, record: FileRecord) -> int:
        return record.part_size or self._part_size

    def _multipart(self, record: FileRecord) -> bool:
        return bool(plan_parts(record.size, self._part_size_of(record)))

    def _usable(self, pool: Uplinks, record: FileRecord) -> list[Uplink]:
        uplinks = pool.usable(class_of(record.kind))
        if not uplinks:
            raise UpstreamUnreachable(f"no uplink may carry a {record.kind} now; it waits")
        return uplinks

    def _lanes(self, record: FileRecord) -> list[Lane]:
        """The senders of a file: `parallel_parts` shared over the uplinks that may carry it,
        the fastest first, each seeded with its share of its uplink's measured throughput."""
        if self._pool is None:
            return [Lane(None, self._store) for _ in range(self._parallel_parts)]
        pool = self._pool
        uplinks = sorted(self._usable(pool, record), key=pool.throughput, reverse=True)
        each = senders_per_uplink(self._parallel_parts, len(uplinks))
        return [
            Lane(uplink, pool.store_for(uplink), rate=pool.throughput(uplink) / each)
            for uplink in uplinks
            for _ in range(each)
        ]

    def _may_send(self, record: FileRecord) -> Callable[[Lane], bool]:
        """Whether a sender's uplink may still carry the file (its budget not spent since)."""
        pool, cls = self._pool, class_of(record.kind)
        return lambda lane: pool is None or lane.uplink is None or lane.uplink in pool.usable(cls)

    async def _by_uplink(
        self, record: FileRecord, call: Callable[[S3Store], T], nbytes: int = 0
    ) -> T:
        """`call` (a small request, or a whole PUT of `nbytes`) in a thread, by the file's first
        usable uplink, the unmetered first, then the fastest; a PUT's bytes are charged to it
        (pool.sent). One that cannot reach the upstream is dropped and the next one tried."""
        pool = self._pool
        if pool is None:
            return await asyncio.to_thread(call, self._store)
        tried: set[str] = set()
        while True:
            usable = self._usable(pool, record)
            uplink = request_order(usable, [pool.throughput(each) for each in usable])[0]
            started = time.monotonic()
            try:
                result = await asyncio.to_thread(call, pool.store_for(uplink))
            except UpstreamUnreachable as error:
                if not pool.bound or uplink.interface in tried:
                    raise
                tried.add(uplink.interface)
                pool.failed(uplink, error)
                if not pool.usable(class_of(record.kind)):
                    raise
                continue
            if nbytes:  # a small request proves no link (a half-working one passes it too)
                pool.sent(uplink, nbytes, time.monotonic() - started)
            return result

    # -- sending -------------------------------------------------------------------------------

    async def send(self, record: FileRecord, should_yield: ShouldYield = never_yield) -> FileState:
        """UPLOADING: send the bytes (what the journal holds is not sent again).

        A multipart upload asks `should_yield()` before each part it has still to send (as it
        reads it, and again as a sender would take it): True stops it there (the parts in flight
        finish and are journaled, those read ahead wait) and it returns UPLOADING.
        """
        part_size = self._part_size_of(record)
        spans = plan_parts(record.size, part_size)
        if (not spans or not record.upload_id) and await self._already_upstream(record):
            return FileState.DONE
        if not spans:
            return await self._put_whole(record)
        lanes = self._lanes(record)
        if not record.upload_id and len({lane.link for lane in lanes}) > 1:
            # A new upload over several uplinks: parts sized so that they share it well (a
            # plan per size tried: a thread's work for a file of gigabytes).
            rates = [lane.rate for lane in lanes]
            part_size = await asyncio.to_thread(spread_part_size, record.size, part_size, rates)
            spans = plan_parts(record.size, part_size)
        return await self._send_multipart(record, spans, part_size, lanes, should_yield)

    async def _put_whole(self, record: FileRecord) -> FileState:
        digest = Digest()
        data, md5 = await asyncio.to_thread(
            read_span, record.path, PartSpan(1, 0, record.size), digest
        )
        check_digest(record, digest)
        await self._throttle(len(data))
        etag = await self._by_uplink(
            record,
            lambda store: store.put(record.key, data, record.sha256, content_type(record.key)),
            len(data),
        )
        self._metrics.bytes.inc(len(data))
        await asyncio.to_thread(
            self._journal.record_part, record.id, PartRecord(1, len(data), md5, etag)
        )
        self._sent[record.id] = digest
        return await self._apply(record, UploadEvent.PARTS_SENT)

    async def _send_multipart(
        self,
        record: FileRecord,
        spans: list[PartSpan],
        part_size: int,
        lanes: list[Lane],
        should_yield: ShouldYield,
    ) -> FileState:
        upload_id, done = await self._start_or_resume(record, spans, part_size)
        if done:
            logger.info(
                "upload %d resumes: %d of %d parts already acknowledged",
                record.id,
                len(done),
                len(spans),
            )
        digest = Digest()
        # One reader takes the parts in order (so the digest is of the bytes sent, in order);
        # the senders of every uplink take them from the dealer, one read ahead.
        dealer = PartDealer(
            lanes,
            [span.size for span in spans if span.number not in done],
            should_yield=should_yield,
            may_send=self._may_send(record),
        )
        shares = {lane.link: LinkShare() for lane in lanes}  # each uplink's time, shared
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(
                    self._read_parts(record, spans, done, digest, dealer, should_yield)
                )
                for lane in lanes:
                    sender = self._send_parts(record, upload_id, dealer, lane, shares[lane.link])
                    group.create_task(sender)
        except ExceptionGroup as failures:
            raise most_telling(failures) from None
        if dealer.retired:
            logger.info(
                "upload %d: uplink %s may not carry it now (dropped, or its budget spent); %s",
                record.id,
                ", ".join(dealer.retired),
                "the others sent the rest" if not dealer.yielded else "the rest waits",
            )
        if reader.result() or dealer.yielded:
            return FileState.UPLOADING
        if digest.sha256.hexdigest() != record.sha256:
            await self._abort_quietly(record, upload_id)
        check_digest(record, digest)
        self._sent[record.id] = digest
        return await self._apply(record, UploadEvent.PARTS_SENT, detail=f"{len(spans)} parts")

    async def _start_or_resume(
        self, record: FileRecord, spans: list[PartSpan], part_size: int
    ) -> tuple[str, dict[int, PartRecord]]:
        """The multipart upload's id and the parts already acknowledged."""
        upload_id = record.upload_id
        if not upload_id:
            upload_id = await self._by_uplink(
                record, lambda store: store.create_upload(record.key, record.sha256)
            )
            await asyncio.to_thread(self._journal.set_upload_id, record.id, upload_id, part_size)
            return upload_id, {}
        parts = await asyncio.to_thread(self._journal.parts, record.id)
        done = {part.number: part for part in parts}
        return upload_id, await self._cross_check(record, upload_id, done, spans)

    async def _already_upstream(self, record: FileRecord, upload_id: str = "") -> bool:
        """Before an object is written: True when the key holds these bytes (the file is done);
        KeyTaken when it holds other bytes; False when there is nothing there (or to keep)."""
        facts = await self._by_uplink(record, lambda store: store.stat(record.key))
        etags: set[str] = set()
        if facts is not None:
            part_size = self._part_size_of(record)
            etags = await asyncio.to_thread(etags_of_file, record.path, record.size, part_size)
        decision = existing_object(facts, record.size, record.sha256, etags)
        if decision == "send":
            return False
        if decision == "refuse":
            if upload_id:
                await self._abort_quietly(record, upload_id)
            raise KeyTaken(f"upstream already holds {record.key} with other bytes; not replaced")
        assert facts is not None  # noqa: S101 - "done" needs an object
        said = f"already upstream with the same bytes (etag {facts.etag}); nothing sent"
        state = (await asyncio.to_thread(self._journal.require, record.id)).state
        while state is not FileState.DONE:
            state = await self._apply(record, FORWARD[state], detail=said, etag=facts.etag)
        self._sent.pop(record.id, None)
        self._metrics.last_success.set(time.time())
        logger.info("upload %d: %s %s", record.id, record.key, said)
        return True

    async def _abort_quietly(self, record: FileRecord, upload_id: str) -> None:
        try:
            await self._by_uplink(record, lambda store: store.abort(record.key, upload_id))
        except UpstreamError as error:
            logger.warning("upload %d: could not abort %s: %s", record.id, upload_id, error)

    async def _read_parts(
        self,
        record: FileRecord,
        spans: list[PartSpan],
        done: dict[int, PartRecord],
        digest: Digest,
        dealer: PartDealer,
        should_yield: ShouldYield,
    ) -> bool:
        """Read the parts in order, queue those to send; True when it stopped to yield."""
        stopped = False
        for span in spans:
            held = done.get(span.number)
            if held is None and (dealer.yielded or should_yield()):
                logger.info("upload %d yields before part %d", record.id, span.number)
                stopped = True
                break
            data, md5 = await asyncio.to_thread(read_span, record.path, span, digest)
            if held is None:
                await dealer.put((span, data, md5))
            elif held.md5 != md5:
                raise SourceProblem(
                    f"{record.path} changed after part {span.number} was sent; not uploaded"
                )
        await dealer.finish_reading()
        return stopped

    async def _send_parts(
        self, record: FileRecord, upload_id: str, dealer: PartDealer, lane: Lane, share: LinkShare
    ) -> None:
        """One sender: the parts the dealer gives it, by its uplink, until none is left for it.
        A part its uplink fails goes back to the others; the file fails with the last uplink.
        The sender's rate is its own; the pool gets the link's (`share`: its senders' time)."""
        while (part := await dealer.take(lane)) is not None:
            await self._throttle(part[0].size)
            started = time.monotonic()
            mark = share.start(started)
            try:
                await self._send_part(record, upload_id, lane.store, part)
            except UpstreamUnreachable as error:
                share.end(mark, time.monotonic())
                others = await dealer.lost(lane, part)
                self._uplink_failed(record, lane, error, others)
                if not others:
                    raise
                continue
            ended = time.monotonic()
            shared = share.end(mark, ended)
            await dealer.done(lane, ended - started)
            if self._pool is not None and lane.uplink is not None:
                self._pool.sent(lane.uplink, part[0].size, shared)

    def _uplink_failed(
        self, record: FileRecord, lane: Lane, error: UpstreamUnreachable, others: bool
    ) -> None:
        if self._pool is None or lane.uplink is None or not self._pool.bound:
            return  # the kernel's route: the uploader's probe decides when it is back
        self._pool.failed(lane.uplink, error)
        if others:
            logger.warning(
                "upload %d: uplink %s failed (%s); its parts go by the others",
                record.id,
                lane.link,
                error,
            )

    async def _cross_check(
        self, record: FileRecord, upload_id: str, done: dict[int, PartRecord], spans: list[PartSpan]
    ) -> dict[int, PartRecord]:
        """Reconcile the journal with the parts the server holds; the journal stays the truth.

        A journal part the server lacks goes again. A part the server holds but the journal does
        not (acknowledged just as the process died) is adopted only when its ETag equals the md5
        of the same bytes read here now.
        """
        held = await self._by_uplink(record, lambda store: store.list_parts(record.key, upload_id))
        kept, missing = reconcile_parts(done, held)
        if missing:
            logger.warning(
                "upload %d: server lacks parts %s the journal holds; re-sending", record.id, missing
            )
        for span in spans:
            if span.number in kept or span.number not in held:
                continue
            _, md5 = await asyncio.to_thread(read_span, record.path, span)
            if held[span.number] == md5:
                part = PartRecord(span.number, span.size, md5, md5)
                await asyncio.to_thread(self._journal.record_part, record.id, part)
                kept[span.number] = part
        return kept

    async def _throttle(self, size: int) -> None:
        wait = self._bucket.reserve(size, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send_part(
        self, record: FileRecord, upload_id: str, store: S3Store, part: Part
    ) -> None:
        span, data, md5 = part
        try:
            etag = await asyncio.to_thread(
                store.upload_part, record.key, upload_id, span.number, data
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
            self._journal.record_part, record.id, PartRecord(span.number, span.size, md5, etag)
        )
        self._metrics.parts.labels("ok").inc()
        self._metrics.bytes.inc(span.size)

    # -- completing and verifying --------------------------------------------------------------

    async def _sent_digest(self, record: FileRecord, parts: list[PartRecord]) -> Digest:
        """The digest of the bytes sent: kept from sending, or (after a restart) read again,
        each part checked against the md5 the server acknowledged."""
        kept = self._sent.get(record.id)
        if kept is not None:
            return kept
        part_size = self._part_size_of(record)
        digest, md5s = await asyncio.to_thread(read_as_sent, record.path, record.size, part_size)
        changed = first_changed_part({part.number: part.md5 for part in parts}, md5s)
        if changed is not None:
            raise SourceProblem(
                f"{record.path} changed after part {changed} was sent; not uploaded"
            )
        check_digest(record, digest)
        self._sent[record.id] = digest
        return digest

    async def _accepted(self, record: FileRecord) -> tuple[FileRecord, list[PartRecord], set[str]]:
        """The file's fresh row, its parts sent, and the ETags an object of those bytes carries."""
        fresh = await asyncio.to_thread(self._journal.require, record.id)
        parts = await asyncio.to_thread(self._journal.parts, record.id)
        digest = await self._sent_digest(fresh, parts)
        part_md5s = [part.md5 for part in parts]
        accepted = etags_of_bytes(digest.md5.hexdigest(), part_md5s, self._multipart(fresh))
        return fresh, parts, accepted

    async def complete(self, record: FileRecord) -> FileState:
        """COMPLETING: complete the multipart upload (a single PUT is complete already)."""
        fresh, parts, accepted = await self._accepted(record)
        if not self._multipart(fresh):
            return await self._apply(record, UploadEvent.COMPLETED, etag=parts[0].etag)
        if await self._already_upstream(fresh, fresh.upload_id):
            return FileState.DONE
        try:
            etags = [(part.number, part.etag) for part in parts]
            etag = await self._by_uplink(
                record, lambda store: store.complete(record.key, fresh.upload_id, etags)
            )
        except UploadLost:
            # Completed just before a crash? Then the object is there with an ETag of its bytes.
            facts = await self._by_uplink(record, lambda store: store.stat(record.key))
            if facts is None or facts.etag not in accepted:
                raise
            etag = facts.etag
        if etag not in accepted:
            raise UploadLost(
                f"completion ETag {etag} is none of {sorted(accepted)} (the bytes sent)"
            )
        return await self._apply(record, UploadEvent.COMPLETED, etag=etag)

    async def verify(self, record: FileRecord) -> None:
        """VERIFYING: the object upstream is the file sent, and the file is still the one queued."""
        fresh, _, accepted = await self._accepted(record)
        facts = await self._by_uplink(record, lambda store: store.stat(record.key))
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
        await asyncio.to_thread(check_source, fresh)
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


def reconcile_parts(
    done: Mapping[int, PartRecord], held: Mapping[int, str]
) -> tuple[dict[int, PartRecord], list[int]]:
    """The journal's parts the server still holds with the same ETag, and those it lacks."""
    missing = [number for number, part in done.items() if held.get(number) != part.etag]
    kept = {number: part for number, part in done.items() if number not in missing}
    return kept, missing


def most_telling(failures: ExceptionGroup[Exception]) -> Exception:
    """The one error of several failed parts that decides what happens to the file."""
    errors = list(failures.exceptions)
    for kind in (SourceProblem, UploadLost, ClockSkewed, CredentialsRefused, UpstreamUnreachable):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]


def content_type(key: str) -> str:
    """The Content-Type of an object sent in one PUT, from its key."""
    if key.endswith(".mp4"):
        return "video/mp4"
    if key.endswith(".json"):
        return "application/json"
    return "application/octet-stream"

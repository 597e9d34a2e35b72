"""The check-in desk: the guest book on the loop (every SQLite call in a thread), its batches sent
upstream through the uploader, and the daily retention prune."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import Counter

from edged.config import GuestConfig
from edged.guest.campaigns import label, labels
from edged.guest.members import load_or_create_secret
from edged.guest.signups import Batch, Guest, GuestBook, Removed, Signup
from edged.supervise import Supervisor
from edged.upload.naming import ObjectNaming
from edged.upload.uploader import Uploader

logger = logging.getLogger(__name__)

GUESTS_DIR = "guests"
STREAM = "guests"  # the object keys' stream part: <prefix>/<event>/<node>/guests/...
# Sign-ups arriving together leave in one batch: the sync waits this long after the first.
GATHER_SECONDS = 1.0
# A batch waits for the uploader's verdict; its file leaves the box once verified.
CHECK_SECONDS = 5.0
PRUNE_SECONDS = 24 * 3600.0
# A deletion whose WAL a reader kept (an export running) is truncated again this much later.
WAL_RETRY_SECONDS = 2.0
DAY = 24 * 3600.0


def batch_key(naming: ObjectNaming, batch: Batch) -> str:
    """The object key of a batch: under the event it was cut for, dated by its creation."""
    when = datetime.fromtimestamp(batch.created_at, UTC)
    return naming.for_event(batch.event).key(STREAM, when, batch.path.name)


class GuestDesk:
    """Sign-ups on the box and on their way upstream; `start()` runs the sync and the prune."""

    def __init__(
        self,
        data_dir: Path,
        config: GuestConfig,
        *,
        event: Callable[[], str],
        signups: Counter,
        uploader: Uploader | None = None,
        naming: Callable[[], ObjectNaming] | None = None,
    ) -> None:
        self.config = config
        self.book = GuestBook(data_dir / GUESTS_DIR)
        self.secret = load_or_create_secret(data_dir)
        self._event = event
        self._signups = signups
        self._uploader = uploader
        self._naming = naming
        self._wake = asyncio.Event()
        self._wal_kept = asyncio.Event()  # a deletion's old bytes still in the WAL
        for campaign in labels(config.campaigns):
            signups.labels(campaign)

    async def close(self) -> None:
        await asyncio.to_thread(self.book.close)

    @property
    def syncing(self) -> bool:
        """Whether sign-ups go upstream (an upstream is configured)."""
        return self._uploader is not None and self._uploader.configured

    def start(self, supervisor: Supervisor) -> None:
        if self.syncing:
            supervisor.spawn("guest-sync", self._sync)
        supervisor.spawn("guest-retention", self._prune_daily)

    @property
    def event(self) -> str:
        return self._event()

    async def sign_up(self, signup: Signup) -> tuple[Guest, bool]:
        """(the guest's row, whether new); a new one is counted and wakes the sync."""
        event, consent = self._event(), self.config.consent_text
        guest, new = await asyncio.to_thread(
            lambda: self.book.sign_up(signup, event=event, consent=consent, now=time.time())
        )
        if new:
            self._signups.labels(label(guest.campaign)).inc()
            self._wake.set()
        return guest, new

    async def guests(self) -> list[Guest]:
        return await asyncio.to_thread(self.book.guests)

    def is_member(self, signup_id: str) -> bool:
        """Whether a signed cookie's signup id is still in the book (memory: on the loop)."""
        return self.book.is_member(signup_id)

    async def delete(self, email: str) -> Removed:
        """Remove a guest (their cookie opens nothing more); a deletion note goes upstream only
        for a guest already handed to the uploader, and waits while no upstream is configured."""
        removed = await asyncio.to_thread(lambda: self.book.delete(email, now=time.time()))
        if removed.notes and not self.syncing:
            logger.warning(
                "a guest deletion note waits for an upstream: the guest was sent before, and no "
                "upstream is configured now; configure it to send the note"
            )
        if removed.rows:
            self._wake.set()
        self._retry_wal_if_kept()
        return removed

    def _retry_wal_if_kept(self) -> None:
        """A truncation (after a deletion, a prune, a verified batch's notes) found a reader:
        the retention task tries again (review s7a, G1)."""
        if self.book.wal_kept:
            self._wal_kept.set()

    async def _sync(self) -> None:
        """Cut batches, queue them, and drop each batch's file once the upstream verified it."""
        while True:
            await self._send_batches()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_SECONDS):
                    await self._wake.wait()
                await asyncio.sleep(GATHER_SECONDS)  # the rest of a crowd joins this batch
            self._wake.clear()

    async def _send_batches(self) -> None:
        uploader, naming = self._uploader, self._naming
        if uploader is None or naming is None:  # start() runs the sync only with both
            return
        while await asyncio.to_thread(self.book.cut_batch, time.time()) is not None:
            pass
        for batch in await asyncio.to_thread(self.book.unqueued):
            # Queued and sent before a crash came ahead of mark_queued: not sent again.
            if not await asyncio.to_thread(uploader.journal.is_done, str(batch.path)):
                await uploader.enqueue(batch.path, batch_key(naming(), batch), kind="signup")
            await asyncio.to_thread(self.book.mark_queued, batch.name)
            logger.info("guest batch %s queued: %d rows", batch.name, batch.rows)
        for batch in await asyncio.to_thread(self.book.in_flight):
            if await asyncio.to_thread(uploader.journal.is_done, str(batch.path)):
                await asyncio.to_thread(self.book.mark_removed, batch.name)
                self._retry_wal_if_kept()

    async def prune(self, now: float) -> int:
        before = now - self.config.retention_days * DAY
        removed = await asyncio.to_thread(self.book.prune, before)
        self._retry_wal_if_kept()
        if removed:
            logger.info(
                "guest retention: %d sign-ups older than %d days removed",
                removed,
                self.config.retention_days,
            )
        return removed

    async def _prune_daily(self) -> None:
        """The prune once a day; in between, a WAL a reader kept after a deletion truncated
        again every WAL_RETRY_SECONDS until it goes."""
        while True:
            await self.prune(time.time())
            due = time.monotonic() + PRUNE_SECONDS
            while (left := due - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._wal_kept.wait()
                        await asyncio.sleep(WAL_RETRY_SECONDS)
                        if await asyncio.to_thread(self.book.truncate_wal):
                            self._wal_kept.clear()

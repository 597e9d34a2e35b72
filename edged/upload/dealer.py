"""The parts of one multipart upload dealt to the senders of every usable uplink: one reader puts
the parts in order, each sender takes the next when edged/upload/spread.py says it should, a part
that failed on one uplink goes back to the front for the others, and that uplink's senders stop.
A part read ahead is asked about again before it is dealt when a part boundary passed since it was
read: asked to yield, it deals no more, the parts read ahead are left for the upload's resumption,
and only those in flight finish.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edged.upload.policy import PartSpan
from edged.upload.spread import Sender, expected_free, takes_next
from edged.upload.uplinks import Uplink

if TYPE_CHECKING:  # the I/O adapter, for its type only
    from edged.upload.s3 import S3Store

Part = tuple[PartSpan, bytes, str]  # the span, its bytes, their md5
RATE_WEIGHT = 0.5  # of a part's own throughput in a sender's running one


@dataclass(eq=False)
class Lane:
    """One sender: the uplink it sends by (None: the kernel's route), its store, its measured
    throughput (bytes/s, 0 = not yet) and the part it has in flight (size 0: free). Each is
    itself: two free senders of one uplink are two (compared by identity, not by value)."""

    uplink: Uplink | None
    store: S3Store
    rate: float = 0.0
    started: float = 0.0
    size: int = 0

    @property
    def link(self) -> str:
        return self.uplink.interface if self.uplink is not None else ""


class PartDealer:
    """Parts read and not yet taken, and who takes the next; every wait is on one condition,
    notified whenever a part comes, goes, is acknowledged or comes back."""

    def __init__(
        self,
        lanes: Sequence[Lane],
        sizes: Sequence[int],
        *,
        capacity: int = 1,
        clock: Callable[[], float] = time.monotonic,
        should_yield: Callable[[], bool] = lambda: False,
        may_send: Callable[[Lane], bool] = lambda lane: True,
    ) -> None:
        self.lanes = list(lanes)
        self._unread = deque(sizes)  # the sizes of the parts to send not read yet, in order
        # Read (or given back), not taken; each with the acknowledgements counted when it came.
        self._pending: deque[tuple[Part, int]] = deque()
        self._acknowledged = 0
        self._capacity = capacity  # parts read ahead; a part given back may exceed it
        self._clock = clock
        self._reading = True
        self._in_flight = 0
        self._dropped: set[str] = set()
        self._changed = asyncio.Condition()
        self._should_yield = should_yield
        self._may_send = may_send  # whether a lane's uplink may still carry the file
        self.yielded = False  # asked to yield: no part is dealt any more
        self.retired: list[str] = []  # uplinks that stopped because they may carry it no more

    def live_links(self) -> set[str]:
        return {lane.link for lane in self.lanes} - self._dropped

    async def put(self, part: Part) -> None:
        """A part read, in order; waits while `capacity` parts wait for a sender."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: len(self._pending) < self._capacity or self.yielded
            )
            if self.yielded:
                return  # left for the resumption
            self._pending.append((part, self._acknowledged))
            if self._unread:
                self._unread.popleft()
            self._changed.notify_all()

    async def finish_reading(self) -> None:
        """No more parts will be read (all were, or the file yields)."""
        async with self._changed:
            self._reading = False
            self._unread.clear()
            self._changed.notify_all()

    async def take(self, lane: Lane) -> Part | None:
        """The next part for `lane`, or None when its uplink was dropped or may carry the file
        no more (its budget spent: with no other uplink left the upload yields), every part is
        acknowledged (while parts are in flight elsewhere it waits: one may come back) or the
        upload yields."""
        async with self._changed:
            while True:
                if self._asks_again() and self._should_yield():
                    self._yield()
                if self._pending and lane.link not in self._dropped and not self._may_send(lane):
                    self._retire(lane.link)
                if lane.link in self._dropped or self.yielded:
                    return None
                if not self._pending and not self._reading and self._in_flight == 0:
                    return None
                if self._pending and self._takes(lane):
                    part, _ = self._pending.popleft()
                    lane.started, lane.size = self._clock(), part[0].size
                    self._in_flight += 1
                    self._changed.notify_all()
                    return part
                await self._changed.wait()

    async def done(self, lane: Lane, seconds: float) -> None:
        """`lane`'s part was acknowledged after `seconds` of sending."""
        async with self._changed:
            self._acknowledged += 1
            if seconds > 0:
                sample = lane.size / seconds
                lane.rate = (
                    sample if lane.rate <= 0 else lane.rate + RATE_WEIGHT * (sample - lane.rate)
                )
            self._free(lane)

    async def lost(self, lane: Lane, part: Part) -> bool:
        """`lane`'s uplink failed sending `part`: the part goes back to the front for the
        others, the uplink's senders stop. Whether another uplink is left to send it."""
        async with self._changed:
            if not self.yielded:
                self._pending.appendleft((part, -1))
            self._dropped.add(lane.link)
            self._free(lane)
            return self.yielded or bool(self.live_links())

    def _asks_again(self) -> bool:
        """Whether the next part is asked about again before it is dealt: a part boundary (an
        acknowledgement) passed since the reader asked, as it read it."""
        return bool(self._pending) and not self.yielded and self._pending[0][1] < self._acknowledged

    def _retire(self, link: str) -> None:
        """`link` may carry the file no more: its senders stop, the others go on; with none
        left the upload yields (the parts in flight finish, the rest waits for a link)."""
        self._dropped.add(link)
        self.retired.append(link)
        if not self.live_links():
            self._yield()
        self._changed.notify_all()

    def _yield(self) -> None:
        self.yielded = True
        self._reading = False
        self._pending.clear()
        self._unread.clear()
        self._changed.notify_all()

    def _free(self, lane: Lane) -> None:
        lane.size = 0
        self._in_flight -= 1
        self._changed.notify_all()

    def _takes(self, lane: Lane) -> bool:
        live = [each for each in self.lanes if each.link not in self._dropped]
        if len({each.link for each in live}) < 2:
            return True  # one uplink: its senders pull, as they always did
        now = self._clock()
        senders = [
            Sender(
                expected_free(each.started, each.size, each.rate, now) if each.size else now,
                each.rate,
            )
            for each in live
        ]
        sizes = [part[0].size for part, _ in self._pending] + list(self._unread)
        return takes_next(live.index(lane), senders, sizes, now)

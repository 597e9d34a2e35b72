"""How the parts of one multipart upload are dealt over several uplinks, as plain decisions:
the part size, how many senders each uplink gets, and whether a free sender takes the next part
or leaves it to a faster one. Time and throughputs are passed in (bytes per second; 0 = not
measured yet).

The senders pull parts from one queue, so each uplink carries parts in proportion to its
throughput. Only near the end does pulling go wrong: a slow link taking one of the last parts
holds the whole file. So a free sender takes the next part only when the file, every part left
going to whichever sender would finish it first, ends no later with it than without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edged.upload.policy import MIN_PART_SIZE, plan_parts
from edged.upload.uplinks import Uplink

MiB = 1024 * 1024
# A file this many parts long per sender (or longer) goes in the configured part size: what its
# last parts cost against the whole is too small to plan for.
PLANNED_PARTS_PER_SENDER = 16
SAME_MAKESPAN = 0.02  # part sizes whose plans end within 2% of each other are as good


@dataclass(frozen=True)
class Sender:
    """One sender as the dealer sees it: free from `free_at` (seconds, on the caller's clock),
    sending at `rate` bytes per second (0 = not measured yet)."""

    free_at: float
    rate: float


def request_order(uplinks: Sequence[Uplink], rates: Sequence[float]) -> list[Uplink]:
    """The uplinks a file's small requests and whole PUT try, in order (`rates` theirs): the
    unmetered first, then the fastest (the parts of a multipart upload go by all of them)."""
    ranked = sorted(zip(uplinks, rates, strict=True), key=lambda each: (each[0].metered, -each[1]))
    return [uplink for uplink, _ in ranked]


def senders_per_uplink(parallel_parts: int, uplinks: int) -> int:
    """`parallel_parts` is the parts in flight in all: shared over the uplinks, one at least."""
    return max(1, parallel_parts // max(uplinks, 1))


def makespan(senders: Sequence[Sender], sizes: Sequence[int]) -> float:
    """When the last of `sizes` (in order) is sent, each going to the sender that would finish
    it first (all rates known)."""
    free = [sender.free_at for sender in senders]
    end = max(free, default=0.0)
    for size in sizes:
        finish = [free[i] + size / senders[i].rate for i in range(len(senders))]
        best = min(range(len(senders)), key=finish.__getitem__)
        free[best] = finish[best]
        end = max(end, finish[best])
    return end


def takes_next(me: int, senders: Sequence[Sender], sizes: Sequence[int], now: float) -> bool:
    """Whether free sender `me` takes the next of the parts left (`sizes`, the next first):
    yes unless every rate is known and the others alone would finish them all sooner (when
    every sender is free, the one that would finish it first takes it: one always does)."""
    if not sizes or len(senders) < 2 or any(sender.rate <= 0 for sender in senders):
        return True
    mine = senders[me]
    if all(sender.free_at <= now for sender in senders):  # all free: the first to finish it
        finish = [sizes[0] / sender.rate for sender in senders]
        return min(range(len(senders)), key=finish.__getitem__) == me
    ends_mine = now + sizes[0] / mine.rate
    taken = [
        Sender(ends_mine, mine.rate) if i == me else sender for i, sender in enumerate(senders)
    ]
    others = [sender for i, sender in enumerate(senders) if i != me]
    return max(ends_mine, makespan(taken, sizes[1:])) <= makespan(others, sizes)


def expected_free(started: float, size: int, rate: float, now: float) -> float:
    """When a sender busy with a part since `started` will be free: its expected end, or, once
    overdue, as much later again as it is overdue (a link slowing down, or dying)."""
    if rate <= 0:
        return now
    expected = started + size / rate
    return expected if expected >= now else now + (now - expected)


class LinkShare:
    """The time the parts in flight by one uplink share, to measure the link and not one
    connection: a part's share is the integral of dt / n(t) while it is sent, n(t) the link's
    parts in flight then. Its bytes over its share is the link's rate (connections of one link
    get even shares), and the shares of a link's parts add up to the time it was busy. Times in
    seconds on the caller's clock."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._at = 0.0
        self._total = 0.0  # the share one part sent all along would have had by `_at`

    def _advance(self, now: float) -> None:
        if self._in_flight:
            self._total += (now - self._at) / self._in_flight
        self._at = now

    def start(self, now: float) -> float:
        """A part starts at `now`: the mark to give `end`."""
        self._advance(now)
        self._in_flight += 1
        return self._total

    def end(self, mark: float, now: float) -> float:
        """The part started at `mark` ends at `now`: its share of the link's time."""
        self._advance(now)
        self._in_flight -= 1
        return self._total - mark


def spread_part_size(file_size: int, configured: int, rates: Sequence[float]) -> int:
    """The part size for a file sent by senders of these `rates` (one per sender).

    One sender, or a file long enough for its tail not to matter: the configured size. Rates
    not all measured yet: the smallest part S3 allows, which lets the queue find the
    proportions. Otherwise the size whose plan ends first (of sizes within 2% of that, the
    largest: fewer requests), from the configured size down to the smallest S3 allows.
    """
    if len(rates) < 2 or file_size >= configured * PLANNED_PARTS_PER_SENDER * len(rates):
        return configured
    smallest = min(MIN_PART_SIZE, configured)
    if any(rate <= 0 for rate in rates):
        return smallest
    senders = [Sender(0.0, rate) for rate in rates]
    best, best_end = configured, math.inf
    for size in candidate_sizes(file_size, configured, smallest):
        end = makespan(senders, [span.size for span in plan_parts(file_size, size)])
        if end < best_end * (1 - SAME_MAKESPAN):
            best, best_end = size, end
    return best


def candidate_sizes(file_size: int, configured: int, smallest: int) -> list[int]:
    """The part sizes worth planning, largest first: for each count of parts, the whole MiB
    that cuts the file in that many, within [smallest, configured]; each size once (many counts
    round to one size, and a plan costs as many steps as it has parts)."""
    sizes: list[int] = []
    for count in range(-(-file_size // configured), file_size // smallest + 1):  # sizes falling
        size = min(configured, max(smallest, -(-file_size // count // MiB) * MiB))
        if not sizes or size != sizes[-1]:
            sizes.append(size)
    return sizes

"""The system clock's health: is it synchronized (kernel adjtimex), and did the wall clock step.

The decisions are pure (`synchronized_from_adjtimex`, `ClockJumpDetector`); `clock_synchronized`
is the thin adapter that asks the kernel.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

# <sys/timex.h>: the clock state returned by adjtimex, and the status bit NTP clears once synced.
TIME_OK = 0
TIME_ERROR = 5
STA_UNSYNC = 0x0040
# A wall clock that moved this much more (or less) than the monotonic clock stepped; slewing by
# NTP runs at most 500 ppm, far below this over any interval edged compares.
DEFAULT_JUMP_TOLERANCE_SECONDS = 2.0


def synchronized_from_adjtimex(return_value: int, status: int) -> bool | None:
    """Whether the kernel calls its clock synchronized, from adjtimex's return value and status.

    A negative return value is a failed call (seccomp, no permission): None, cannot tell.
    """
    if return_value < 0:
        return None
    return return_value != TIME_ERROR and not status & STA_UNSYNC


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """`struct timex` up to `tai`, then room for the kernel's reserved padding."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_byte * 128),
    )


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None


TIMESYNCD_DIR = Path("/run/systemd/timesync")


def synchronized_from_timesyncd(running: bool, flagged: bool) -> bool | None:
    """systemd-timesyncd's word: its run dir exists while it runs, `synchronized` once synced."""
    return flagged if running else None


def _kernel_synchronized() -> bool | None:
    libc = _libc()
    adjtimex = getattr(libc, "adjtimex", None) if libc is not None else None
    if adjtimex is None:
        return None
    timex = _Timex()
    timex.modes = 0
    try:
        result = int(adjtimex(ctypes.byref(timex)))
    except OSError:  # pragma: no cover - ctypes raises only for a missing symbol
        return None
    return synchronized_from_adjtimex(result, int(timex.status))


def clock_synchronized(timesyncd_dir: Path = TIMESYNCD_DIR) -> bool | None:
    """Whether the system clock is synchronized; None when it cannot tell.

    The kernel's answer (adjtimex, read-only: modes = 0). edged's hardened unit refuses that
    call (it is in systemd's @clock group, left out of @system-service), and then
    systemd-timesyncd's flag file answers, when timesyncd runs.
    """
    kernel = _kernel_synchronized()
    if kernel is not None:
        return kernel
    return synchronized_from_timesyncd(
        timesyncd_dir.is_dir(), (timesyncd_dir / "synchronized").exists()
    )


@dataclass(frozen=True)
class ClockSample:
    """One reading of both clocks: wall (time.time) and monotonic (time.monotonic), in seconds."""

    wall: float
    monotonic: float


def wall_step_seconds(earlier: ClockSample, later: ClockSample) -> float:
    """How far the wall clock moved beyond the monotonic clock between two samples.

    Positive: the wall clock stepped forward; negative: back; about 0: no step.
    """
    return (later.wall - earlier.wall) - (later.monotonic - earlier.monotonic)


@dataclass(frozen=True)
class ClockJump:
    """A step of the wall clock seen between two samples, in seconds (positive is forward)."""

    seconds: float
    at: ClockSample


class ClockJumpDetector:
    """Compares successive (wall, monotonic) samples and reports wall-clock steps.

    `observe()` returns the jump seen since the previous sample, or None. `jumped_since(mark)`
    says whether any step happened after a monotonic time `mark` (e.g. since events were
    written by this process).
    """

    def __init__(
        self, first: ClockSample, tolerance: float = DEFAULT_JUMP_TOLERANCE_SECONDS
    ) -> None:
        self._previous = first
        self._tolerance = tolerance
        self.last_jump: ClockJump | None = None

    def observe(self, sample: ClockSample) -> ClockJump | None:
        """Take one sample; the jump since the previous one when it exceeds the tolerance."""
        step = wall_step_seconds(self._previous, sample)
        self._previous = sample
        if abs(step) <= self._tolerance:
            return None
        self.last_jump = ClockJump(seconds=step, at=sample)
        return self.last_jump

    def jumped_since(self, monotonic_mark: float) -> bool:
        """Whether a step was observed at a monotonic time after `monotonic_mark`."""
        return self.last_jump is not None and self.last_jump.at.monotonic > monotonic_mark


@dataclass(frozen=True)
class Step:
    """A wall-clock step seen while a log was written: ids up to `after_id` were written before."""

    after_id: int
    seconds: float


class StepLedger:
    """The wall-clock steps seen while an event log was written, placed by event id.

    Sampled often (every few seconds) with the log's last id. For a forward step, events written
    between the previous sample and this one count as written before it; for a backward step,
    after it: either way an event of unknown side looks younger, never older, than it is.
    """

    def __init__(
        self,
        first: ClockSample,
        last_id: int,
        tolerance: float = DEFAULT_JUMP_TOLERANCE_SECONDS,
    ) -> None:
        self._detector = ClockJumpDetector(first, tolerance)
        self._last_id = last_id
        self.steps: list[Step] = []

    def observe(self, sample: ClockSample, last_id: int) -> ClockJump | None:
        """Take one sample with the log's last id now; the step seen, if any."""
        jump = self._detector.observe(sample)
        if jump is not None:
            boundary = last_id if jump.seconds > 0 else self._last_id
            self.steps.append(Step(after_id=boundary, seconds=jump.seconds))
        self._last_id = last_id
        return jump


def prune_ranges(steps: list[Step], cutoff: float) -> list[tuple[int, int | None, float]]:
    """(above id, up to id or None, stored-time cutoff) per stretch of the log between steps.

    An event written before forward steps totalling S seconds was stamped S seconds behind the
    clock of today: it goes only when stored before `cutoff - S`. Backward steps never make an
    event older (what came before this process is unknown, and footage of a log is cheap).
    """
    ranges: list[tuple[int, int | None, float]] = []
    low = 0
    for index, step in enumerate(steps):
        later = sum(each.seconds for each in steps[index:])
        if step.after_id > low:
            ranges.append((low, step.after_id, cutoff - max(later, 0.0)))
            low = step.after_id
    ranges.append((low, None, cutoff))
    return ranges


def sync_change(previous: bool | None, current: bool | None, first: bool) -> tuple[int, str] | None:
    """The log line (level, message) for the kernel's sync status now, or None to say nothing.

    At start an unsynchronized clock is a warning; later, each change is said once.
    """
    if not first and current == previous:
        return None
    if current is False:
        return (
            logging.WARNING,
            "the system clock is not synchronized (kernel: adjtimex STA_UNSYNC): segment names, "
            "dates and upload signatures follow a clock that may be wrong; check NTP",
        )
    if current is True:
        return None if first else (logging.INFO, "the system clock is synchronized again")
    return (logging.INFO, "cannot tell whether the system clock is synchronized (adjtimex)")


@dataclass
class ClockWatch:
    """Samples the clocks every `interval` seconds: logs sync changes, hands samples on."""

    interval: float = 5.0
    listeners: list[Callable[[ClockSample], None]] = field(default_factory=list)
    synchronized: Callable[[], bool | None] = clock_synchronized
    synced: bool | None = None

    async def run(self) -> None:
        """Run until cancelled (under the supervisor)."""
        first = True
        detector: ClockJumpDetector | None = None
        while True:
            sample = ClockSample(wall=time.time(), monotonic=time.monotonic())
            current = self.synchronized()
            said = sync_change(self.synced, current, first)
            if said is not None:
                logger.log(*said)
            self.synced, first = current, False
            if detector is None:
                detector = ClockJumpDetector(sample)
            elif (jump := detector.observe(sample)) is not None:
                logger.warning("the wall clock stepped %+.0f s", jump.seconds)
            for listener in self.listeners:
                listener(sample)
            await asyncio.sleep(self.interval)

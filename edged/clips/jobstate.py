"""A clip job's life as plain decisions: its states and events, when jobs must pause for the
live streams, its ETA, and what a job request says. No I/O; time is passed in."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from edged.clips.plan import VERTICAL_MODES
from edged.errors import EdgedError


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for its turn (or for its recording to close)
    RUNNING = "running"
    PAUSED = "paused"  # the live streams need the box: the worker is stopped where it is
    DONE = "done"
    FAILED = "failed"


class JobEvent(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    FINISH = "finish"
    FAIL = "fail"
    RESTART = "restart"  # the daemon started again while the job ran: from the beginning


class InvalidJobTransition(EdgedError):
    """An event that the job's state does not allow."""


ACTIVE = (JobState.RUNNING, JobState.PAUSED)
PENDING = (JobState.QUEUED, *ACTIVE)

TRANSITIONS: dict[tuple[JobState, JobEvent], JobState] = {
    (JobState.QUEUED, JobEvent.START): JobState.RUNNING,
    (JobState.RUNNING, JobEvent.PAUSE): JobState.PAUSED,
    (JobState.PAUSED, JobEvent.RESUME): JobState.RUNNING,
    (JobState.RUNNING, JobEvent.FINISH): JobState.DONE,
    **{(state, JobEvent.FAIL): JobState.FAILED for state in PENDING},
    **{(state, JobEvent.RESTART): JobState.QUEUED for state in ACTIVE},
}


def next_state(current: JobState, event: JobEvent) -> JobState:
    """The state after `event`; InvalidJobTransition for an event the state does not allow."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise InvalidJobTransition(f"clip job event {event} is not allowed in {current}") from None


# -- pausing for the live streams ---------------------------------------------------------------

QUIET_SECONDS = 10.0  # no live frame dropped for this long before a paused job resumes
QUIET_MAX_SECONDS = 320.0  # the wait doubles, up to this, while drops come back after resumes


@dataclass(frozen=True)
class Load:
    """What the live side says: its thermal level, frames dropped at encode so far, and frames
    its outputs (the recorder on the disk, the live muxer) dropped so far (all streams)."""

    thermal_level: int
    encode_drops: int
    output_drops: int = 0


class PauseGate:
    """Whether jobs must pause now: while the thermal governor has stepped the streams down, and
    until a quiet time after any stream last dropped a frame at encode or at an output (the
    recorder falling behind the disk). Drops that come back within a quiet time of a resume
    (a job and the live streams taking turns at a shared encoder or disk) double the quiet time,
    up to QUIET_MAX_SECONDS; a quiet time with no drop after a resume halves it back."""

    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self._base = quiet_seconds
        self._quiet = quiet_seconds
        self._drops: tuple[int, int] | None = None
        self._dropped_at = -math.inf
        self._why = ""
        self._opened_at: float | None = None  # when the gate last opened after drops

    def reason(self, load: Load, now: float) -> str | None:
        """Why jobs must wait at `now`, or None when they may run."""
        drops = (load.encode_drops, load.output_drops)
        before = self._drops
        if before is not None and any(n > o for n, o in zip(drops, before, strict=True)):
            self._dropped(now, encode=drops[0] > before[0])
        self._drops = drops
        if load.thermal_level > 0:
            return f"the box runs hot (thermal level {load.thermal_level})"
        if now - self._dropped_at < self._quiet:
            return self._why
        if self._opened_at is None and self._dropped_at > -math.inf:
            self._opened_at = now
        elif self._opened_at is not None and now - self._opened_at >= self._quiet:
            self._quiet = max(self._base, self._quiet / 2)  # calm again: back towards the base
            self._opened_at = now
        return None

    def _dropped(self, now: float, *, encode: bool) -> None:
        if self._opened_at is not None and now - self._opened_at < self._quiet:
            self._quiet = min(QUIET_MAX_SECONDS, self._quiet * 2)  # back soon after a resume
        self._opened_at = None
        self._dropped_at = now
        self._why = (
            "a live stream dropped frames at encode"
            if encode
            else "a live stream's recorder or live output dropped frames (the disk or CPU is busy)"
        )

    @property
    def quiet_seconds(self) -> float:
        return self._quiet


def eta_seconds(progress: float, running_seconds: float) -> float | None:
    """Seconds still to run at the pace so far; None before any progress."""
    if progress <= 0 or running_seconds <= 0:
        return None
    return max(0.0, running_seconds * (1 - min(progress, 1.0)) / progress)


def job_progress(variants_done: int, variants: int, fraction: float) -> float:
    """The whole job's progress: finished variants plus the running one's fraction."""
    return min(1.0, (variants_done + max(0.0, min(fraction, 1.0))) / max(variants, 1))


# -- what a request says ------------------------------------------------------------------------

VARIANTS = ("original", "vertical")
TITLE_MAX = 120
YEARS = (2000, 2100)  # the times a clip or its release may name
LAST_SECONDS_MAX = 3600.0
_STREAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
FIELDS = (
    "stream",
    "start",
    "end",
    "last_seconds",
    "title",
    "variants",
    "mode",
    "x_offset",
    "publish_at",
)


class BadRequest(EdgedError, ValueError):
    """A job request whose fields are malformed (an HTTP 400, with this short reason)."""


@dataclass(frozen=True)
class ClipRequest:
    stream: str
    start: float
    end: float
    title: str = ""
    variants: tuple[str, ...] = ("original",)
    mode: str = "fill"
    x_offset: int | None = None
    publish_at: float | None = None


def parse_time(value: object, key: str) -> float:
    """An RFC 3339 time with its offset as epoch seconds; BadRequest naming `key` otherwise."""
    problem = f"{key} must be an RFC 3339 time such as 2026-12-01T18:00:00Z"
    if not isinstance(value, str) or len(value) > 40:
        raise BadRequest(problem)
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(problem) from None
    if moment.tzinfo is None:
        raise BadRequest(f"{key} needs its offset (Z or +01:00)")
    if not YEARS[0] <= moment.year <= YEARS[1]:  # 0001-01-01T00:00:00+01:00 overflows in UTC
        raise BadRequest(f"{problem}, between the years {YEARS[0]} and {YEARS[1]}")
    return moment.astimezone(UTC).timestamp()


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a number")
    return float(value)


def _window(body: Mapping[str, object], now: float) -> tuple[float, float]:
    if "last_seconds" in body:
        if "start" in body or "end" in body:
            raise BadRequest("give start and end, or last_seconds, not both")
        seconds = _number(body["last_seconds"], "last_seconds")
        if not 0 < seconds <= LAST_SECONDS_MAX:
            raise BadRequest(f"last_seconds must be over 0 and at most {LAST_SECONDS_MAX:g}")
        return now - seconds, now
    if "start" not in body or "end" not in body:
        raise BadRequest("give start and end (RFC 3339 UTC times), or last_seconds")
    return parse_time(body["start"], "start"), parse_time(body["end"], "end")


def _variants(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"variants must be a list of {', '.join(VARIANTS)}")
    unknown = [v for v in value if v not in VARIANTS]
    if unknown:
        raise BadRequest(f"variant {unknown[0][:20]!r} unknown: use {', '.join(VARIANTS)}")
    return tuple(dict.fromkeys(value))


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > TITLE_MAX:
        raise BadRequest(f"title must be text of at most {TITLE_MAX} characters")
    if any(ord(c) < 0x20 for c in value):
        raise BadRequest("title must have no control characters")
    return value


def _offset(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
        raise BadRequest("x_offset must be a whole number of pixels from the left, or null")
    return value


def parse_request(body: object, now: float, default_mode: str = "fill") -> ClipRequest:
    """A job request from a JSON body; BadRequest with a short reason naming the field.
    `default_mode`: the vertical variant's mode when the body names none ([clips])."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(key for key in body if key not in FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0][:40]!r}: use {', '.join(FIELDS)}")
    stream = body.get("stream")
    if not isinstance(stream, str) or not _STREAM.match(stream):
        raise BadRequest("stream must name a stream (GET /api/v1/streams lists them)")
    start, end = _window(body, now)
    mode = body.get("mode", default_mode)
    if mode not in VERTICAL_MODES:
        raise BadRequest(f"mode must be one of {', '.join(VERTICAL_MODES)}")
    publish_at = body.get("publish_at")
    return ClipRequest(
        stream=stream,
        start=start,
        end=end,
        title=_text(body.get("title", "")),
        variants=_variants(body.get("variants", ["original"])),
        mode=str(mode),
        x_offset=_offset(body.get("x_offset")),
        publish_at=None if publish_at is None else parse_time(publish_at, "publish_at"),
    )

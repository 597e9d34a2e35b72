"""Upload decisions as plain functions: part plan, expected ETag, backoff, bandwidth, keys, and
the order of the queue."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from edged.upload.classes import RANK, UploadClass, class_of

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A file keeps its own name upstream (`Opening Night.mp4`); refused is only what would change the
# key's shape or cannot travel as UTF-8: a slash, control characters, undecodable bytes.
_FILE_NAME = re.compile(r"^[^/\x00-\x1f\x7f\ud800-\udfff]+$")


@dataclass(frozen=True)
class PartSpan:
    """One part of a file: its number (from 1), offset and size."""

    number: int
    offset: int
    size: int


def plan_parts(file_size: int, part_size: int) -> list[PartSpan]:
    """The parts of a multipart upload; empty when the file goes as one PUT (one part or less).

    The part size grows when the file would need more than S3's 10,000 parts.
    """
    if file_size <= part_size:
        return []
    size = max(part_size, MIN_PART_SIZE, -(-file_size // MAX_PARTS))
    return [
        PartSpan(number=index + 1, offset=offset, size=min(size, file_size - offset))
        for index, offset in enumerate(range(0, file_size, size))
    ]


def multipart_etag(part_md5_hex: list[str]) -> str:
    """The ETag S3 gives a multipart object: md5 of the parts' binary md5s, then `-N`."""
    digest = hashlib.md5(  # noqa: S324 - S3's ETag algorithm, not security
        b"".join(bytes.fromhex(md5) for md5 in part_md5_hex)
    ).hexdigest()
    return f"{digest}-{len(part_md5_hex)}"


def backoff_seconds(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter, capped: attempt 1 waits up to 2 s, then 4 s, ..."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return (rng or random.SystemRandom()).uniform(ceiling / 2, ceiling)


class TokenBucket:
    """A bandwidth cap in bytes per second; time is passed in. Rate 0 means unlimited."""

    def __init__(self, rate: float, now: float) -> None:
        self._rate = float(rate)
        self._level = float(rate)
        self._updated = now

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float, now: float) -> None:
        """Change the cap at run time; the bucket keeps no more than one second's worth."""
        self._refill(now)
        self._rate = float(rate)
        self._level = min(self._level, self._rate)

    def _refill(self, now: float) -> None:
        if self._rate > 0:
            self._level = min(self._rate, self._level + (now - self._updated) * self._rate)
        self._updated = now

    def reserve(self, size: int, now: float) -> float:
        """Take `size` bytes of budget; the seconds to wait before sending them."""
        if self._rate <= 0:
            return 0.0
        self._refill(now)
        self._level -= size
        return 0.0 if self._level >= 0 else -self._level / self._rate


def object_key(
    *, prefix: str, event: str, node: str, stream: str, when: datetime, filename: str
) -> str:
    """`<prefix>/<event>/<node>/<stream>/<YYYY-MM-DD>/<filename>` (DESIGN.md)."""
    for name, value, pattern in (
        ("event", event, _SEGMENT),
        ("node", node, _SEGMENT),
        ("stream", stream, _SEGMENT),
        ("file", filename, _FILE_NAME),
    ):
        if not pattern.match(value) or value in (".", ".."):
            raise ValueError(f"{name} {value!r} cannot be part of an object key")
    day = when.astimezone(UTC).strftime("%Y-%m-%d")
    parts = [prefix.strip("/")] if prefix.strip("/") else []
    return "/".join([*parts, event, node, stream, day, filename])


# -- the order of the queue -----------------------------------------------------------------------

# The kinds a file may be queued as (the API's and `edged uploads push`'s word); see classes.py.
KINDS = ("guest", "clip", "highlight", "manifest", "sidecar", "recording", "file")
EVERY_CLASS = frozenset(UploadClass)


class Queued(Protocol):
    """What the queue's order reads of a pending file (a journal FileRecord has it)."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def created(self) -> float: ...
    @property
    def next_attempt(self) -> float: ...
    @property
    def after_id(self) -> int | None: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


File = TypeVar("File", bound=Queued)


def publish_time(metadata: Mapping[str, str]) -> float | None:
    """A clip's `publish_at` (ISO 8601, UTC when it names no zone, or Unix seconds), or None."""
    raw = metadata.get("publish_at", "").strip()
    if not raw:
        return None
    try:
        return float(raw) if raw.replace(".", "", 1).isdigit() else _iso_seconds(raw)
    except (ValueError, OverflowError):
        return None


def _iso_seconds(raw: str) -> float:
    when = datetime.fromisoformat(raw)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def queue_key(record: Queued, *, newest_first: bool = False) -> tuple[int, int, float, float, int]:
    """Class first; clips by soonest publish time (none: after those with one); then age,
    oldest first (newest first for recordings when `newest_first`); the id breaks ties."""
    cls = class_of(record.kind)
    publish = publish_time(record.metadata) if cls is UploadClass.CLIP else None
    sign = -1 if newest_first and cls is UploadClass.RECORDING else 1
    return (
        RANK[cls],
        publish is None,
        publish or 0.0,
        sign * record.created,
        sign * record.id,
    )


def queue_order(
    records: Iterable[File], *, newest_first: bool = False, blocked: Set[int] = frozenset()
) -> list[File]:
    """The pending files in the order they go. A file `blocked` by its predecessor (`after_id`,
    a sidecar behind its recording) goes right after it; one whose predecessor is not pending
    (failed) goes last."""
    ordered = sorted(records, key=lambda record: queue_key(record, newest_first=newest_first))
    pending = {record.id for record in ordered}
    followers: dict[int, list[File]] = {}
    free: list[File] = []
    stuck: list[File] = []
    for record in ordered:
        if record.id not in blocked:
            free.append(record)
        elif record.after_id in pending:
            followers.setdefault(record.after_id, []).append(record)
        else:
            stuck.append(record)
    result: list[File] = []
    to_place = [*free, *stuck][::-1]  # a stack: the next to place is on top
    while to_place:
        record = to_place.pop()
        result.append(record)
        to_place.extend(reversed(followers.pop(record.id, [])))
    return result


def pick_next(
    records: Iterable[File],
    now: float,
    *,
    newest_first: bool = False,
    blocked: Set[int] = frozenset(),
    classes: Set[UploadClass] = EVERY_CLASS,
) -> File | None:
    """The file to send now: the first in the queue's order that is due, not blocked, and of a
    class that may go now (`classes`: those some uplink carries)."""
    for record in queue_order(records, newest_first=newest_first, blocked=blocked):
        if (
            record.id not in blocked
            and record.next_attempt <= now
            and class_of(record.kind) in classes
        ):
            return record
    return None


def next_due(
    records: Iterable[Queued],
    *,
    blocked: Set[int] = frozenset(),
    classes: Set[UploadClass] = EVERY_CLASS,
) -> float | None:
    """When the earliest file that may go becomes due; None when none may (nothing pending, or
    only files blocked or of classes no uplink carries now)."""
    times = [
        record.next_attempt
        for record in records
        if record.id not in blocked and class_of(record.kind) in classes
    ]
    return min(times, default=None)


def outranks(candidate: Queued | None, current: Queued) -> bool:
    """Whether `candidate` is of a higher class than the file in flight (it goes first)."""
    return candidate is not None and RANK[class_of(candidate.kind)] < RANK[class_of(current.kind)]

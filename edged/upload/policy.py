"""Upload decisions as plain functions: part plan, expected ETag, backoff, bandwidth, keys."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime

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

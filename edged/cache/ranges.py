"""HTTP Range and asset names: pure checks for the asset routes."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def valid_name(name: str) -> bool:
    """An asset name: letters, digits, `.`, `_`, `-`; no path, no `..`."""
    return bool(_NAME.match(name)) and ".." not in name


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(ValueError):
    """416: the range is outside the resource, or asks for several ranges."""


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one range a `Range` header asks for, None for the whole body (RFC 9110 14.2).

    Suffix ranges (`bytes=-500`) and open ranges (`bytes=100-`) are served; several ranges in one
    request are refused (416), as is a range that starts past the end.
    """
    if not header:
        return None
    header = header.strip()
    if "," in header:
        raise RangeNotSatisfiable("multiple ranges are not served")
    match = _RANGE.match(header.replace(" ", ""))
    if not match or (not match.group(1) and not match.group(2)):
        return None  # not a bytes range we understand: ignore it, serve the whole body
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("empty suffix range")
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(f"range {header} is outside {size} bytes")
    return ByteRange(start, end)

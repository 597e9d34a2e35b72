"""HTTP Range and asset names: pure checks for the asset routes."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# One range-spec of RFC 9110 14.1.1; ASCII digits only (`\d` would take Arabic-Indic digits too).
_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
# A position with more digits than this is past the end of any file: int() is never asked to
# convert an attacker's 4,301 digits.
_MAX_DIGITS = 18
_BEYOND = 10**_MAX_DIGITS


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

    @property
    def header(self) -> str:
        """This range as a canonical `Range` header value."""
        return f"bytes={self.start}-{self.end}"


class RangeNotSatisfiable(ValueError):
    """416: the range is outside the resource, or asks for several ranges."""


def _position(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_DIGITS else _BEYOND


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one range a `Range` header asks for, None for the whole body (RFC 9110 14.2).

    The one decision for every asset response. Ignored (None, the whole body): no header, a
    unit other than `bytes`, anything that is not a byte-range-set by the grammar. Served: one
    range, suffix (`bytes=-500`) and open (`bytes=100-`) included. Refused (416): a range that
    starts past the end, an empty suffix (`bytes=-0`), last before first, several ranges.
    """
    unit, equals, ranges = header.strip().partition("=")
    if not equals or not unit.isascii() or unit.strip().lower() != "bytes":
        return None
    parsed: list[tuple[str, str]] = []
    for spec in (part.strip() for part in ranges.split(",")):
        match = _SPEC.fullmatch(spec)
        if match is None and spec:  # RFC 9110 5.6.1: empty list elements are skipped
            return None
        if match is not None:
            parsed.append((match.group(1), match.group(2)))
    if not parsed or any(not first and not last for first, last in parsed):
        return None
    if len(parsed) > 1:
        raise RangeNotSatisfiable("several ranges in one request are not served")
    first, last = parsed[0]
    if not first:
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("an empty suffix range selects nothing")
        return ByteRange(max(size - suffix, 0), size - 1)
    start = _position(first)
    if last and _position(last) < start:
        raise RangeNotSatisfiable("the range ends before it starts")
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts past the end ({size} bytes)")
    end = min(_position(last), size - 1) if last else size - 1
    return ByteRange(start, end)

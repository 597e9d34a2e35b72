"""The one Range decision for every asset response (RFC 9110 14), including hostile values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.cache.ranges import ByteRange, RangeNotSatisfiable, parse_range
from edged.web.assets import range_for_file

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("bytes=", None),  # no range-spec: not a byte-range-set, ignored
        ("bytes=abc-def", None),
        ("items=0-10", None),  # an unknown unit is ignored
        ("bytes=-", None),
        ("bytes=\u0660-\u0669", None),  # Arabic-Indic digits are not digits here
        ("bytes=\uff10-\uff19", None),  # nor fullwidth ones
        ("bytes=0-1,abc", None),  # one invalid element invalidates the set
        ("BYTES=0-9", ByteRange(0, 9)),  # units are case-insensitive
        ("bytes=0-9,", ByteRange(0, 9)),  # empty list elements are skipped
        (" bytes=0-9 ", ByteRange(0, 9)),
        ("bytes=0-" + "9" * 4301, ByteRange(0, SIZE - 1)),
        ("bytes=-" + "9" * 4301, ByteRange(0, SIZE - 1)),
        ("bytes=" + "0" * 4301 + "5-9", ByteRange(5, 9)),
        ("bytes=990-5000", ByteRange(990, SIZE - 1)),
    ],
)
def test_decision(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=-0",  # RFC 9110 14.1.1: a zero suffix is unsatisfiable
        "bytes=-000",
        "bytes=" + "9" * 4301 + "-",
        "bytes=" + "9" * 4301 + "-" + "9" * 4301,
        "bytes=1000-",
        "bytes=0-1,5-9",
        "bytes=50-10",
    ],
)
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_empty_file_satisfies_no_range() -> None:
    for header in ("bytes=0-", "bytes=-5"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, 0)


def test_what_the_file_response_is_handed() -> None:
    etag = "abc-3e8"
    assert range_for_file("bytes=0-", "", etag, SIZE) == f"bytes=0-{SIZE - 1}"
    assert range_for_file("bytes=-0", "", etag, SIZE) == f"bytes={SIZE}-"
    assert range_for_file("bytes=abc-def", "", etag, SIZE) is None
    assert range_for_file("bytes=0-9", '"stale"', etag, SIZE) is None
    assert range_for_file("bytes=0-9", f'"{etag}"', etag, SIZE) == "bytes=0-9"
    assert range_for_file("bytes=0-9", "Wed, 21 Oct 2015 07:28:00 GMT", etag, SIZE) == "bytes=0-9"


@given(st.text(max_size=60), st.integers(0, 5000))
def test_any_header_gives_a_range_inside_or_a_refusal(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if result is not None:
        assert 0 <= result.start <= result.end < size
        assert parse_range(result.header, size) == result  # the canonical form is a fixed point

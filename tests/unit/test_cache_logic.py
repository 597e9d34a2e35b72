"""Range headers, asset names and manifests: pure parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.cache.ranges import ByteRange, RangeNotSatisfiable, parse_range, valid_name
from edged.cache.upstream import ManifestError, parse_manifest


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=990-5000", ByteRange(990, 999)),
        ("items=0-5", None),
        ("bytes=abc", None),
    ],
)
def test_ranges(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=0-1,5-9", "bytes=50-10", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


@given(st.integers(0, 2000), st.integers(0, 2000), st.integers(1, 1500))
def test_ranges_stay_inside(start: int, end: int, size: int) -> None:
    try:
        result = parse_range(f"bytes={start}-{end}", size)
    except RangeNotSatisfiable:
        return
    assert result is not None
    assert 0 <= result.start <= result.end < size


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("teaser.mp4", True),
        ("merch_promo-2", True),
        ("../etc/passwd", False),
        ("a/b", False),
        ("..", False),
        (".hidden", False),
        ("x" * 129, False),
        ("clip..mp4", False),
        ("", False),
        ("%2e%2e", False),
        ("/abs", False),
    ],
)
def test_asset_names(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


def test_manifest_forms() -> None:
    entries = parse_manifest(
        b'{"assets": [{"name": "teaser.mp4", "pin": true, "sha256": "ab"}, "promo.mp4"]}',
        "fest/assets/",
    )
    assert [(e.name, e.key, e.pin, e.sha256) for e in entries] == [
        ("teaser.mp4", "fest/assets/teaser.mp4", True, "ab"),
        ("promo.mp4", "fest/assets/promo.mp4", True, ""),
    ]


@pytest.mark.parametrize("data", [b"nope", b'{"assets": 3}', b'[{"name": "../x"}]', b"{}"])
def test_bad_manifests(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(data, "assets")


def test_metadata_first() -> None:
    import struct

    from edged.cache.upstream import metadata_first

    def box(kind: bytes, size: int = 16) -> bytes:
        return struct.pack(">I4s", size, kind) + b"\0" * (size - 8)

    assert metadata_first(box(b"ftyp") + box(b"moov")) is True
    assert metadata_first(box(b"ftyp") + box(b"mdat")) is False
    assert metadata_first(box(b"ftyp")) is None
    assert metadata_first(b"\x00\x00\x00\x04junk") is False  # not a box structure

"""Range headers, asset names, manifests, the replication plan, retry and eviction order: pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.cache.manifest import (
    CHECKSUM,
    NO_ROOM,
    NOT_IN_BUCKET,
    TOO_LARGE,
    ManifestEntry,
    ManifestError,
    PassReport,
    Wanted,
    due,
    failed,
    parse_manifest,
    plan_replication,
)
from edged.cache.ranges import ByteRange, RangeNotSatisfiable, parse_range, valid_name
from edged.cache.store import Asset, eviction_order
from edged.cache.upstream import MissCache


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
    sha = "AB" * 32
    manifest = parse_manifest(
        b'{"assets": [{"name": "teaser.mp4", "pin": true, "sha256": "' + sha.encode() + b'",'
        b' "size": 1200}, "promo.mp4"]}',
        "fest/assets/",
    )
    assert [(e.name, e.key, e.pin, e.sha256, e.size) for e in manifest.entries] == [
        ("teaser.mp4", "fest/assets/teaser.mp4", True, sha.lower(), 1200),
        ("promo.mp4", "fest/assets/promo.mp4", True, "", None),
    ]
    assert manifest.rejected == ()


@pytest.mark.parametrize("data", [b"nope", b'{"assets": 3}', b"{}", b'"teaser.mp4"'])
def test_bad_manifests(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(data, "assets")


def test_a_bad_entry_is_skipped_with_its_reason_and_the_rest_kept() -> None:
    """Issue #21 item 7: one invalid name no longer rejects the whole manifest."""
    manifest = parse_manifest(
        b'[{"name": "teaser.mp4", "pin": true}, {"name": "../x"}, 7, "promo.mp4",'
        b' {"name": "a.mp4", "pin": "yes"}, {"name": "b.mp4", "sha256": "abc"},'
        b' {"name": "c.mp4", "size": -1}, "teaser.mp4", {"name": "' + b"x" * 500 + b'"}]',
        "assets",
    )
    assert manifest.names == ["teaser.mp4", "promo.mp4"]
    reasons = {rejected.index: rejected.reason for rejected in manifest.rejected}
    assert sorted(reasons) == [1, 2, 4, 5, 6, 7, 8]
    assert "'../x' is not an asset name" in reasons[1]
    assert "pin must be true or false" in reasons[4]
    assert "sha256 must be 64 hex digits" in reasons[5]
    assert "size must be" in reasons[6]
    assert "listed twice" in reasons[7]
    assert len(reasons[8]) < 120  # a hostile name is not repeated whole


def entry(name: str, pin: bool = False) -> ManifestEntry:
    return ManifestEntry(name=name, key=f"assets/{name}", pin=pin, sha256="")


def test_plan_refuses_a_clip_larger_than_the_cap() -> None:
    plan = plan_replication([Wanted(entry("big.mp4"), size=2000)], 0, 1000)
    assert plan.fetch == ()
    assert [(e.name, kind) for e, kind, _ in plan.cannot_fit] == [("big.mp4", TOO_LARGE)]
    assert "2000 bytes, [cache] max_bytes is 1000" in plan.cannot_fit[0][2]


def test_plan_keeps_priority_order_and_fetches_nothing_that_would_be_evicted() -> None:
    wanted = [
        Wanted(entry("a.mp4"), size=400),  # priority 1: fetched
        Wanted(entry("b.mp4"), held=300),  # held: counts
        Wanted(entry("c.mp4"), size=400),  # 300 left: does not fit
        Wanted(entry("d.mp4"), size=None),  # waiting: not a candidate
        Wanted(entry("e.mp4"), size=200),  # fits in what c left
    ]
    plan = plan_replication(wanted, fixed_bytes=100, max_bytes=1000)
    assert [e.name for e in plan.fetch] == ["a.mp4", "e.mp4"]
    assert [(e.name, kind) for e, kind, _ in plan.cannot_fit] == [("c.mp4", NO_ROOM)]
    assert "200 of 1000 left" in plan.cannot_fit[0][2]


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 500), st.booleans()), min_size=0, max_size=12),
    st.integers(0, 300),
    st.integers(0, 2000),
)
def test_plan_never_goes_over_the_cap(
    items: list[tuple[bool, int, bool]], fixed: int, cap: int
) -> None:
    wanted = [
        Wanted(entry(f"c{i}.mp4"), held=size if held else None, size=size if known else None)
        for i, (held, size, known) in enumerate(items)
    ]
    plan = plan_replication(wanted, fixed, cap)
    fetched = {e.name for e in plan.fetch}
    used = fixed
    for item in wanted:  # each clip fetched fits with the higher-priority clips kept before it
        if item.held is not None:
            used += item.held
        elif item.entry.name in fetched:
            used += item.size or 0
            assert used <= cap
    decided = [e.name for e in plan.fetch] + [e.name for e, _, _ in plan.cannot_fit]
    assert len(decided) == len(set(decided))
    assert set(decided) == {w.entry.name for w in wanted if w.held is None and w.size is not None}
    # the same facts, the same plan: a steady state fetches nothing new pass after pass
    assert plan_replication(wanted, fixed, cap) == plan


def test_failed_entries_back_off_doubling_to_a_cap() -> None:
    first = failed(None, 100.0, NOT_IN_BUCKET, "x is not in the bucket", first=10, maximum=35)
    assert (first.attempts, first.retry_at) == (1, 110.0)
    assert not due(first, 109.9) and due(first, 110.0) and due(None, 0.0)
    second = failed(first, 110.0, CHECKSUM, "sha256 differs", etag="e1", first=10, maximum=35)
    assert (second.attempts, second.retry_at, second.etag) == (2, 130.0, "e1")
    third = failed(second, 130.0, CHECKSUM, "sha256 differs", first=10, maximum=35)
    assert third.retry_at == 165.0 and third.etag == "e1"  # capped; the refused object kept


def test_one_summary_line_whatever_the_order() -> None:
    one, two = PassReport(held=2), PassReport(held=2)
    for index in range(1000):
        one.problem(NOT_IN_BUCKET, index, f"m{index}.mp4")
    one.problem(CHECKSUM, 1000, "broken.mp4")
    two.problem(CHECKSUM, 1000, "broken.mp4")
    for index in reversed(range(1000)):
        two.problem(NOT_IN_BUCKET, index, f"m{index}.mp4")
    assert one.trouble == two.trouble
    line = one.line("manifest.json")
    assert "\n" not in line and len(line) < 300
    assert "1000 not in the bucket (m0.mp4, m1.mp4, m2.mp4 and 997 more)" in line
    assert PassReport(held=3).trouble == ""


def asset(name: str, last_access: float, pinned: bool = False) -> Asset:
    return Asset(name, "", 1, 1.0, "h264", "", 1, 1, pinned, "test", 0.0, last_access, 1)


def test_eviction_order_other_clips_first_then_lowest_manifest_priority() -> None:
    assets = [
        asset("wanted-high.mp4", 1.0),
        asset("wanted-low.mp4", 9.0),
        asset("pulled-old.mp4", 5.0),
        asset("pulled-new.mp4", 8.0),
        asset("pinned.mp4", 0.0, pinned=True),
        asset("just-added.mp4", 0.5),
    ]
    wanted = {"wanted-high.mp4": 0, "wanted-low.mp4": 1}
    order = [a.name for a in eviction_order(assets, wanted, spare="just-added.mp4")]
    assert order == [
        "pulled-old.mp4",
        "pulled-new.mp4",
        "wanted-low.mp4",
        "wanted-high.mp4",
        "just-added.mp4",
    ]


def test_misses_are_remembered_briefly_and_bounded() -> None:
    misses = MissCache(seconds=15.0, limit=3)
    assert not misses.missing("a.mp4", 0.0)
    misses.remember("a.mp4", 0.0)
    assert misses.missing("a.mp4", 14.9) and not misses.missing("a.mp4", 15.0)
    for index in range(5):
        misses.remember(f"m{index}.mp4", 20.0)
    assert len(misses) == 3 and not misses.missing("m0.mp4", 20.0)
    assert misses.missing("m4.mp4", 20.0)


def test_metadata_first() -> None:
    import struct

    from edged.cache.upstream import metadata_first

    def box(kind: bytes, size: int = 16) -> bytes:
        return struct.pack(">I4s", size, kind) + b"\0" * (size - 8)

    assert metadata_first(box(b"ftyp") + box(b"moov")) is True
    assert metadata_first(box(b"ftyp") + box(b"mdat")) is False
    assert metadata_first(box(b"ftyp")) is None
    assert metadata_first(b"\x00\x00\x00\x04junk") is False  # not a box structure

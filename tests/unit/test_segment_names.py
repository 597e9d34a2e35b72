"""Segment names never repeat and no recording is replaced; frame stamps follow the wall clock."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.media.pipeline import wall_anchor
from edged.media.recorder import (
    BOOT_FILE,
    SegmentName,
    next_boot,
    parse_segment_name,
    publish,
    take_boot,
)

SAVED_TIME = 1577836799.0  # 2019-12-31T23:59:59Z, what a box without an RTC may boot to


@given(
    opened=st.integers(0, 4_102_444_799),  # to the end of 2099
    boot=st.integers(0, 10**7),
    number=st.integers(0, 10**7),
)
def test_a_name_says_when_which_start_and_which_segment(
    opened: int, boot: int, number: int
) -> None:
    name = SegmentName(float(opened), boot, number)
    assert parse_segment_name(name.stem) == name


def test_the_name_format_is_readable_and_sorts_by_time_then_start() -> None:
    first = SegmentName(SAVED_TIME, 1, 0).stem
    assert first == "20191231T235959Z-000001-000000"
    later_same_second = SegmentName(SAVED_TIME, 2, 0).stem
    next_second = SegmentName(SAVED_TIME + 1, 1, 1).stem
    assert sorted([next_second, later_same_second, first]) == [
        first,
        later_same_second,
        next_second,
    ]


@pytest.mark.parametrize(
    "stem",
    [
        "20191231T235959Z-00000001",  # the names before boots were counted
        "notes",
        "20191231T235959Z-1-2",
        "20191231T235959Z-000001-x",
        "20191231T235959Z-000001-" + "\u0660" * 5 + "\u0661",  # digits, but not ASCII ones
    ],
)
def test_names_of_another_form_are_not_segment_names(stem: str) -> None:
    assert parse_segment_name(stem) is None


def test_the_boot_number_counts_on_from_the_counter_and_the_spool() -> None:
    assert next_boot(None, iter([])) == 1
    assert next_boot("7\n", iter([])) == 8
    # A counter lost, damaged or behind: the names on the box still rule a number out.
    names = ["20191231T235959Z-000009-000003", "20191231T235959Z-00000001", "clip"]
    assert next_boot(None, iter(names)) == 10
    assert next_boot("garbage", iter(names)) == 10
    assert next_boot("²", iter([])) == 1  # a digit to str.isdigit, not a number to int()
    assert next_boot("3", iter(names)) == 10


def test_take_boot_counts_each_start_in_a_private_file(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "cam").mkdir(parents=True)
    old_umask = os.umask(0o022)
    try:
        assert [take_boot(tmp_path, spool) for _ in range(3)] == [1, 2, 3]
    finally:
        os.umask(old_umask)
    counter = tmp_path / BOOT_FILE
    assert counter.read_text() == "3\n"
    assert stat.S_IMODE(counter.stat().st_mode) == 0o600
    counter.write_text("\x00\x00")  # a torn write: the spool still knows start 5 was here
    (spool / "cam" / "20191231T235959Z-000005-000000.mp4").write_bytes(b"")
    assert take_boot(tmp_path, spool) == 6


def test_publish_never_replaces_a_file(tmp_path: Path) -> None:
    final = tmp_path / "20191231T235959Z-000001-000000.mp4"
    final.write_bytes(b"the earlier recording")
    part = tmp_path / "20191231T235959Z-000001-000000.mp4.part"
    part.write_bytes(b"the new one")
    published = publish(part, final)
    assert published == tmp_path / "20191231T235959Z-000001-000000-2.mp4"
    assert final.read_bytes() == b"the earlier recording"
    assert published.read_bytes() == b"the new one"
    assert not part.exists()
    assert parse_segment_name(published.stem) == parse_segment_name(final.stem)


def test_publish_after_a_crash_between_link_and_unlink_keeps_one_file(tmp_path: Path) -> None:
    final = tmp_path / "20191231T235959Z-000001-000000.mp4"
    part = tmp_path / "20191231T235959Z-000001-000000.mp4.part"
    part.write_bytes(b"the recording")
    os.link(part, final)  # the power went here last time
    assert publish(part, final) == final
    assert sorted(path.name for path in tmp_path.iterdir()) == [final.name]


def test_frame_stamps_keep_their_anchor_until_the_wall_clock_steps() -> None:
    anchor = SAVED_TIME
    # Frames come on time, or a little late: the anchor holds and stamps stay evenly spaced.
    assert wall_anchor(anchor, 10.0, SAVED_TIME + 10.3, 2.0) == anchor
    assert wall_anchor(anchor, 10.0, SAVED_TIME + 9.9, 2.0) == anchor
    # NTP stepped the clock by a year (forward) or an hour (back): the anchor follows.
    year = 365 * 86400.0
    assert wall_anchor(anchor, 10.0, SAVED_TIME + year + 10.0, 2.0) == SAVED_TIME + year
    assert wall_anchor(anchor, 10.0, SAVED_TIME - 3600 + 10.0, 2.0) == SAVED_TIME - 3600


@given(
    anchor=st.floats(0, 4e9),
    timestamp=st.floats(0, 1e6),
    now=st.floats(0, 4e9),
)
def test_a_stamp_is_never_further_than_the_tolerance_from_the_wall_clock(
    anchor: float, timestamp: float, now: float
) -> None:
    moved = wall_anchor(anchor, timestamp, now, 2.0)
    assert abs(moved + timestamp - now) <= 2.0 + 1e-5  # float rounding at 4e9 s is ~1e-6

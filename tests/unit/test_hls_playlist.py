"""The live HLS playlist across a stream's runs (review 19, finding 7): the media sequence goes
on from one run to the next, the first segment of a run after another is marked
#EXT-X-DISCONTINUITY before its new #EXT-X-MAP, and #EXT-X-DISCONTINUITY-SEQUENCE counts the
marks gone from the window (RFC 8216 4.3.3.3, 6.2.1, 6.2.2)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from edged.media.live import HlsSegment, HlsWindow, segment_name

STARTED = 1_700_000_000.0
WINDOW = 3


def add(window: HlsWindow, count: int, duration: float = 1.0) -> HlsWindow:
    for _ in range(count):
        window = window.with_next(b"", duration, STARTED, WINDOW)
    return window


def numbering(playlist: str) -> dict[str, tuple[int, int]]:
    """Each listed segment's (media, discontinuity) sequence number as a player counts them."""
    media = int(re.findall(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)$", playlist, re.M)[0])
    discontinuity = int(re.findall(r"^#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)$", playlist, re.M)[0])
    numbers = {}
    for line in playlist.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            discontinuity += 1
        elif line.startswith("segment-"):
            numbers[line] = (media, discontinuity)
            media += 1
    return numbers


def test_a_first_run_numbers_from_zero_unmarked() -> None:
    window = add(HlsWindow(run="aaaaaaaa"), 2)
    assert window.playlist() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:1\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init-aaaaaaaa.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"
        "#EXTINF:1.000,\n"
        "segment-aaaaaaaa-0.m4s\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"
        "#EXTINF:1.000,\n"
        "segment-aaaaaaaa-1.m4s\n"
    )


def test_the_next_run_numbers_on_and_marks_its_first_segment() -> None:
    first = add(HlsWindow(run="aaaaaaaa"), 5)  # 2, 3, 4 held
    second = add(first.following("bbbbbbbb"), 2)
    assert [s.sequence for s in second.segments] == [5, 6]
    assert [s.discontinuity for s in second.segments] == [True, False]
    assert second.playlist().splitlines()[3:9] == [
        "#EXT-X-MEDIA-SEQUENCE:5",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-DISCONTINUITY",
        '#EXT-X-MAP:URI="init-bbbbbbbb.mp4"',
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z",
    ]
    assert segment_name("bbbbbbbb", 5) in second.playlist()


def test_a_mark_gone_from_the_window_is_counted() -> None:
    second = add(add(HlsWindow(run="aaaaaaaa"), 2).following("bbbbbbbb"), WINDOW)
    assert second.discontinuity_sequence == 0 and second.segments[0].discontinuity
    later = add(second, 1)  # the marked segment leaves
    assert later.discontinuity_sequence == 1
    assert "#EXT-X-DISCONTINUITY\n" not in later.playlist()
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in later.playlist()


def test_a_run_that_made_no_segment_passes_its_numbers_on() -> None:
    first = add(HlsWindow(run="aaaaaaaa"), 2)
    third = first.following("bbbbbbbb").following("cccccccc")
    assert (third.next_sequence, third.discontinuity_sequence, third.discontinuity) == (2, 0, True)
    assert third.playlist().count("#EXT-X-DISCONTINUITY\n") == 0  # no segment listed yet


def test_a_first_run_that_never_made_a_segment_marks_nothing() -> None:
    window = HlsWindow(run="aaaaaaaa").following("bbbbbbbb")
    assert not window.discontinuity and window.next_sequence == 0


def test_the_target_duration_never_changes_across_runs() -> None:
    first = add(HlsWindow(run="aaaaaaaa"), 1, duration=2.4)
    assert add(first.following("bbbbbbbb"), 1).target_duration == 3


def test_a_run_serves_only_its_own_segments_and_init() -> None:
    first = add(HlsWindow(init=b"a", run="aaaaaaaa"), 2)
    second = add(first.following("bbbbbbbb"), 1)
    assert second.segment("aaaaaaaa", 1) is None and second.init_of("aaaaaaaa") == b""
    assert second.segment("bbbbbbbb", 2) is not None


def test_a_segment_marked_inside_the_window_is_marked_there() -> None:
    window = HlsWindow(run="aaaaaaaa").with_segment(HlsSegment(0, b"", 1.0, STARTED), WINDOW)
    window = window.with_segment(HlsSegment(1, b"", 1.0, STARTED, discontinuity=True), WINDOW)
    lines = window.playlist().splitlines()
    assert lines.index("#EXT-X-DISCONTINUITY") == lines.index("segment-aaaaaaaa-0.m4s") + 1


# A stream's life: True makes a segment, False restarts it (a new run).
@given(st.lists(st.booleans(), max_size=40))
def test_a_player_reloading_never_sees_a_number_go_back_or_change(steps: list[bool]) -> None:
    window = HlsWindow(run="r0000000")
    playlists = [window.playlist()]
    for index, makes_segment in enumerate(steps):
        if makes_segment:
            window = window.with_next(b"", 1.0, STARTED, WINDOW)
        else:
            window = window.following(f"r{index + 1:07d}")
        playlists.append(window.playlist())
    counted: dict[str, tuple[int, int]] = {}
    previous: tuple[int, ...] = (0, 0)
    for playlist in playlists:
        numbers = numbering(playlist)
        for name, pair in numbers.items():
            assert counted.setdefault(name, pair) == pair, (name, playlist)
        head = tuple(
            int(re.findall(rf"^#EXT-X-{tag}:(\d+)$", playlist, re.M)[0])
            for tag in ("MEDIA-SEQUENCE", "DISCONTINUITY-SEQUENCE")
        )
        assert head >= previous and head[1] >= previous[1], playlist
        previous = head
        assert playlist.count("#EXT-X-MAP:") == 1
        assert len(numbers) <= WINDOW
    # Every run after the first that made a segment starts one discontinuity further on.
    runs = {
        name.split("-")[1]: pair[1] for name, pair in sorted(counted.items(), key=lambda x: x[1])
    }
    assert sorted(runs.values()) == list(range(len(runs)))

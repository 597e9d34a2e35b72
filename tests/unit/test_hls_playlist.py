"""The live HLS playlist across a stream's runs (review 19, finding 7; review s7a H1, H2, H6):
the media sequence goes on from one run to the next, the first segment of a run after another
is marked #EXT-X-DISCONTINUITY before its new #EXT-X-MAP, #EXT-X-DISCONTINUITY-SEQUENCE counts
the marks gone from the window (RFC 8216 4.3.3.3, 6.2.1, 6.2.2), the run before's segments stay
listed and served under their own init until they slide out (6.2.2), a stream away a while
keeps only its numbers, and one media sequence number names one segment."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.media.hls_playlist import HlsSegment, HlsWindow, carried, segment_name
from edged.media.stream_supervisor import forgotten

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
    assert [(s.run, s.sequence) for s in second.segments] == [
        ("aaaaaaaa", 4),
        ("bbbbbbbb", 5),
        ("bbbbbbbb", 6),
    ]
    assert [s.discontinuity for s in second.segments] == [False, True, False]
    assert [line for line in second.playlist().splitlines() if not line.startswith("#EXT-X-P")][
        3:
    ] == [
        "#EXT-X-MEDIA-SEQUENCE:4",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-MAP:URI="init-aaaaaaaa.mp4"',
        "#EXTINF:1.000,",
        "segment-aaaaaaaa-4.m4s",
        "#EXT-X-DISCONTINUITY",
        '#EXT-X-MAP:URI="init-bbbbbbbb.mp4"',
        "#EXTINF:1.000,",
        "segment-bbbbbbbb-5.m4s",
        "#EXTINF:1.000,",
        "segment-bbbbbbbb-6.m4s",
    ]
    assert segment_name("bbbbbbbb", 5) in second.playlist()


def test_right_after_a_restart_the_playlist_still_lists_the_run_before() -> None:
    """RFC 8216 6.2.2 (review s7a H1): a restart removes no segment at once; the new run's first
    playlist lists the old run's (under its own init) and lasts 3 target durations."""
    first = add(HlsWindow(init=b"a", run="aaaaaaaa"), 5)
    second = add(replace(first.following("bbbbbbbb"), init=b"b"), 1)
    names = list(numbering(second.playlist()))
    assert names == ["segment-aaaaaaaa-3.m4s", "segment-aaaaaaaa-4.m4s", "segment-bbbbbbbb-5.m4s"]
    assert sum(s.duration for s in second.segments) >= 3 * second.target_duration
    assert second.playlist().index("init-aaaaaaaa.mp4") < second.playlist().index("init-bbbb")


def test_a_mark_gone_from_the_window_is_counted() -> None:
    second = add(add(HlsWindow(run="aaaaaaaa"), 2).following("bbbbbbbb"), WINDOW)
    assert second.discontinuity_sequence == 0 and second.segments[0].discontinuity
    later = add(second, 1)  # the marked segment leaves
    assert later.discontinuity_sequence == 1
    assert "#EXT-X-DISCONTINUITY\n" not in later.playlist()
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in later.playlist()


def test_a_run_that_made_no_segment_passes_its_numbers_on() -> None:
    first = add(HlsWindow(init=b"a", run="aaaaaaaa"), 2)
    third = first.following("bbbbbbbb").following("cccccccc")
    assert (third.next_sequence, third.discontinuity_sequence, third.discontinuity) == (2, 0, True)
    assert third.playlist().count("#EXT-X-DISCONTINUITY\n") == 0  # no new segment listed yet
    assert list(numbering(third.playlist())) == [segment_name("aaaaaaaa", n) for n in (0, 1)]
    assert third.init_of("aaaaaaaa") == b"a" and third.init_of("bbbbbbbb") == b""


def test_a_first_run_that_never_made_a_segment_marks_nothing() -> None:
    window = HlsWindow(run="aaaaaaaa").following("bbbbbbbb")
    assert not window.discontinuity and window.next_sequence == 0


def test_the_target_duration_never_changes_across_runs() -> None:
    first = add(HlsWindow(run="aaaaaaaa"), 1, duration=2.6)
    assert add(first.following("bbbbbbbb"), 1).target_duration == 3


@pytest.mark.parametrize(
    ("duration", "target"), [(0.4, 1), (1.0, 1), (1.033, 1), (1.49, 1), (1.5, 2), (2.4, 2)]
)
def test_the_target_duration_is_the_longest_segment_rounded(duration: float, target: int) -> None:
    """RFC 8216 4.3.3.1: rounded to the nearest integer. The ceiling made a 1 s GOP's
    1.033 s segment a 2 s target, and players reloaded every 2 s, 6 s behind live."""
    assert add(HlsWindow(run="aaaaaaaa"), 1, duration=duration).target_duration == target


def test_the_run_before_is_served_while_listed_and_only_then() -> None:
    first = add(HlsWindow(init=b"a", run="aaaaaaaa"), 2)
    second = add(replace(first.following("bbbbbbbb"), init=b"b"), 1)
    old = second.segment("aaaaaaaa", 1)
    assert old is not None and old is first.segments[-1]  # the old run's own bytes
    assert second.init_of("aaaaaaaa") == b"a" and second.init_of("bbbbbbbb") == b"b"
    assert second.segment("bbbbbbbb", 1) is None  # a number names one run's segment only
    assert second.segment("bbbbbbbb", 2) is not None
    gone = add(second, WINDOW - 1)  # the old run's segments slid out
    assert gone.segment("aaaaaaaa", 1) is None and gone.init_of("aaaaaaaa") == b""
    assert gone.earlier_inits == () and gone.init_of("bbbbbbbb") == b"b"


def test_numbering_keeps_the_numbers_without_the_bytes() -> None:
    """What the supervisor keeps for a stream gone a while (review s7a H2)."""
    marked = add(add(HlsWindow(init=b"a", run="aaaaaaaa"), 2).following("bbbbbbbb"), 2)
    kept = marked.numbering()
    assert (kept.segments, kept.init, kept.earlier_inits) == ((), b"", ())
    assert (kept.next_sequence, kept.target_duration) == (4, 1)
    assert kept.discontinuity_sequence == 1  # the listed mark counted as gone
    after = add(kept.following("cccccccc"), 1)
    assert numbering(after.playlist()) == {"segment-cccccccc-4.m4s": (4, 2)}


def test_a_fresh_window_is_carried_whole_a_stale_one_as_its_numbers() -> None:
    window = add(HlsWindow(init=b"a", run="aaaaaaaa"), 3, duration=2.0)  # 6 s listed
    assert carried(window, 0.0) is window
    assert carried(window, 6.0) is window
    assert carried(window, 6.5) == window.numbering()


def test_the_streams_forgotten_are_the_longest_away_never_a_running_one() -> None:
    kept = ["a", "b", "c", "d"]  # oldest first
    assert forgotten(kept, {"a"}, 2) == ["b", "c"]
    assert forgotten(kept, set(), 4) == []
    assert forgotten(kept, {"a", "b", "c", "d"}, 1) == []


def test_a_segment_marked_inside_the_window_is_marked_there() -> None:
    window = HlsWindow(run="aaaaaaaa").with_segment(HlsSegment(0, b"", 1.0, STARTED), WINDOW)
    window = window.with_segment(HlsSegment(1, b"", 1.0, STARTED, discontinuity=True), WINDOW)
    lines = window.playlist().splitlines()
    assert lines.index("#EXT-X-DISCONTINUITY") == lines.index("segment-aaaaaaaa-0.m4s") + 1


# A stream's life: "segment" makes a segment, "restart" starts a new run at once (a thermal
# step), "away" a new run after a long absence (only the numbers kept).
@given(st.lists(st.sampled_from(["segment", "restart", "away"]), max_size=40))
def test_a_player_reloading_never_sees_a_number_go_back_or_change(steps: list[str]) -> None:
    window = HlsWindow(init=b"r0000000", run="r0000000")
    windows = [window]
    for index, step in enumerate(steps):
        if step == "segment":
            window = window.with_next(
                f"{window.run}-{window.next_sequence}".encode(), 1.0, STARTED, WINDOW
            )
        else:
            run = f"r{index + 1:07d}"
            window = (window if step == "restart" else window.numbering()).following(run)
            window = replace(window, init=run.encode())  # the new muxer's init
        windows.append(window)
    counted: dict[str, tuple[int, int]] = {}
    by_number: dict[int, str] = {}
    previous: tuple[int, ...] = (0, 0)
    for window in windows:
        playlist = window.playlist()
        numbers = numbering(playlist)
        for name, pair in numbers.items():
            assert counted.setdefault(name, pair) == pair, (name, playlist)
            assert by_number.setdefault(pair[0], name) == name, (pair, playlist)  # H6
        head = tuple(
            int(re.findall(rf"^#EXT-X-{tag}:(\d+)$", playlist, re.M)[0])
            for tag in ("MEDIA-SEQUENCE", "DISCONTINUITY-SEQUENCE")
        )
        assert head >= previous and head[1] >= previous[1], playlist
        previous = head
        assert len(numbers) == len(window.segments) <= WINDOW
        served(window, playlist, counted)
    # Every run after the first that made a segment starts one discontinuity further on.
    runs = {
        name.split("-")[1]: pair[1] for name, pair in sorted(counted.items(), key=lambda x: x[1])
    }
    assert sorted(runs.values()) == list(range(len(runs)))


def served(window: HlsWindow, playlist: str, seen: dict[str, tuple[int, int]]) -> None:
    """Each listed segment follows its own run's #EXT-X-MAP, and it and that init are served
    (its own bytes); a segment seen before and no longer listed is not; at most the listed runs'
    inits are held."""
    mapped = ""
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            mapped = line.split("init-")[1].split(".mp4")[0]
        elif line.startswith("segment-"):
            _, run, number = line.removesuffix(".m4s").split("-")
            assert run == mapped, playlist
            segment = window.segment(run, int(number))
            assert segment is not None and segment.data == f"{run}-{number}".encode()
            assert window.init_of(run) == run.encode()
    listed_runs = {segment.run for segment in window.segments}
    assert playlist.count("#EXT-X-MAP:") == max(1, len(listed_runs))
    assert {run for run, _ in window.earlier_inits} <= listed_runs - {window.run}
    for name in seen.keys() - numbering(playlist).keys():
        _, run, number = name.removesuffix(".m4s").split("-")
        assert window.segment(run, int(number)) is None, name

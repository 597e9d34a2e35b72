"""HLS names: one URL per segment, the one the playlist lists (issue #21 item 12), and each run
of a stream under names of its own (review 19, finding 7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.media.live import (
    HlsSegment,
    HlsWindow,
    init_name,
    init_run,
    new_run,
    segment_key,
    segment_name,
)

RUN = "0123abcd"


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_the_listed_name_gives_its_run_and_number(sequence: int) -> None:
    run = new_run()
    assert segment_key(segment_name(run, sequence)) == (run, sequence)
    assert init_run(init_name(run)) == run


@given(st.text(max_size=24))
def test_a_name_that_parses_is_the_listed_name(text: str) -> None:
    name = f"segment-{text}.m4s"
    key = segment_key(name)
    assert key is None or segment_name(*key) == name
    init = f"init-{text}.mp4"
    run = init_run(init)
    assert run is None or init_name(run) == init


@pytest.mark.parametrize(
    "name",
    [
        "segment-1.m4s",  # the form before runs: old URLs answer 404
        f"segment-{RUN}-00001.m4s",
        f"segment-{RUN}-01.m4s",
        f"segment-{RUN}-\u0661.m4s",  # Arabic-Indic one
        f"segment-{RUN}-\uff11.m4s",  # fullwidth one
        f"segment-{RUN}-+1.m4s",
        f"segment-{RUN}-1_0.m4s",
        f"segment-{RUN}- 1.m4s",
        f"segment-{RUN}-1.m4s\n",
        f"segment-{RUN}-1xm4s",
        f"segment-{RUN}-.m4s",
        f"segment-{RUN}-1234567890123.m4s",
        "segment-0123ABCD-1.m4s",  # upper case: another URL for the same run
        "segment-0123abc-1.m4s",
        "segment-0123abcde-1.m4s",
        "segment--1.m4s",
    ],
)
def test_aliases_are_not_segment_names(name: str) -> None:
    assert segment_key(name) is None


@pytest.mark.parametrize(
    "name", ["init.mp4", "init-.mp4", "init-0123ABCD.mp4", f"init-{RUN}.mp4\n", f"init-{RUN}0.mp4"]
)
def test_aliases_are_not_init_names(name: str) -> None:
    assert init_run(name) is None


def test_examples() -> None:
    assert segment_key(f"segment-{RUN}-0.m4s") == (RUN, 0)
    assert segment_key(f"segment-{RUN}-10.m4s") == (RUN, 10)
    assert init_run(f"init-{RUN}.mp4") == RUN


def test_runs_differ() -> None:
    assert len({new_run() for _ in range(100)}) == 100


def test_a_window_answers_for_its_own_run_only() -> None:
    window = HlsWindow(init=b"init", run=RUN).with_segment(HlsSegment(0, b"s", 1.0, 0.0), 6)
    playlist = window.playlist()
    assert f'#EXT-X-MAP:URI="init-{RUN}.mp4"\n' in playlist
    assert f"\nsegment-{RUN}-0.m4s\n" in playlist
    assert window.segment(RUN, 0) is not None and window.init_of(RUN) == b"init"
    other = new_run()
    assert window.segment(other, 0) is None and window.init_of(other) == b""
    assert HlsWindow().run != HlsWindow().run  # a new window, a new run

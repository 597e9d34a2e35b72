"""The clip's pure decisions: which segments, refusals, the keyframe an original starts from,
the 9:16 geometry and its filter graph."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.clips.plan import (
    ClipRefused,
    Geometry,
    Recorded,
    Span,
    available,
    check_range,
    check_recorded,
    ffmpeg_graph,
    filter_plan,
    keyframe_at_or_before,
    segments_for,
    vertical_geometry,
)

T0 = 1_796_000_000.0


def test_segments_closer_than_the_tolerance_are_one_recording() -> None:
    spans = [Span(T0 + 2, T0 + 4.01), Span(T0, T0 + 2.0), Span(T0 + 10, T0 + 12)]
    assert available(spans) == (Span(T0, T0 + 4.01), Span(T0 + 10, T0 + 12))


def test_a_range_inside_one_recording_is_taken() -> None:
    recorded = available([Span(T0, T0 + 2), Span(T0 + 2.02, T0 + 4)])
    check_recorded(T0 + 1, T0 + 3.5, recorded)  # across the boundary: no refusal


@pytest.mark.parametrize(
    ("start", "end", "what"),
    [
        (T0 + 3, T0 + 6, "partly"),  # runs past the end
        (T0 + 3, T0 + 11, "partly"),  # over the gap
        (T0 + 20, T0 + 25, "at all"),
        (T0 - 5, T0 - 1, "at all"),
    ],
)
def test_a_range_not_recorded_is_refused_saying_what_is(
    start: float, end: float, what: str
) -> None:
    recorded = available([Span(T0, T0 + 4), Span(T0 + 10, T0 + 12)])
    with pytest.raises(ClipRefused) as refused:
        check_recorded(start, end, recorded)
    assert f"not recorded {what}" in refused.value.reason
    assert "recorded: 2026-" in refused.value.reason
    assert refused.value.available == recorded


def test_nothing_recorded_says_so() -> None:
    with pytest.raises(ClipRefused, match="recorded: nothing"):
        check_recorded(T0, T0 + 1, ())


def test_end_before_start_and_too_long_are_refused() -> None:
    with pytest.raises(ClipRefused, match="is not after the start"):
        check_range(T0 + 5, T0 + 1, 180)
    with pytest.raises(ClipRefused, match="is not after the start"):
        check_range(T0, T0, 180)
    with pytest.raises(ClipRefused, match=r"181.0 s asked; a clip may be at most 180 s"):
        check_range(T0, T0 + 181, 180)
    check_range(T0, T0 + 180, 180)


def test_the_segments_a_range_needs_are_those_it_overlaps_in_order() -> None:
    segments = [Recorded(f"{n}.mp4", T0 + 2 * n, T0 + 2 * n + 2) for n in (3, 0, 1, 2)]
    chosen = segments_for(segments, T0 + 1.5, T0 + 4.0)
    assert [seg.path for seg in chosen] == ["0.mp4", "1.mp4"]  # ends where 2.mp4 begins


@given(
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=50, unique=True),
    st.floats(-10, 1010, allow_nan=False),
)
def test_the_keyframe_is_at_or_before_the_moment(keyframes: list[float], moment: float) -> None:
    """At: within a microsecond (times come from a 90 kHz clock, whose tick is 11 µs)."""
    keyframes.sort()
    chosen = keyframe_at_or_before(keyframes, moment)
    assert chosen in keyframes
    if moment + 1e-6 >= keyframes[0]:
        assert chosen <= moment + 1e-6
        assert not [k for k in keyframes if chosen < k <= moment + 1e-6]  # the last one
    else:
        assert chosen == keyframes[0]


def test_an_original_starts_within_one_gop_of_the_start() -> None:
    gop = 0.5
    keyframes = [T0 + n * gop for n in range(8)]
    for moment in (T0 + 0.1, T0 + 1.49, T0 + 1.5, T0 + 3.2):
        assert 0 <= moment - keyframe_at_or_before(keyframes, moment) < gop


@pytest.mark.parametrize(
    ("size", "out"),
    [((1920, 1080), (1080, 1920)), ((1280, 720), (720, 1280)), ((320, 240), (240, 426))],
)
def test_vertical_is_the_source_height_wide_at_9_16(
    size: tuple[int, int], out: tuple[int, int]
) -> None:
    for mode in ("fill", "crop"):
        geometry = vertical_geometry(*size, mode)
        assert (geometry.width, geometry.height) == out


@given(
    st.integers(16, 4096),
    st.integers(16, 4096),
    st.sampled_from(["fill", "crop"]),
    st.none() | st.integers(-5000, 5000),
)
def test_vertical_geometry_is_even_and_inside(
    width: int, height: int, mode: str, x_offset: int | None
) -> None:
    g = vertical_geometry(width, height, mode, x_offset)
    assert g.width % 2 == 0 and g.height % 2 == 0
    assert abs(g.width / g.height - 9 / 16) < 2 / g.height  # 9:16 to the rounding to even sizes
    if mode == "crop":
        assert g.crop_width % 2 == 0 and g.crop_x % 2 == 0
        assert g.crop_x >= 0 and g.crop_x + g.crop_width <= width
        assert g.crop_width <= round(height * 9 / 16) + 2
    else:
        assert g.fit_width % 2 == 0 and g.fit_height % 2 == 0
        assert g.fit_width <= g.width and g.fit_height <= g.height
        assert g.fit_width == g.width or g.fit_height == g.height  # fitted: touches two sides
        # the picture keeps its shape (to the rounding of even sizes)
        assert (
            abs(g.fit_width / g.fit_height - width / height)
            <= 2.5 * (width / height) / min(g.fit_width, g.fit_height) * 2 + 0.01
        )


def test_crop_takes_the_centre_or_the_offset_clamped() -> None:
    assert vertical_geometry(1920, 1080, "crop").crop_x == (1920 - 608) // 2
    assert vertical_geometry(1920, 1080, "crop").crop_width == 608
    assert vertical_geometry(1920, 1080, "crop", 100).crop_x == 100
    assert vertical_geometry(1920, 1080, "crop", 5000).crop_x == 1920 - 608
    assert vertical_geometry(1920, 1080, "crop", -3).crop_x == 0


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="use fill or crop"):
        vertical_geometry(1920, 1080, "stretch")


def test_the_fill_graph_for_ffmpeg_matches_the_plan() -> None:
    plan = filter_plan(vertical_geometry(1920, 1080, "fill"))
    assert ffmpeg_graph(plan) == (
        "split=2[bg][fg];"
        "[bg]scale=270:480:force_original_aspect_ratio=increase,crop=270:480,avgblur=sizeX=8,"
        "scale=1080:1920[b];[fg]scale=1080:608[f];[b][f]overlay=0:656,format=yuv420p"
    )


def test_the_crop_graph_is_one_chain() -> None:
    geometry = vertical_geometry(1280, 720, "crop", 10)
    assert geometry == Geometry("crop", 1280, 720, 720, 1280, crop_width=404, crop_x=10)
    assert ffmpeg_graph(filter_plan(geometry)) == "crop=404:720:10:0,scale=720:1280,format=yuv420p"

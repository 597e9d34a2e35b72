"""When a stopping audio thread stops reading: once its sound reaches the video's end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edged.media.audio_capture import may_stop

seconds = st.floats(0, 1e5, allow_nan=False)


def test_it_reads_on_until_the_sound_reaches_the_video_end() -> None:
    assert not may_stop(9.98, 10.0, now=100.0, deadline=101.0)
    assert may_stop(10.0, 10.0, now=100.0, deadline=101.0)
    assert may_stop(10.02, 10.0, now=100.0, deadline=101.0)


def test_nothing_to_wait_for_stops_at_once() -> None:
    assert may_stop(None, 10.0, now=100.0, deadline=101.0)  # no sound placed: no clock yet
    assert may_stop(5.0, None, now=100.0, deadline=101.0)  # no video was sent


@given(seconds, seconds, seconds, seconds)
def test_the_wait_ends_at_the_deadline(
    reached: float, until: float, now: float, end: float
) -> None:
    if now >= end:
        assert may_stop(reached, until, now, end)
    else:
        assert may_stop(reached, until, now, end) == (reached >= until)

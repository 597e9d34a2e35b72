"""When a segment whose recording stopped is finished: its frames written and their sound in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edged.media.recorder import segment_may_close


def test_it_waits_for_the_frames_then_for_the_sound_of_the_last_one() -> None:
    assert not segment_may_close(2, 10.0, 10.5, waits=True)  # frames still held
    assert not segment_may_close(0, 10.0, 9.95, waits=True)  # the last frame's sound not in
    assert segment_may_close(0, 10.0, 10.0, waits=True)
    assert segment_may_close(0, 10.0, 10.02, waits=True)


@given(st.integers(0, 100), st.floats(0, 1e5), st.floats(-1e5, 1e5))
def test_nothing_to_wait_for_closes_at_once(held: int, video_end: float, reached: float) -> None:
    """No sound, or the wait is over."""
    assert segment_may_close(held, video_end, reached, waits=False)

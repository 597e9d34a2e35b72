"""What a live poster request does (issue #21 item 10): pure, over every combination."""

from __future__ import annotations

import itertools

import pytest

from edged.media.live import PosterStep, poster_step

MAX_AGE = 3.0


@pytest.mark.parametrize(
    ("made_age", "made_from_current", "decoding", "failed_current"),
    list(
        itertools.product([None, 0.0, 2.9, 3.0, 100.0], [False, True], [False, True], [False, True])
    ),
)
def test_every_combination(
    made_age: float | None, made_from_current: bool, decoding: bool, failed_current: bool
) -> None:
    step = poster_step(
        made_age=made_age,
        made_from_current=made_from_current,
        decoding=decoding,
        failed_current=failed_current,
        max_age=MAX_AGE,
    )
    fresh = made_age is not None and (made_from_current or made_age < MAX_AGE)
    if fresh:
        assert step is PosterStep.CACHED
    elif decoding:
        assert step is PosterStep.WAIT, "never a second decode while one runs"
    elif failed_current:
        assert step is PosterStep.FAILED, "a keyframe that failed is not decoded again"
    else:
        assert step is PosterStep.DECODE


def test_examples() -> None:
    def step(**facts: object) -> PosterStep:
        base: dict[str, object] = {
            "made_age": None,
            "made_from_current": False,
            "decoding": False,
            "failed_current": False,
        }
        return poster_step(**{**base, **facts}, max_age=MAX_AGE)  # type: ignore[arg-type]

    assert step() is PosterStep.DECODE  # cold
    assert step(decoding=True) is PosterStep.WAIT  # cold, a crowd behind the first request
    assert step(made_age=1.0) is PosterStep.CACHED  # a newer keyframe, the poster still young
    assert step(made_age=5.0) is PosterStep.DECODE  # old and from an older keyframe
    assert step(made_age=500.0, made_from_current=True) is PosterStep.CACHED  # no newer picture

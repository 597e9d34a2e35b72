"""The clock's health decisions: adjtimex's answer, and wall-clock steps against monotonic time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    TIME_OK,
    ClockJumpDetector,
    ClockSample,
    clock_synchronized,
    synchronized_from_adjtimex,
    wall_step_seconds,
)


@pytest.mark.parametrize(
    ("return_value", "status", "expected"),
    [
        (TIME_OK, 0, True),
        (TIME_OK, 0x2001, True),  # STA_PLL | STA_NANO: synced by NTP
        (TIME_OK, STA_UNSYNC, False),
        (TIME_ERROR, 0, False),
        (TIME_ERROR, STA_UNSYNC, False),
        (1, 0, True),  # TIME_INS: a leap second pending, still synced
        (-1, 0, None),  # the call failed (seccomp)
    ],
)
def test_synchronized_from_adjtimex(return_value: int, status: int, expected: bool | None) -> None:
    assert synchronized_from_adjtimex(return_value, status) is expected


def test_clock_synchronized_asks_the_kernel() -> None:
    assert clock_synchronized() in (True, False, None)


def test_no_step_when_both_clocks_advance_alike() -> None:
    detector = ClockJumpDetector(ClockSample(wall=1000.0, monotonic=5.0))
    assert detector.observe(ClockSample(wall=1060.5, monotonic=65.0)) is None
    assert detector.last_jump is None
    assert not detector.jumped_since(0.0)


def test_forward_step_is_reported_with_its_size() -> None:
    detector = ClockJumpDetector(ClockSample(wall=1000.0, monotonic=5.0))
    jump = detector.observe(ClockSample(wall=1000.0 + 40 * 86400 + 10, monotonic=15.0))
    assert jump is not None
    assert jump.seconds == pytest.approx(40 * 86400)
    assert detector.jumped_since(10.0)
    assert not detector.jumped_since(15.0)


def test_backward_step_is_negative() -> None:
    detector = ClockJumpDetector(ClockSample(wall=1_700_000_000.0, monotonic=100.0))
    jump = detector.observe(ClockSample(wall=1_600_000_000.0, monotonic=101.0))
    assert jump is not None
    assert jump.seconds == pytest.approx(-100_000_001.0)


def test_each_observation_compares_with_the_previous_sample() -> None:
    detector = ClockJumpDetector(ClockSample(wall=0.0, monotonic=0.0))
    assert detector.observe(ClockSample(wall=100.0, monotonic=1.0)) is not None
    assert detector.observe(ClockSample(wall=101.0, monotonic=2.0)) is None
    assert detector.last_jump is not None  # the earlier jump is remembered


@given(
    wall=st.floats(min_value=0, max_value=4e9),
    monotonic=st.floats(min_value=0, max_value=1e7),
    elapsed=st.floats(min_value=0, max_value=1e6),
    step=st.floats(min_value=-1e8, max_value=1e8),
)
def test_step_is_the_wall_delta_beyond_the_monotonic_delta(
    wall: float, monotonic: float, elapsed: float, step: float
) -> None:
    earlier = ClockSample(wall=wall, monotonic=monotonic)
    later = ClockSample(wall=wall + elapsed + step, monotonic=monotonic + elapsed)
    assert wall_step_seconds(earlier, later) == pytest.approx(step, abs=1e-3)

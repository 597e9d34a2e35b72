"""The clock's health decisions: adjtimex's answer, and wall-clock steps against monotonic time."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    TIME_OK,
    ClockJumpDetector,
    ClockSample,
    ClockWatch,
    Step,
    StepLedger,
    clock_synchronized,
    prune_ranges,
    sync_change,
    synchronized_from_adjtimex,
    synchronized_from_timesyncd,
    wall_step_seconds,
)

DAY = 86400.0


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


@pytest.mark.parametrize(
    ("running", "flagged", "expected"),
    [(True, True, True), (True, False, False), (False, False, None), (False, True, None)],
)
def test_synchronized_from_timesyncd(running: bool, flagged: bool, expected: bool | None) -> None:
    assert synchronized_from_timesyncd(running, flagged) is expected


def test_clock_synchronized_under_the_units_seccomp_filter(tmp_path: Path) -> None:
    """adjtimex is in @clock, which the unit refuses: timesyncd's flag answers instead."""
    unit = Path(__file__).resolve().parents[2] / "systemd" / "edged.service"
    seccomp = unit.parents[1] / "tests" / "seccomp_exec.py"
    code = (
        "import sys; from pathlib import Path; from edged.clock import clock_synchronized; "
        "print(clock_synchronized(Path(sys.argv[1])))"
    )
    runs = tmp_path / "timesync"
    runs.mkdir()
    answers = []
    for flag in (False, True):
        if flag:
            (runs / "synchronized").touch()
        result = subprocess.run(
            [sys.executable, str(seccomp), str(unit), "--", sys.executable, "-c", code, str(runs)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        answers.append(result.stdout.strip())
    assert answers == ["False", "True"]


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


def test_ledger_places_a_forward_step_after_the_events_written_before_it() -> None:
    ledger = StepLedger(ClockSample(wall=1000.0, monotonic=0.0), last_id=3)
    assert ledger.observe(ClockSample(wall=1005.0, monotonic=5.0), last_id=7) is None
    assert ledger.observe(ClockSample(wall=1010.0 + 40 * DAY, monotonic=10.0), last_id=9)
    assert [step.after_id for step in ledger.steps] == [9]
    assert ledger.steps[0].seconds == pytest.approx(40 * DAY)


def test_ledger_places_a_backward_step_before_the_unsure_events() -> None:
    ledger = StepLedger(ClockSample(wall=1000.0 + DAY, monotonic=0.0), last_id=3)
    ledger.observe(ClockSample(wall=1005.0, monotonic=5.0), last_id=7)
    assert [step.after_id for step in ledger.steps] == [3]
    assert ledger.steps[0].seconds == pytest.approx(-DAY)


def test_prune_ranges_without_steps_is_the_plain_cutoff() -> None:
    assert prune_ranges([], 500.0) == [(0, None, 500.0)]


def test_prune_ranges_shift_events_written_before_a_forward_step() -> None:
    steps = [Step(after_id=10, seconds=40 * DAY), Step(after_id=20, seconds=DAY)]
    assert prune_ranges(steps, 100 * DAY) == [
        (0, 10, 100 * DAY - 41 * DAY),
        (10, 20, 100 * DAY - DAY),
        (20, None, 100 * DAY),
    ]


def test_prune_ranges_never_age_events_for_a_backward_step() -> None:
    steps = [Step(after_id=10, seconds=-40 * DAY)]
    assert prune_ranges(steps, 100 * DAY) == [(0, 10, 100 * DAY), (10, None, 100 * DAY)]


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 50), st.floats(-1e7, 1e7, allow_nan=False)), max_size=6
    ),
    event_id=st.integers(1, 60),
)
def test_prune_ranges_never_prune_more_than_the_plain_cutoff(
    steps: list[tuple[int, float]], event_id: int
) -> None:
    ordered = [Step(after_id=i, seconds=s) for i, s in sorted(steps, key=lambda p: p[0])]
    ranges = prune_ranges(ordered, 1000.0)
    covering = [r for r in ranges if r[0] < event_id and (r[1] is None or event_id <= r[1])]
    assert len(covering) == 1
    assert covering[0][2] <= 1000.0


@pytest.mark.parametrize(
    ("previous", "current", "first", "level"),
    [
        (None, False, True, logging.WARNING),  # at start
        (None, True, True, None),
        (None, None, True, logging.INFO),
        (True, False, False, logging.WARNING),  # lost it
        (False, True, False, logging.INFO),  # found it
        (False, False, False, None),  # said once
        (True, True, False, None),
    ],
)
def test_sync_change(
    previous: bool | None, current: bool | None, first: bool, level: int | None
) -> None:
    said = sync_change(previous, current, first)
    assert (said[0] if said else None) == level


async def test_clock_watch_warns_at_start_and_on_change(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([False, False, True])
    samples: list[ClockSample] = []
    enough = asyncio.Event()

    def listen(sample: ClockSample) -> None:
        samples.append(sample)
        if len(samples) >= 4:
            enough.set()

    watch = ClockWatch(interval=0, synchronized=lambda: next(answers, True), listeners=[listen])
    caplog.set_level(logging.INFO, "edged.clock")
    task = asyncio.create_task(watch.run())
    async with asyncio.timeout(10):
        await enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "not synchronized" in m]) == 1
    assert messages[-1] == "the system clock is synchronized again"
    assert watch.synced is True

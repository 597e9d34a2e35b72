"""The guard every async test runs under: asyncio debug mode with a 0.05 s slow-callback bound,
and asyncio's reports of a callback that held the loop longer collected to fail the test (those
of the test's own code aside)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from tests.conftest import SLOW_CALLBACK_SECONDS, SlowCallbacks, is_test_code_step

TOOK = re.compile(r"Executing <.*> took (\d+\.\d+) seconds", re.DOTALL)


async def test_an_async_test_runs_on_a_loop_in_debug_mode_with_the_bound() -> None:
    loop = asyncio.get_running_loop()
    assert loop.get_debug()
    assert loop.slow_callback_duration == SLOW_CALLBACK_SECONDS == 0.05
    assert any(isinstance(h, SlowCallbacks) for h in logging.getLogger("asyncio").handlers)


def run_guarded(schedule: Callable[[asyncio.AbstractEventLoop], object]) -> SlowCallbacks:
    """What the guard collects from a loop in debug mode with the bound, given what `schedule`
    puts on it."""

    async def main() -> None:
        schedule(asyncio.get_running_loop())
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    handler = SlowCallbacks()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    try:
        with asyncio.Runner(debug=True) as runner:
            runner.get_loop().slow_callback_duration = SLOW_CALLBACK_SECONDS
            runner.run(main())
    finally:
        asyncio_logger.removeHandler(handler)
    return handler


def test_a_callback_that_blocks_the_loop_is_reported() -> None:
    guarded = run_guarded(lambda loop: loop.call_soon(time.sleep, 0.3))
    (report,) = guarded.reports
    took = TOOK.fullmatch(report)
    assert took is not None and float(took.group(1)) >= 0.3, report
    assert report.startswith("Executing <Handle sleep(0.3)") and guarded.test_steps == []


def test_a_step_of_the_tests_own_code_is_set_aside() -> None:
    async def setup_that_blocks() -> None:
        time.sleep(0.3)  # noqa: ASYNC251 - a test's helper that blocks, as clip making does

    guarded = run_guarded(lambda loop: loop.create_task(setup_that_blocks()))
    (step,) = guarded.test_steps
    assert "setup_that_blocks()" in step and guarded.reports == []
    assert is_test_code_step(step)


def test_a_loop_that_never_blocks_is_not_reported() -> None:
    guarded = run_guarded(lambda loop: loop.call_soon(time.sleep, 0))
    assert guarded.reports == [] and guarded.test_steps == []


def test_only_tasks_whose_coroutine_a_test_defines_are_test_steps() -> None:
    edged = (
        "Executing <Task pending name='Task-9' coro=<LivePoster.jpeg() running at "
        "/work/main/edged/media/live.py:383> wait_for=<Future pending> took 0.060 seconds"
    )
    library = (
        "Executing <Handle BaseSelectorEventLoop._accept_connection(<aiohttp.web_...>) created "
        "at /usr/lib/python3.11/asyncio/selector_events.py:263> took 0.053 seconds"
    )
    assert not is_test_code_step(edged) and not is_test_code_step(library)

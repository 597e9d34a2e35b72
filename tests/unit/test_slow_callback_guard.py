"""The guard every async test runs under: asyncio debug mode with a 0.05 s slow-callback bound,
and asyncio's reports of a callback that held the loop longer collected to fail the test, whoever's
code it is (edged's, a library's, the test's own)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from tests.conftest import SLOW_CALLBACK_SECONDS, SlowCallbacks

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
    assert report.startswith("Executing <Handle sleep(0.3)")


def test_a_step_of_the_tests_own_code_that_blocks_is_reported_too() -> None:
    async def setup_that_blocks() -> None:
        time.sleep(0.3)  # noqa: ASYNC251 - a test's helper that blocks, as clip making did

    guarded = run_guarded(lambda loop: loop.create_task(setup_that_blocks()))
    (report,) = guarded.reports
    assert "setup_that_blocks()" in report


def test_setup_in_a_thread_is_not_reported() -> None:
    async def setup_in_a_thread() -> None:
        await asyncio.to_thread(time.sleep, 0.3)

    guarded = run_guarded(lambda loop: loop.create_task(setup_in_a_thread()))
    assert guarded.reports == []


def test_a_loop_that_never_blocks_is_not_reported() -> None:
    guarded = run_guarded(lambda loop: loop.call_soon(time.sleep, 0))
    assert guarded.reports == []

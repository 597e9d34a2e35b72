"""Autouse guards (python-zeroconf's tests are the model): a test fails when it leaves a thread
running or an asyncio task pending behind it."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator

import pytest
from pytest_asyncio import is_async_test

# Threads that libraries keep for the whole process, started by whichever test uses them first.
LIBRARY_THREADS = re.compile(r"^(zeroconf-.*|asyncio_\d+)$")
GRACE_SECONDS = 5.0  # a thread told to stop at teardown may take a moment to return


def leaked_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.is_alive() and not LIBRARY_THREADS.match(thread.name)
    ]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test starts has ended once its fixtures are torn down."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + GRACE_SECONDS
    while (leaked := leaked_threads(before)) and time.monotonic() < deadline:
        leaked[0].join(timeout=0.05)
    assert not leaked, "threads left running: " + ", ".join(sorted(t.name for t in leaked))


@pytest.fixture(autouse=True)
def no_pending_tasks(request: pytest.FixtureRequest) -> Iterator[None]:
    """An async test and its fixtures leave no task pending for the loop's close to cancel."""
    if not is_async_test(request.node):
        yield
        return
    runner: asyncio.Runner = request.getfixturevalue("_function_scoped_runner")
    loop = runner.get_loop()
    before = asyncio.all_tasks(loop)
    yield
    if loop.is_closed():
        return
    pending = [task for task in asyncio.all_tasks(loop) - before if not task.done()]
    if pending:  # tasks cancelled at teardown finish on the loop's next turns
        loop.run_until_complete(asyncio.wait(pending, timeout=GRACE_SECONDS))
    left = sorted(repr(task.get_coro()) for task in pending if not task.done())
    assert not left, "asyncio tasks left pending: " + ", ".join(left)

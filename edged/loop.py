"""The daemon's event loop: uvloop (libuv) or Python's own, as `[daemon] event_loop` says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of the loop `name` ("uvloop" or "asyncio") names."""
    if name == "uvloop":
        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"no event loop {name!r}: uvloop or asyncio")


def run_on(name: str, main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `name` names."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)

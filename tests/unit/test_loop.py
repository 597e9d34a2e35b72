"""The daemon's event loop as `[daemon] event_loop` names it."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from edged.config import Config
from edged.loop import loop_factory, run_on


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_the_daemon_runs_on_uvloop_unless_told() -> None:
    assert Config().daemon.event_loop == "uvloop"
    assert isinstance(run_on("uvloop", running_loop()), uvloop.Loop)


def test_asyncio_names_pythons_own_loop() -> None:
    loop = run_on("asyncio", running_loop())
    assert isinstance(loop, asyncio.BaseEventLoop) and not isinstance(loop, uvloop.Loop)


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="uvloop or asyncio"):
        loop_factory("trio")

"""Shared fixtures: real daemons on loopback, cleaned up even when a test fails; async tests
fail when the event loop is blocked."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import settings
from pytest_asyncio import is_async_test

from tests.guards import no_leaked_threads, no_pending_tasks  # noqa: F401  (autouse guards)
from tests.support import DaemonProcess, loopback_config, write_config

# Two cores shared with real servers and encoders: time limits per example would only add noise.
settings.register_profile("edged", deadline=None)
settings.load_profile("edged")


def pytest_configure(config: pytest.Config) -> None:
    """The Python processes the tests start (daemons, `edged` commands, browser scripts, the
    import checks: hundreds) write their bytecode, as Python does by default, even where the
    environment says not to (PYTHONDONTWRITEBYTECODE, set where CI runs): without it each
    compiles edged's modules again, about 0.2 s a daemon start here. It goes to __pycache__
    beside the sources (ignored by git); the stdlib's and site-packages' is there already."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """Start `edged run` on loopback with an OS-assigned port; killed at teardown if alive."""
    started: list[DaemonProcess] = []

    def start(
        settings: Mapping[str, Mapping[str, object]] | None = None,
        *,
        name: str = "box",
        env: dict[str, str] | None = None,
        wait: bool = True,
        wrapper: tuple[str, ...] = (),
        command: tuple[str, ...] = (),
    ) -> DaemonProcess:
        config = write_config(tmp_path / f"{name}.toml", loopback_config(name, settings or {}))
        data_dir = tmp_path / f"{name}-data"
        daemon = DaemonProcess(
            ["--config", str(config), "--data-dir", str(data_dir)],
            env=env,
            data_dir=data_dir,
            config_file=config,
            wrapper=wrapper,
            command=command,
        )
        started.append(daemon)
        if wait:
            daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


SLOW_CALLBACK_SECONDS = 0.05  # the bound; a report means the loop was blocked that long
GIL_SWITCH_SECONDS = 0.001


class SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's "Executing <handle> took N seconds" reports."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.reports.append(message)


def started_executor() -> ThreadPoolExecutor:
    """asyncio's default executor with all its threads started: a `to_thread` that has to start
    a worker waits in Thread.start() until the OS runs it, tens of milliseconds on two busy
    cores, charged to whichever callback asked. The daemon's pool starts them once and keeps
    them; a test's loop is new each time."""
    workers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's own default
    executor = ThreadPoolExecutor(workers, thread_name_prefix="asyncio")
    everyone = threading.Barrier(workers)
    list(executor.map(lambda _: everyone.wait(), range(workers)))
    return executor


@pytest.fixture
async def _loop_in_debug_mode() -> None:
    """The test's event loop reports every callback that holds it past the bound."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(started_executor())
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS


@pytest.fixture(autouse=True)
def no_slow_callbacks(request: pytest.FixtureRequest) -> Iterator[None]:
    """An async test fails when anything on its event loop (edged's subsystems, aiohttp servers
    and clients, the test's own steps and fixtures) holds the loop longer than
    SLOW_CALLBACK_SECONDS. Tests do their blocking setup (clips, random files, daemon processes,
    S3 requests) in threads: asyncio.to_thread, tests/support.py eventually_in_thread."""
    if not is_async_test(request.node):
        yield
        return
    handler = SlowCallbacks()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    # The test process's heap (pytest, moto, aiortc, PyAV, what earlier tests left) makes a full
    # collection take up to 0.13 s here, charged to whichever callback runs then: frozen, the
    # collector walks only what this test allocates, as it would in the daemon. The young
    # generations' garbage is collected first; the oldest's (a full collection, 0.06-0.2 s each
    # test here) is left to the collector's own full collections once the heap is unfrozen.
    gc.collect(1)
    gc.freeze()
    # Threads of this process (moto's S3 server, the tests' setup in threads) hold the GIL in
    # Python for up to the switch interval at a time, each time the loop thread asks for it: a
    # millisecond, not five, so their turns are not charged to the loop as a blocking call.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    try:
        request.getfixturevalue("_loop_in_debug_mode")
        yield
    finally:
        sys.setswitchinterval(switch_interval)
        gc.unfreeze()
        asyncio_logger.removeHandler(handler)
    if handler.reports:
        pytest.fail(
            f"the event loop was blocked over {SLOW_CALLBACK_SECONDS} s:\n"
            + "\n".join(handler.reports),
            pytrace=False,
        )

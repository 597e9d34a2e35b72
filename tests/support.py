"""Helpers for tests that run the real `edged` command as a subprocess."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

T = TypeVar("T")


def until(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """The first truthy value of `probe`, polled until a deadline (a test waiting for an event)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(0.05)
    return value


async def eventually(
    condition: Callable[[], object], limit: float = 60.0, what: str = "condition"
) -> None:
    """Poll `condition` on the event loop until it is true; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {limit} s")
        await asyncio.sleep(0.02)


async def eventually_in_thread(
    condition: Callable[[], object], limit: float = 60.0, what: str = "condition"
) -> None:
    """`eventually` for a condition that blocks (a request to a server): each poll runs in a
    thread, off the event loop."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {limit} s")
        await asyncio.sleep(0.02)


async def started_in_waves(
    make: Callable[[], Coroutine[Any, Any, T]], size: int, wave: int = 32
) -> list[asyncio.Task[T]]:
    """`size` tasks of `make()`, started `wave` at a time with a loop turn between waves: a crowd
    in this process whose start (debug mode records where each task was made) does not hold the
    loop past the slow-callback bound. The caller gathers them."""
    tasks: list[asyncio.Task[T]] = []
    while len(tasks) < size:
        tasks += [asyncio.ensure_future(make()) for _ in range(min(wave, size - len(tasks)))]
        await asyncio.sleep(0)
    return tasks


READY_LINE = re.compile(r"edged \S+ ready: http://(?P<host>[^/]+):(?P<port>\d+)/")


def edged_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edged", *args]


def run_edged(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a short edged command to completion."""
    return subprocess.run(
        edged_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def run_edged_together(
    *commands: Sequence[str], timeout: float = 30
) -> list[subprocess.CompletedProcess[str]]:
    """Run short edged commands side by side (each its own process and deadline), in order."""
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run_edged(*args, timeout=timeout), commands))


def launch_edged(config: Path, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """`edged run` for a benchmark: the process and its base URL once it is ready."""
    process = subprocess.Popen(
        edged_command("run", "--config", str(config), "--data-dir", str(data_dir)),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        match = READY_LINE.search(line)
        if match:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining
            return process, f"http://{match.group('host')}:{match.group('port')}"
    raise RuntimeError(f"edged did not start with {config}")


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def loopback_config(name: str, overrides: Mapping[str, Mapping[str, object]]) -> str:
    """A config for a daemon on loopback: OS-assigned port, mDNS on 127.0.0.1 only."""
    tables: dict[str, dict[str, object]] = {
        "node": {"name": name},
        "http": {"host": "127.0.0.1", "port": 0},
        "mdns": {"interfaces": ["127.0.0.1"]},
        "daemon": {"shutdown_timeout": 4.0},
        # Small frames keep the always-on test pattern cheap on a 2-core machine.
        "media": {"pattern_size": "320x240", "pattern_fps": 15},
    }
    for section, values in overrides.items():
        tables.setdefault(section, {}).update(values)
    return tomli_w.dumps(tables)


class DaemonProcess:
    """`edged run` in a subprocess; its stderr is read line by line on a thread."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        data_dir: Path | None = None,
        config_file: Path | None = None,
        wrapper: Sequence[str] = (),
        command: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.config_file = config_file
        self.process = subprocess.Popen(
            [*wrapper, *(command or edged_command("run")), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 20) -> re.Match[str]:
        """The first stderr line matching `pattern`; fails with what the daemon said."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = ""
                if remaining <= 0:
                    raise AssertionError(
                        f"no line matching {pattern.pattern!r} in {timeout} s:\n"
                        + "\n".join(self.lines)
                    ) from None
            if line is None:
                raise AssertionError("edged exited early:\n" + "\n".join(self.lines))
            if line:
                self.lines.append(line)
                match = pattern.search(line)
                if match:
                    return match

    def seen_or_wait(self, pattern: re.Pattern[str], timeout: float = 20) -> re.Match[str]:
        """A line already read that matches, else the next one that does."""
        for line in self.lines:
            match = pattern.search(line)
            if match:
                return match
        return self.wait_for(pattern, timeout)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_ready(self, timeout: float = 20) -> int:
        self.port = int(self.wait_for(READY_LINE, timeout).group("port"))
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM and wait; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        self._close_pipes()
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line:
                self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stderr):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


@contextlib.contextmanager
def shared_daemon(
    directory: Path, settings: Mapping[str, Mapping[str, object]], stream: str
) -> Iterator[DaemonProcess]:
    """`edged run` on loopback (as conftest's start_daemon) for a module's tests, once `stream`
    serves HLS; stopped at the end with exit code 0 asserted, killed if anything failed."""
    config = write_config(directory / "box.toml", loopback_config("box", settings))
    data_dir = directory / "box-data"
    daemon = DaemonProcess(
        ["--config", str(config), "--data-dir", str(data_dir)],
        data_dir=data_dir,
        config_file=config,
    )
    try:
        daemon.wait_ready()
        until(lambda: http_status(f"{daemon.url}/live/{stream}/index.m3u8") == 200, 20, "HLS")
        yield daemon
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def still_running(daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    """A module's shared daemon for one test: running before it and still running after."""
    assert daemon.process.poll() is None, "\n".join(daemon.lines)
    yield daemon
    assert daemon.process.poll() is None, "\n".join(daemon.lines)


def http_status(url: str) -> int:
    """The status of a GET of `url` (0: no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test URL
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0

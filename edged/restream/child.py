"""The daemon's side of one sender process (edged.restream.sender): started, fed and killed
from a destination's sending thread (blocking calls; never on the event loop).

Writes go to the pipe (non-blocking) with os.write, waiting for room in slices of
WRITE_SLICE_SECONDS: a full pipe holds the sending thread only, while the feed, on the loop,
keeps dropping to the next keyframe as for any slow platform; between slices the thread asks
whether the session goes on, and a sender that takes no byte for `stall_seconds` is stuck
(SenderStalled). A reader thread turns the sender's report lines into a queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO

from edged.restream.feed import Item
from edged.restream.wire import Report, Spec, packet_frame, read_report, spec_frame

PIPE_BYTES = 1024 * 1024  # asked of the kernel for the packet pipe (a few keyframes)
F_SETPIPE_SZ = 1031  # Linux fcntl
LINE_BYTES = 4096  # a report line longer than this is garbage: dropped
WRITE_SLICE_SECONDS = 0.5  # how long a write waits for room before asking whether to go on


# What a sender needs of the daemon's environment: finding programs and certificates, the
# locale, its imports. Nothing else (the daemon's other secrets) reaches the process that
# parses a remote server's bytes.
SENDER_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")


def sender_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of `environ` a sender is given."""
    return {
        name: value
        for name, value in environ.items()
        if name in SENDER_ENVIRONMENT or name.startswith("SSL_CERT_")
    }


def stalled(taken_at: float, now: float, stall_seconds: float | None) -> bool:
    """Whether a sender that last took a byte at `taken_at` is stuck (None: never)."""
    return stall_seconds is not None and now - taken_at > stall_seconds


def report_lines(stdout: IO[bytes]) -> Iterator[bytes]:
    """The sender's lines, each at most LINE_BYTES (a longer one is dropped whole)."""
    dropping = False
    while line := stdout.readline(LINE_BYTES):
        whole = line.endswith(b"\n")
        if not dropping and (whole or len(line) < LINE_BYTES):
            yield line
        dropping = not whole


class SenderGone(Exception):
    """The sender process ended (its last report says why, if it said)."""


class SenderNotStarted(Exception):
    """The sender process could not be started (no memory, no file descriptor left)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


def exit_description(returncode: int | None) -> str:
    """How a process ended, for the log: its exit status or the signal that killed it."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class SenderStalled(SenderGone):
    """The sender took no byte of its pipe for `stall_seconds` (stopped, wedged)."""


class SenderProcess:
    """`start()` it, `next_report(timeout)` until LIVE or FAILED, `send(item)` packets, `kill()`
    (idempotent, from any thread)."""

    def __init__(self, name: str, on_bytes: Callable[[int], None]) -> None:
        self._name = name
        self._on_bytes = on_bytes  # called in the reader thread
        self._process: subprocess.Popen[bytes] | None = None
        self._reports: queue.Queue[Report | None] = queue.Queue()
        self._killed = threading.Event()

    def start(self, spec: Spec) -> None:
        """Start the process and give it the spec (the key goes down the pipe, not in argv)."""
        try:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                # -P: not the daemon's working directory first on the sender's sys.path
                [sys.executable, "-P", "-m", "edged.restream.sender", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # never read: a traceback could carry the URL
                close_fds=True,
                env=sender_environment(os.environ),
            )
        except OSError as error:  # EMFILE, ENOMEM, EAGAIN: this box, not the platform
            raise SenderNotStarted(error.errno) from None
        self._process = process
        if self._killed.is_set():  # killed while starting
            self.kill()
        if process.stdin is None or process.stdout is None:
            raise SenderGone  # never: both are PIPEs
        with contextlib.suppress(OSError):
            fcntl.fcntl(process.stdin.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(process.stdin.fileno(), False)
        threading.Thread(
            target=self._read,
            args=(process.stdout,),
            name=f"restream-{self._name}-reports",
            daemon=True,
        ).start()
        self._write(spec_frame(spec))

    def next_report(self, timeout: float) -> Report | None:
        """The next report other than bytes, waiting at most `timeout`; None: none yet.
        SenderGone when the process ended without one more."""
        try:
            found = self._reports.get(timeout=timeout)
        except queue.Empty:
            return None
        if found is None:
            self._reports.put(None)  # stays ended for the next caller
            raise SenderGone
        return found

    def send(
        self,
        item: Item,
        goes_on: Callable[[], bool] = lambda: True,
        stall_seconds: float | None = None,
    ) -> bool:
        """Hand one packet to the sender, waiting while its pipe is full. False: `goes_on`
        said no before all of it was taken (the session is over: kill it). SenderGone;
        SenderStalled when no byte was taken for `stall_seconds`."""
        return self._write(packet_frame(item), goes_on, stall_seconds)

    def _write(
        self,
        data: bytes,
        goes_on: Callable[[], bool] = lambda: True,
        stall_seconds: float | None = None,
    ) -> bool:
        process = self._process
        if process is None or process.stdin is None:
            raise SenderGone
        fd = process.stdin.fileno()
        room = select.poll()
        room.register(fd, select.POLLOUT)
        view, taken_at = memoryview(data), time.monotonic()
        while view:
            if self._killed.is_set():
                raise SenderGone
            try:
                view = view[os.write(fd, view) :]
                taken_at = time.monotonic()
                continue
            except BlockingIOError:  # the pipe is full
                pass
            except OSError as error:  # BrokenPipeError: it ended
                raise SenderGone from error
            if stalled(taken_at, time.monotonic(), stall_seconds):
                raise SenderStalled
            if not goes_on():
                return False
            room.poll(WRITE_SLICE_SECONDS * 1000)
        return True

    def finish(self) -> None:
        """End the session in order: close its stdin (it closes the FLV and exits)."""
        process = self._process
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()

    @property
    def ended(self) -> str:
        """How the process ended, for the log ("" when it never started)."""
        process = self._process
        return "" if process is None else exit_description(process.poll())

    def kill(self) -> None:
        self._killed.set()
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def reap(self, timeout: float) -> None:
        """Wait for the process to end (killed after `timeout`), closing its pipes."""
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            process.wait()
        if process.stdin is not None:  # stdout: the reader closes it at its end
            with contextlib.suppress(OSError):
                process.stdin.close()

    def _read(self, stdout: IO[bytes]) -> None:
        try:
            for line in report_lines(stdout):
                found = read_report(line)
                if found is None:
                    continue
                if found.step == "bytes":
                    self._on_bytes(found.size)
                else:
                    self._reports.put(found)
        except (OSError, ValueError):
            pass
        finally:
            stdout.close()
            self._reports.put(None)

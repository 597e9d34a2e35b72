"""The daemon's side of one sender process (edged.restream.sender): started, fed and killed
from a destination's sending thread (blocking calls; never on the event loop).

Writes go straight to the pipe with os.write, which releases the GIL: a full pipe blocks the
sending thread only, while the feed, on the loop, keeps dropping to the next keyframe as for
any slow platform. A reader thread turns the sender's report lines into a queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO

from edged.restream.feed import Item
from edged.restream.wire import Report, Spec, packet_frame, read_report, spec_frame

PIPE_BYTES = 1024 * 1024  # asked of the kernel for the packet pipe (a few keyframes)
F_SETPIPE_SZ = 1031  # Linux fcntl


class SenderGone(Exception):
    """The sender process ended (its last report says why, if it said)."""


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
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "edged.restream.sender", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # never read: a traceback could carry the URL
            close_fds=True,
        )
        self._process = process
        if self._killed.is_set():  # killed while starting
            self.kill()
        if process.stdin is None or process.stdout is None:
            raise SenderGone  # never: both are PIPEs
        with contextlib.suppress(OSError):
            fcntl.fcntl(process.stdin.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
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

    def send(self, item: Item) -> None:
        """Hand one packet to the sender (blocks while its pipe is full); SenderGone."""
        self._write(packet_frame(item))

    def _write(self, data: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or self._killed.is_set():
            raise SenderGone
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(process.stdin.fileno(), view) :]
        except OSError as error:  # BrokenPipeError: it ended
            raise SenderGone from error

    def finish(self) -> None:
        """End the session in order: close its stdin (it closes the FLV and exits)."""
        process = self._process
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()

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
            for line in stdout:
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

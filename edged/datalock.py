"""One writer per data dir: an exclusive `flock` on `<data dir>/edged.lock`, held while it runs.

The daemon takes it before crash recovery or the journal touch anything; CLI commands that write
(`cache add`, `uploads push`) take the same lock, so two writers never share a journal or a store.
The kernel drops the lock when the process dies, so a SIGKILL never leaves a stale one behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from edged.errors import StartupError

LOCK_NAME = "edged.lock"


class DataDirBusy(StartupError):
    """Another process holds the data dir's lock."""

    def __init__(self, data_dir: Path, holder: int | None) -> None:
        who = f"process {holder}" if holder else "another process"
        super().__init__(
            f"data dir {data_dir} is in use by {who} (an edged already runs on it); "
            "stop it first, or use another --data-dir"
        )
        self.holder = holder


def _holder(handle: int) -> int | None:
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class DataDirLock:
    """`acquire()`, or `DataDirBusy` naming the holder; `release()` is idempotent."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._handle: int | None = None

    def acquire(self) -> None:
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            raise DataDirBusy(self.data_dir, holder) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            os.close(handle)  # closing drops the flock; the file stays (unlinking would race)

    @property
    def held(self) -> bool:
        return self._handle is not None


@contextlib.contextmanager
def holding(data_dir: Path) -> Iterator[DataDirLock]:
    """The data dir's lock for the length of a `with` block (CLI commands that write)."""
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()

"""One cut in the worker process (`python -m edged.clips.worker`), driven from the event loop:
its progress lines read as they come, paused with SIGSTOP and resumed with SIGCONT, killed
when the daemon stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from edged.clips.worker import CutSpec, FinishSpec
from edged.errors import EdgedError

logger = logging.getLogger(__name__)

STDERR_LINES = 5  # of a worker that died: the last lines, logged once


class CutFailed(EdgedError):
    """The worker could not cut: `kind` is "gone", "space" or "media" (see cut.CutError)."""

    def __init__(self, message: str, kind: str = "media") -> None:
        super().__init__(message)
        self.kind = kind


class CutRun:
    """One worker process for one cut (or one clip's finish)."""

    def __init__(self, spec: CutSpec | FinishSpec, on_progress: Callable[[float], None]) -> None:
        self.spec = spec
        self._on_progress = on_progress
        self._process: asyncio.subprocess.Process | None = None
        self.paused = False

    async def run(self) -> dict[str, Any]:
        """The cut's result; CutFailed with the worker's reason. Cancelled: the worker is
        killed first."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edged.clips.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._process = process
        if self.paused:  # paused before the worker existed: it starts stopped
            self._signal(signal.SIGSTOP)
        try:
            return await self._talk(process)
        finally:
            if process.returncode is None:
                self._kill(process)
                await process.wait()

    async def _talk(self, process: asyncio.subprocess.Process) -> dict[str, Any]:
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise CutFailed("the clip worker has no pipes")  # never: all three are PIPEs
        process.stdin.write(self.spec.to_json().encode())
        await process.stdin.drain()
        process.stdin.close()
        errors: deque[str] = deque(maxlen=STDERR_LINES)
        reader = asyncio.ensure_future(_collect(process.stderr, errors))
        outcome: dict[str, Any] = {}
        async for raw in process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if "progress" in line:
                self._on_progress(float(line["progress"]))
            else:
                outcome = line
        await reader
        code = await process.wait()
        if "result" in outcome and code == 0:
            return dict(outcome["result"])
        if "error" in outcome:
            raise CutFailed(str(outcome["error"]), str(outcome.get("kind", "media")))
        logger.error("clip worker exited with %s: %s", code, " | ".join(errors))
        raise CutFailed(f"the clip worker stopped unexpectedly (exit {code})")

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signum)

    @staticmethod
    def _kill(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # SIGKILL works on a stopped process too


async def _collect(stream: asyncio.StreamReader, lines: deque[str]) -> None:
    async for raw in stream:
        lines.append(raw.decode(errors="replace").rstrip())

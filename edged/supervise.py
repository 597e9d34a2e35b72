"""One supervision helper for every long-lived task: nothing dies silently.

An unexpected exception is logged with its traceback (the first of a streak; later ones in one
line), counted in `edged_task_restarts_total{task}`, and the task starts again after a backoff
(1 s doubling to 30 s). A task that fails `FAILING_AFTER` times without a long enough good run
in between "keeps failing": `/readyz` names it. Cancellation is the only way a task ends without
being restarted, besides returning on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

logger = logging.getLogger(__name__)

BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a run this long ends a streak of failures
FAILING_AFTER = 3

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class RestartPolicy:
    """Pure: how long to wait before the next start, and whether a task keeps failing."""

    minimum: float = BACKOFF_MIN_SECONDS
    maximum: float = BACKOFF_MAX_SECONDS
    stable: float = STABLE_SECONDS
    failing_after: int = FAILING_AFTER
    streak: int = 0
    restarts: int = 0
    last_error: str = ""
    _started: float = field(default=0.0, repr=False)

    def started(self, now: float) -> None:
        self._started = now

    def failed(self, now: float, error: str) -> float:
        """Record a failure at `now`; the seconds to wait before starting again."""
        if now - self._started >= self.stable:
            self.streak = 0
        self.streak += 1
        self.restarts += 1
        self.last_error = error
        return backoff_seconds(self.minimum, self.maximum, self.streak)

    def ran_well(self, now: float) -> bool:
        """Whether the current run has lasted long enough to forget the streak."""
        return self.streak > 0 and now - self._started >= self.stable

    @property
    def failing(self) -> bool:
        return self.streak >= self.failing_after


MAX_DOUBLINGS = 60  # 2**60 times any positive minimum is past any maximum: the cap holds


def backoff_seconds(minimum: float, maximum: float, streak: int) -> float:
    """The wait after the `streak`-th failure in a row: `minimum` doubling to `maximum`. The
    exponent is capped, so a streak of any length (a restream retries for ever) never
    overflows a float."""
    return min(minimum * 2 ** min(max(streak - 1, 0), MAX_DOUBLINGS), maximum)


def describe(error: BaseException) -> str:
    """A short reason for status pages: the exception's type and message, no path of a frame."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Supervisor:
    """Owns long-lived tasks: `spawn()` starts one under supervision, `stop()` cancels them all."""

    def __init__(self, restarts: Counter | None, *, minimum: float = BACKOFF_MIN_SECONDS) -> None:
        self._restarts = restarts
        self._minimum = minimum
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._policies: dict[str, RestartPolicy] = {}

    def spawn(self, name: str, factory: TaskFactory) -> asyncio.Task[None]:
        """Run `factory()` as task `name`, again after each unexpected exception."""
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"task {name} is already supervised")
        policy = RestartPolicy(minimum=self._minimum)
        self._policies[name] = policy
        if self._restarts is not None:
            self._restarts.labels(name)
        task = asyncio.get_running_loop().create_task(self._keep(name, factory, policy), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))
        return task

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]

    async def _keep(self, name: str, factory: TaskFactory, policy: RestartPolicy) -> None:
        while True:
            policy.started(time.monotonic())
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                wait = policy.failed(time.monotonic(), describe(error))
                if self._restarts is not None:
                    self._restarts.labels(name).inc()
                if policy.streak == 1:
                    logger.exception("task %s failed; restarting in %.0f s", name, wait)
                else:
                    logger.error(
                        "task %s failed again (%d in a row: %s); restarting in %.0f s",
                        name,
                        policy.streak,
                        policy.last_error,
                        wait,
                    )
                await asyncio.sleep(wait)
                continue
            logger.debug("task %s finished", name)
            return

    def report(self, name: str, error: Exception) -> None:
        """A one-shot task (a download) failed unexpectedly: log it and count it; the next
        request starts it again."""
        if self._restarts is not None:
            self._restarts.labels(name).inc()
        logger.error("task %s failed", name, exc_info=error)

    def failing(self) -> dict[str, str]:
        """The tasks that keep failing, with their last error."""
        now = time.monotonic()
        found = {}
        for name, policy in self._policies.items():
            if policy.ran_well(now):
                policy.streak = 0
            if policy.failing and name in self._tasks:
                found[name] = policy.last_error
        return found

    def alive(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def restarts(self, name: str) -> int:
        policy = self._policies.get(name)
        return 0 if policy is None else policy.restarts

    async def cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every task and wait for them (idempotent)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

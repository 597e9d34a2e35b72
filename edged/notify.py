"""systemd's notify protocol: READY, WATCHDOG, STOPPING; a no-op outside systemd."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

import sdnotify

logger = logging.getLogger(__name__)


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked for."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 2 / 1_000_000


class SystemdNotifier:
    """Sends state changes to $NOTIFY_SOCKET and keeps the watchdog fed from the event loop."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self._interval = watchdog_interval(environ, os.getpid()) if self.enabled else None
        self._watchdog: asyncio.Task[None] | None = None

    def notify(self, message: str) -> None:
        """Send one message such as "READY=1"; never raises."""
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        """Tell systemd the daemon serves, and start the watchdog pings."""
        self.notify(f"READY=1\nSTATUS={status}")
        if self._interval is not None and self._watchdog is None:
            logger.info("systemd watchdog: pinging every %.3f s", self._interval)
            self._watchdog = asyncio.get_running_loop().create_task(
                self._feed(self._interval), name="systemd-watchdog"
            )

    async def _feed(self, interval: float) -> None:
        # Pinging from the event loop itself means a blocked loop stops the pings: that is the
        # failure the watchdog exists to catch.
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def stopping(self) -> None:
        """Tell systemd the daemon is shutting down and stop the watchdog pings."""
        self.notify("STOPPING=1")
        task, self._watchdog = self._watchdog, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

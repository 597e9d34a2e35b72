"""Who counts as a live viewer, decided without I/O: WebRTC slots per stream, HLS viewers by time.

Time is passed in (`now`, monotonic seconds); the web and WebRTC adapters hold the clock.
"""

from __future__ import annotations

import threading
from collections import Counter


class ViewerSlots:
    """At most `limit` WebRTC viewers a stream. A slot is taken, under the session id, before
    the first await of an offer and given back once, whichever way the session ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._streams: dict[str, str] = {}  # session id -> stream
        self._counts: Counter[str] = Counter()

    def reserve(self, stream: str, session: str) -> bool:
        """Take a slot of `stream` for `session`; False when the stream has all its viewers."""
        if session in self._streams:
            raise ValueError(f"session {session} already holds a slot")
        if self._counts[stream] >= self.limit:
            return False
        self._streams[session] = stream
        self._counts[stream] += 1
        return True

    def release(self, session: str) -> bool:
        """Give the slot of `session` back; False when it holds none (already released)."""
        stream = self._streams.pop(session, None)
        if stream is None:
            return False
        self._counts[stream] -= 1
        if not self._counts[stream]:
            del self._counts[stream]
        return True

    def count(self, stream: str) -> int:
        return self._counts[stream]


class HlsViewers:
    """HLS has no session: a viewer is a client that fetched a segment within the last `window`
    seconds. Counted at scrape time in a worker thread, hence the lock."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # client -> when it stops counting
        self._lock = threading.Lock()

    def seen(self, client: str, now: float, window: float) -> None:
        """`client` fetched a segment at `now`; clients gone quiet are forgotten."""
        with self._lock:
            self._until[client] = now + window
            for other, until in list(self._until.items()):
                if until <= now:
                    del self._until[other]

    def __len__(self) -> int:
        """Clients remembered: those counted and those not yet forgotten."""
        return len(self._until)

    def count(self, now: float) -> int:
        with self._lock:
            return sum(1 for until in self._until.values() if until > now)

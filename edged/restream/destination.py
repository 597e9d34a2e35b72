"""One restream destination: its feed, its sending thread (connect, publish, reconnect with
backoff for ever while enabled) and its state with the last error.

The thread is the only user of PyAV here; the event loop only offers packets to the feed and
reads the state, under a lock held for a few assignments. `run()` is the supervised task: it
starts the thread and waits for its end, so that an unexpected exception in the thread is the
task's (logged, counted, restarted by the daemon's Supervisor).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from edged.config import RestreamConfig
from edged.media.live import HeaderStep, header_step
from edged.media.packets import EncodedPacket
from edged.metrics import RestreamMetrics
from edged.restream.feed import Feed
from edged.restream.policy import (
    REFUSALS,
    STABLE_SECONDS,
    RestreamState,
    Stage,
    certificate_reason,
    failure_reason,
    mask_url,
    parse_address,
    publish_url,
    tee_target,
    unreachable,
)
from edged.restream.probe import answers, certificate_problem, system_ca_file
from edged.restream.session import INTERLEAVE_MICROSECONDS, FlvSession, Geometry
from edged.supervise import RestartPolicy

logger = logging.getLogger(__name__)

TAKE_SECONDS = 0.5  # how often a waiting thread looks at its stop and switch
JOIN_SECONDS = 3.0  # a stop waits this long for the thread (a shutdown has a bound)
WATCH_SECONDS = 1.0  # how often a server that cannot be reached is tried during a backoff


@dataclass(frozen=True)
class Snapshot:
    state: RestreamState
    reason: str
    since: float  # wall clock of the last change of state
    retry_at: float | None  # wall clock of the next attempt (retrying)


class Destination:
    """`start_thread()` / `stop_thread()` (blocking join) or `run()` as a supervised task;
    `set_enabled()` and `snapshot()` from the loop."""

    def __init__(
        self,
        config: RestreamConfig,
        key: str,
        metrics: RestreamMetrics,
        on_drop: Callable[[int], None],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.stream = config.stream
        self.masked_url = mask_url(config.url)
        self._address = parse_address(config.url)
        tls = config.url.startswith("rtmps://") and config.tls_verify
        # rtmps: the CAs the server's certificate is checked against; None: not checked.
        self._ca_file = (config.ca_file or system_ca_file()) if tls else None
        self._target = tee_target(  # the key inside: stays in this object
            publish_url(config.url, key),
            config.timeout_seconds,
            INTERLEAVE_MICROSECONDS,
            tls_verify=config.tls_verify,
            ca_file=self._ca_file or "",
        )
        self._metrics = metrics
        self._labels = (config.stream, config.name)
        self.feed = Feed(on_drop)
        self.feed.accepting = config.enabled
        self.enabled = config.enabled
        self.geometry: Geometry | None = None  # set while the stream runs
        self.reconnects = 0
        self.last_error = ""  # the last failure's reason, kept after a reconnect
        self.bytes_sent = 0
        self._policy = RestartPolicy(
            minimum=config.retry_min_seconds,
            maximum=config.retry_max_seconds,
            stable=STABLE_SECONDS,
        )
        self._lock = threading.Lock()
        self._state = RestreamState.WAITING if config.enabled else RestreamState.DISABLED
        self._reason = "" if config.enabled else "switched off in the config"
        self._since = time.time()
        self._retry_at: float | None = None
        self._last_failure = ""  # the reason last logged as a warning
        self._on_change = on_change  # called in the thread after a change of state or reason
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.destination(*self._labels, enabled=config.enabled)

    # -- the event loop's side ------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._state, self._reason, self._since, self._retry_at)

    def set_enabled(self, enabled: bool) -> None:
        """Switch on or off (at once: an off destination closes its session)."""
        if enabled == self.enabled:
            return
        logger.info("restream %s (%s): switched %s", self.name, self.masked_url, _on(enabled))
        self.enabled = enabled
        self.feed.accepting = enabled
        self._metrics.enabled.labels(*self._labels).set(1 if enabled else 0)
        if enabled:
            self._policy.streak = 0  # switched on again: try at once
        self._wake.set()
        self.feed.wake()

    def status(self) -> dict[str, Any]:
        snapshot = self.snapshot()
        counts = self.feed.counts
        return {
            "name": self.name,
            "stream": self.stream,
            "url": self.masked_url,
            "enabled": self.enabled,
            "state": snapshot.state.value,
            "reason": snapshot.reason,
            "since": snapshot.since,
            "retry_at": snapshot.retry_at,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "bytes": self.bytes_sent,
            "frames": {
                "offered": counts.offered,
                "sent": counts.sent,
                "dropped": counts.dropped,
                "queued": counts.queued,
            },
            "audio_packets_dropped": counts.audio_dropped,
        }

    async def run(self) -> None:
        """The supervised task: the sending thread, until cancelled (then it is stopped)."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        self._stop.clear()
        self.start_thread(lambda error: loop.call_soon_threadsafe(_settle, ended, error))
        try:
            await ended
        finally:
            await asyncio.to_thread(self.stop_thread)

    # -- the sending thread ----------------------------------------------------------------------

    def start_thread(self, done: Callable[[BaseException | None], object]) -> None:
        def main() -> None:
            try:
                self._send_loop()
            except BaseException as error:  # the supervised task raises it: logged, restarted
                done(error)
                return
            done(None)

        self._thread = threading.Thread(target=main, name=f"restream-{self.name}", daemon=True)
        self._thread.start()

    def stop_thread(self) -> None:
        """Stop the thread and wait for it (blocking: at most one write's timeout)."""
        self._stop.set()
        self._wake.set()
        self.feed.wake()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_SECONDS)
            if thread.is_alive():  # in a connect or write, bounded by timeout_seconds
                logger.warning(
                    "restream %s: its thread is still in a network call; left to end alone",
                    self.name,
                )

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            if not self.enabled:
                self._idle(RestreamState.DISABLED, "switched off")
                continue
            first = self._ready_to_start()
            if first is None:
                continue
            audio_config = self._audio_to_declare()
            if audio_config is None:
                continue
            self._attempt(first, audio_config)

    def _idle(self, state: RestreamState, reason: str) -> None:
        self.feed.restart()
        self._set_state(state, reason)
        self._wake.wait(TAKE_SECONDS)
        self._wake.clear()

    def _ready_to_start(self) -> EncodedPacket | None:
        """The keyframe a session starts at, once the stream runs and gives one."""
        if self.geometry is None:
            self._idle(RestreamState.WAITING, f"stream {self.stream} is not running")
            return None
        first = self.feed.peek_keyframe()
        if first is None:
            if self.snapshot().state is not RestreamState.RETRYING:
                self._set_state(RestreamState.WAITING, "waiting for a keyframe")
            self._wake.wait(0.05)
            return None
        return first

    def _audio_to_declare(self) -> bytes | None:
        """The AAC config the session declares (b"" for none); None: wait for it a little."""
        waited_since = time.monotonic()
        while not self._stop.is_set() and self.enabled:
            step = header_step(
                expects_audio=self.feed.expects_audio,
                audio_config=bool(self.feed.audio_config),
                held_seconds=time.monotonic() - waited_since,
            )
            if step is HeaderStep.VIDEO_AND_AUDIO:
                return self.feed.audio_config
            if step is HeaderStep.VIDEO:
                return b""
            self._wake.wait(0.05)
        return None

    def _attempt(self, first: EncodedPacket, audio_config: bytes) -> None:
        """One session: connect, publish until it fails or is stopped; then back off."""
        assert self.geometry is not None  # noqa: S101 - checked by _ready_to_start
        if self._snapshot_state() is not RestreamState.RETRYING:  # a retry keeps its reason
            self._set_state(RestreamState.CONNECTING, "connecting")
        self._policy.started(time.monotonic())
        stage, code = Stage.RESOLVE, None
        session = FlvSession(self._target, self.geometry, first, audio_config)
        try:
            socket.getaddrinfo(self._address.host, self._address.port, type=socket.SOCK_STREAM)
            stage = Stage.CONNECT
            session.open()
            stage = Stage.SEND
            self.feed.live = True
            self._set_state(RestreamState.LIVE, "publishing" + (" with sound" * session.has_audio))
            self._publish(session)
            return
        except (av.FFmpegError, OSError) as error:
            code = error.errno if isinstance(error.errno, int) else None
        finally:
            self.feed.live = False
            session.close()
            self.feed.restart()
            if self._snapshot_state() is RestreamState.LIVE:
                self._set_state(RestreamState.WAITING, "session ended")
        self._back_off(self._why(stage, code), watch=unreachable(stage, code))

    def _publish(self, session: FlvSession) -> None:
        """Send what the feed gives until stopped or switched off; raises on a failed write."""
        while not self._stop.is_set() and self.enabled:
            item = self.feed.take(TAKE_SECONDS)
            if item is None:
                continue
            try:
                size = session.write(item)
            except BaseException:
                if not item.audio:
                    self.feed.lost()
                raise
            if not item.audio:
                self.feed.sent()
            if size:
                self.bytes_sent += size
                self._metrics.bytes.labels(*self._labels).inc(size)

    def _back_off(self, reason: str, *, watch: bool) -> None:
        """Wait before the next attempt (1 s doubling to 30 s). While the server cannot be
        reached (`watch`), a TCP connection is tried each second and the wait ends when one
        goes through: a platform back after a long outage is published to within seconds,
        while one that refuses the publish is tried again only at the backoff's pace."""
        wait = self._policy.failed(time.monotonic(), reason)
        self.reconnects += 1
        self._metrics.reconnects.labels(*self._labels).inc()
        with self._lock:
            self._retry_at = time.time() + wait
        self.last_error = reason
        self._set_state(RestreamState.RETRYING, reason)
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0:
            if self._wake.wait(min(left, WATCH_SECONDS)):
                self._wake.clear()
                return
            if watch and self._answers():
                return

    def _answers(self) -> bool:
        """Whether the server takes a TCP connection now (blocking, at most a second)."""
        return answers(self._address, min(WATCH_SECONDS, self.config.timeout_seconds))

    def _why(self, stage: Stage, code: int | None) -> str:
        """Why an attempt failed. FFmpeg says only "I/O error" for an rtmps server whose
        certificate it does not trust, as for a refused publish: a TLS handshake tells them
        apart (blocking: a connection, at most timeout_seconds)."""
        timeout = self.config.timeout_seconds
        if self._ca_file is not None and stage is Stage.CONNECT and code in REFUSALS:
            problem = certificate_problem(self._address, self._ca_file, timeout)
            if problem is not None:
                return certificate_reason(self._address, problem)
        return failure_reason(stage, code, self._address, timeout)

    # -- state ----------------------------------------------------------------------------------

    def _snapshot_state(self) -> RestreamState:
        with self._lock:
            return self._state

    def _set_state(self, state: RestreamState, reason: str) -> None:
        with self._lock:
            before, said = self._state, self._reason
            self._state, self._reason = state, reason
            if state is not before:
                self._since = time.time()
            if state is not RestreamState.RETRYING:
                self._retry_at = None
        level = log_level(before, state, new_failure=reason != self._last_failure)
        if state is RestreamState.RETRYING:
            self._last_failure = reason
        elif state is RestreamState.LIVE:
            self._last_failure = ""
        if level is not None:
            logger.log(
                level,
                "restream %s (%s): %s -> %s (%s)",
                self.name,
                self.masked_url,
                before,
                state,
                reason,
            )
        self._metrics.up.labels(*self._labels).set(1 if state is RestreamState.LIVE else 0)
        if state is not before or reason != said:
            self._on_change()


def log_level(before: RestreamState, state: RestreamState, *, new_failure: bool) -> int | None:
    """How a change of state is logged (None: not at all). Retrying for ever would repeat the
    same failure every 30 s: a failure is a warning when its reason is new or a session was
    lost, the attempts in between are at debug."""
    if state is RestreamState.RETRYING:
        return logging.WARNING if new_failure or before is RestreamState.LIVE else logging.DEBUG
    if state is before:
        return None
    if state is RestreamState.CONNECTING:
        return logging.DEBUG
    return logging.INFO


def _on(enabled: bool) -> str:
    return "on" if enabled else "off"


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

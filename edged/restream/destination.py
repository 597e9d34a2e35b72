"""One restream destination: its feed, its sending thread (connect, publish, reconnect with
backoff for ever while enabled) and its state with the last error.

Each session runs in a sender process (edged.restream.sender, through child.SenderProcess):
PyAV holds the GIL while FFmpeg connects, so none of it runs in the daemon. The thread starts
the sender, waits for it to publish (killing it past timeout_seconds + CONNECT_GRACE_SECONDS),
then hands it the feed's packets; the event loop only offers packets to the feed and reads the
state, under a lock held for a few assignments. `run()` is the supervised task: it
starts the thread and waits for its end, so that an unexpected exception in the thread is the
task's (logged, counted, restarted by the daemon's Supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edged.config import RestreamConfig
from edged.media.live import HeaderStep, header_step
from edged.metrics import RestreamMetrics
from edged.restream.child import SenderGone, SenderNotStarted, SenderProcess, SenderStalled
from edged.restream.feed import QUEUE_FRAMES, Feed, Item
from edged.restream.policy import (
    REFUSALS,
    STABLE_SECONDS,
    Failure,
    RestreamState,
    Stage,
    certificate_reason,
    failure_reason,
    mask_url,
    parse_address,
    publish_url,
    session_over,
    setup_reason,
    tee_target,
    unreachable,
)
from edged.restream.probe import answers, certificate_problem, system_ca_file
from edged.restream.session import INTERLEAVE_MICROSECONDS, Geometry
from edged.restream.wire import Report, Spec, Step, frame_fits
from edged.supervise import RestartPolicy

logger = logging.getLogger(__name__)

TAKE_SECONDS = 0.5  # how often a waiting thread looks at its stop and switch
JOIN_SECONDS = 3.0  # a stop waits this long for the thread (a shutdown has a bound)
WATCH_SECONDS = 1.0  # how often a server that cannot be reached is tried during a backoff
# A sender neither published nor failed this long after timeout_seconds (its start, a
# connect FFmpeg's timeouts did not bound): it is killed and the attempt timed out.
CONNECT_GRACE_SECONDS = 10.0


class SenderFailed(Exception):
    """A session failed: where, and why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.stage.value)
        self.failure = failure


def failure_of(found: Report) -> Failure:
    """A failure as the sender reported it."""
    stages = {"connect": Stage.CONNECT, "send": Stage.SEND, "setup": Stage.SETUP}
    return Failure(stages.get(found.stage, Stage.SEND), found.code, found.problem)


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
        self.feed = Feed(on_drop, limit=QUEUE_FRAMES)  # read here: a test may shorten it
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
        self._last_gone = ""  # how the last sender that ended without a report ended
        self._on_change = on_change  # called in the thread after a change of state or reason
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender: SenderProcess | None = None  # the session's process (a stop kills it)
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
        """Stop the thread and wait for it (blocking, briefly: its sender is killed)."""
        self._stop.set()
        self._wake.set()
        self.feed.wake()
        with self._lock:
            sender = self._sender
        if sender is not None:
            sender.kill()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_SECONDS)
            if thread.is_alive():  # never seen: its sender was killed
                logger.warning(
                    "restream %s: its thread has not ended; left to end alone",
                    self.name,
                )

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            if not self.enabled:
                self._idle(RestreamState.DISABLED, "switched off")
                continue
            if not self._ready_to_start():
                continue
            audio_config = self._audio_to_declare()
            if audio_config is None:
                continue
            self._attempt(audio_config)

    def _idle(self, state: RestreamState, reason: str) -> None:
        self.feed.restart()
        self._set_state(state, reason)
        self._wake.wait(TAKE_SECONDS)
        self._wake.clear()

    def _ready_to_start(self) -> bool:
        """Whether a session may start: the stream runs and its feed has a keyframe."""
        if self.geometry is None:
            self._idle(RestreamState.WAITING, f"stream {self.stream} is not running")
            return False
        if self.feed.peek_keyframe() is None:
            if self.snapshot().state is not RestreamState.RETRYING:
                self._set_state(RestreamState.WAITING, "waiting for a keyframe")
            self._wake.wait(0.05)
            return False
        return True

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

    def _attempt(self, audio_config: bytes) -> None:
        """One session in a sender process: connect, publish until it fails or ends; after a
        failure, back off."""
        if self._snapshot_state() is not RestreamState.RETRYING:  # a retry keeps its reason
            self._set_state(RestreamState.CONNECTING, "connecting")
        self._policy.started(time.monotonic())
        failure = Failure(Stage.RESOLVE)
        sender = SenderProcess(self.name, self._count_bytes)
        ended = "session ended"
        try:
            socket.getaddrinfo(self._address.host, self._address.port, type=socket.SOCK_STREAM)
            failure = Failure(Stage.CONNECT)
            if not self._adopt(sender):
                return
            sender.start(self._spec(audio_config))
            has_audio = self._connected(sender)
            if has_audio is None:  # stopped or switched off while connecting
                return
            failure = Failure(Stage.SEND)
            self.feed.live = True
            self._set_state(RestreamState.LIVE, "publishing" + (" with sound" * has_audio))
            ended = self._publish(sender)
            return
        except OSError as error:  # the resolve
            failure = Failure(
                failure.stage, error.errno if failure.stage is Stage.CONNECT else None
            )
        except SenderFailed as error:
            failure = error.failure
        except SenderNotStarted as error:
            failure = Failure(Stage.SETUP, error.code, "start")
        except SenderGone:  # it died without a word
            failure = Failure(failure.stage, problem="gone")
        finally:
            self.feed.live = False
            self._end(sender)
            self.feed.restart()
            if self._snapshot_state() is RestreamState.LIVE:
                self._set_state(RestreamState.WAITING, ended)
        if self._stop.is_set():  # the stop killed its sender: not a failure
            return
        if failure.problem == "gone":
            self._say_gone(sender)
        self._back_off(self._why(failure), watch=unreachable(failure.stage, failure.code))

    def _spec(self, audio_config: bytes) -> Spec:
        geometry = self.geometry or Geometry(0, 0, 0)
        return Spec(self._target, geometry.width, geometry.height, geometry.fps, audio_config)

    def _adopt(self, sender: SenderProcess | None) -> bool:
        """Make `sender` the one a stop kills; False when the thread is stopping already."""
        with self._lock:
            self._sender = sender
        return not self._stop.is_set()

    def _end(self, sender: SenderProcess) -> None:
        """End a session's process: in order (the FLV closed) unless it failed or hangs."""
        sender.finish()
        sender.reap(JOIN_SECONDS)
        self._adopt(None)

    def _connected(self, sender: SenderProcess) -> bool | None:
        """Whether the session has sound once the sender published; None when stopped or
        switched off first. SenderFailed with its reason; a sender that neither publishes
        nor fails by the deadline (FFmpeg's own timeouts did not hold) is killed."""
        deadline = time.monotonic() + self.config.timeout_seconds + CONNECT_GRACE_SECONDS
        while not self._stop.is_set() and self.enabled:
            found = sender.next_report(TAKE_SECONDS)
            if found is not None and found.step == Step.LIVE:
                return found.audio
            if found is not None and found.step == Step.FAILED:
                raise SenderFailed(failure_of(found))
            if time.monotonic() > deadline:
                sender.kill()
                raise SenderFailed(Failure(Stage.CONNECT, errno.ETIMEDOUT))
        sender.kill()
        return None

    def _publish(self, sender: SenderProcess) -> str:
        """Send what the feed gives until stopped, switched off or the stream stops (the
        reason); SenderFailed when the sender fails, or takes nothing of its pipe for
        timeout_seconds + CONNECT_GRACE_SECONDS (stopped or wedged: killed)."""
        quiet_since = time.monotonic()
        while (over := self._over(time.monotonic() - quiet_since)) is None:
            said = self._said(sender)
            if said is not None:
                raise SenderFailed(said)
            item = self.feed.take(TAKE_SECONDS)
            if item is None:
                continue
            quiet_since = time.monotonic()
            taken = self._hand(sender, item)
            if not item.audio and taken:
                self.feed.sent()
            elif not item.audio:
                self.feed.lost()
        return over

    def _hand(self, sender: SenderProcess, item: Item) -> bool:
        """Write one packet to the sender; False: not taken (too long to frame, or the session
        ended while its pipe was full: then the sender is killed). SenderFailed."""
        if not frame_fits(item):  # never seen: 64 MiB; one packet lost, not the session
            logger.warning("restream %s: a packet too long to send was dropped", self.name)
            return False
        stall_seconds = self.config.timeout_seconds + CONNECT_GRACE_SECONDS
        try:
            taken = sender.send(item, lambda: self._over(0.0) is None, stall_seconds)
        except SenderGone as error:
            if not item.audio:
                self.feed.lost()
            if isinstance(error, SenderStalled):
                sender.kill()
                raise SenderFailed(Failure(Stage.SEND, errno.ETIMEDOUT)) from None
            raise SenderFailed(self._last_failure_of(sender)) from None
        if not taken:  # over while its pipe was full: the rest of the frame never goes
            sender.kill()
        return taken

    def _over(self, quiet_seconds: float) -> str | None:
        """Why the publishing session ends though nothing failed (None: it goes on)."""
        if self._stop.is_set() or not self.enabled:
            return "switched off"
        return session_over(
            self.stream, running=self.geometry is not None, quiet_seconds=quiet_seconds
        )

    @staticmethod
    def _said(sender: SenderProcess) -> Failure | None:
        """The failure a publishing sender reported, if it did (without waiting). Its reader
        queues every line before the end, so an end here follows any report it made."""
        try:
            found = sender.next_report(0)
        except SenderGone:
            return Failure(Stage.SEND, problem="gone")
        return failure_of(found) if found is not None and found.step == Step.FAILED else None

    @staticmethod
    def _last_failure_of(sender: SenderProcess) -> Failure:
        """The failure a sender that ended under a write reported: its reports read to their
        end (its reader may not have queued the last yet), for at most JOIN_SECONDS."""
        sender.reap(JOIN_SECONDS)
        failure = Failure(Stage.SEND, problem="gone")
        deadline = time.monotonic() + JOIN_SECONDS
        with contextlib.suppress(SenderGone):
            while time.monotonic() < deadline:
                found = sender.next_report(TAKE_SECONDS)
                if found is not None and found.step == Step.FAILED:
                    failure = failure_of(found)
        return failure

    def _say_gone(self, sender: SenderProcess) -> None:
        """Log how a sender that ended without a report ended (a crash, the OOM killer):
        its status says only "unknown error", which points at the platform."""
        ended = sender.ended
        level = logging.WARNING if ended != self._last_gone else logging.DEBUG
        self._last_gone = ended
        logger.log(
            level, "restream %s: its sender process ended without a report (%s)", self.name, ended
        )

    def _count_bytes(self, size: int) -> None:
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

    def _why(self, failure: Failure) -> str:
        """Why an attempt failed. FFmpeg says only "I/O error" for an rtmps server whose
        certificate it does not trust, as for a refused publish: a TLS handshake tells them
        apart (blocking: a connection, at most timeout_seconds)."""
        timeout = self.config.timeout_seconds
        stage, code = failure.stage, failure.code
        if stage is Stage.SETUP:
            return setup_reason(failure.problem, code)
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

"""A destination's sender: `python -m edged.restream.sender PARENT_PID` publishes one session.

A process of its own because PyAV holds the GIL while FFmpeg connects (avformat_write_header:
DNS, TCP, TLS, the RTMP handshake and publish) and while it writes the trailer: in the daemon,
a hung platform would freeze every thread for the whole timeout. Here it only holds this
process. The spec (the key inside) and the packets come down stdin (edged.restream.wire),
never in argv or the environment; reports go up stdout as JSON lines. It dies with the daemon
(PR_SET_PDEATHSIG) and ends its session when stdin closes. Nothing it prints carries the URL:
failures are reported as a stage and an errno, never an exception's text (FFmpeg's carry the
key); stderr is not read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, TypeVar

if TYPE_CHECKING:
    from edged.restream.session import FlvSession

T = TypeVar("T")

PR_SET_PDEATHSIG = 1
BYTES_INTERVAL = 0.5  # seconds between reports of the bytes sent
NEEDED_FORMATS = ("tee", "flv")


def die_with_parent(parent: int) -> None:
    """SIGKILL when the thread that started this process ends (Linux), and exit at once when
    the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(0)


class WireError(Exception):
    """A frame over MAX_FRAME, cut short or garbled: the daemon and this sender disagree."""


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next length-prefixed frame; None at the end of stdin (the daemon is done);
    WireError for one over MAX_FRAME or cut short."""
    from edged.restream.wire import LENGTH, MAX_FRAME

    head = stream.read(LENGTH.size)
    if not head:
        return None
    if len(head) < LENGTH.size:
        raise WireError
    (size,) = LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise WireError
    body = stream.read(size)
    if len(body) != size:
        raise WireError
    return body


def parsed(read: Callable[[bytes], T], body: bytes) -> T:
    """`read(body)`; WireError for a body it cannot read (short, a zero denominator, a spec
    without its fields)."""
    try:
        return read(body)
    except (struct.error, ZeroDivisionError, KeyError, TypeError, ValueError) as error:
        raise WireError from error


def missing_format(available: set[str] | frozenset[str]) -> str:
    """The first muxer this FFmpeg build lacks ("" when it has them all)."""
    return next((name for name in NEEDED_FORMATS if name not in available), "")


class Out:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def say(self, step: str, **facts: object) -> None:
        from edged.restream.wire import report

        self._stream.write(report(step, **facts))
        self._stream.flush()


def errno_of(error: BaseException) -> int | None:
    code = getattr(error, "errno", None)
    return code if isinstance(code, int) else None


def publish(stdin: BinaryIO, out: Out) -> int:
    """One session: connect, then mux what comes down stdin until it ends (blocking)."""
    import av

    from edged.restream.session import FlvSession, Geometry
    from edged.restream.wire import Step, read_spec

    try:
        body = read_frame(stdin)
        if body is None:
            return 0
        spec = parsed(read_spec, body)
    except WireError:
        out.say(Step.FAILED, stage="setup", problem="wire")
        return 1
    problem = missing_format(set(av.formats_available))
    if problem:
        out.say(Step.FAILED, stage="setup", problem=problem)
        return 1
    session = FlvSession(
        spec.target, Geometry(spec.width, spec.height, spec.fps), spec.audio_config
    )
    try:
        return run(session, stdin, out)
    finally:
        session.close()


def run(session: FlvSession, stdin: BinaryIO, out: Out) -> int:
    """Open the session, say LIVE, send until stdin ends; the exit status."""
    import av

    from edged.restream.wire import Step

    try:
        session.open()
    except (av.FFmpegError, OSError) as error:
        out.say(Step.FAILED, stage="connect", code=errno_of(error))
        return 1
    except ValueError:  # PyAV: a muxer or stream it cannot make
        out.say(Step.FAILED, stage="setup", problem="muxer")
        return 1
    out.say(Step.LIVE, audio=session.has_audio)
    try:
        send(session, stdin, out)
    except WireError:
        out.say(Step.FAILED, stage="setup", problem="wire")
        return 1
    except (av.FFmpegError, OSError, ValueError) as error:  # ValueError: a packet it refused
        out.say(Step.FAILED, stage="send", code=errno_of(error))
        return 1
    return 0


def send(session: FlvSession, stdin: BinaryIO, out: Out) -> None:
    """Mux what comes down stdin until it ends, saying the bytes sent every BYTES_INTERVAL."""
    from edged.restream.wire import Step, read_packet

    sent, said = 0, time.monotonic()
    while (body := read_frame(stdin)) is not None:
        sent += session.write(parsed(read_packet, body))
        if sent and time.monotonic() - said >= BYTES_INTERVAL:
            out.say(Step.BYTES, size=sent)
            sent, said = 0, time.monotonic()
    if sent:
        out.say(Step.BYTES, size=sent)


def report_crashes(out: Out) -> None:
    """An exception nothing caught is reported by its type only (its text may carry the URL),
    so the daemon says more than "unknown error"."""

    def hook(kind: type[BaseException], value: BaseException, traceback: object) -> None:
        with contextlib.suppress(Exception):
            out.say("failed", stage="setup", problem=f"crash: {kind.__name__}")

    sys.excepthook = hook


def main() -> int:
    die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the daemon's; it ends us
    out = Out(sys.stdout.buffer)
    report_crashes(out)
    return publish(sys.stdin.buffer, out)


if __name__ == "__main__":
    sys.exit(main())
